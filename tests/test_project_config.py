"""hooktap.toml (project_config.py) and the routing flags every command shares
(cli/routing.py): which routes are in force, from flags or the file, and a clear exit 2 for
anything that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from hooktap import project_config
from hooktap.cli.routing import resolve_routing, routing_options
from hooktap.project_config import ConfigError, ProjectConfig

ROUTES_TOML = """\
[listen]
forward = [
  "localhost:8000/webhooks/pivotal",
  "customer.*=localhost:8001/hooks",
  "task.*=localhost:8002/webhooks/pivotal",
]
events = ["customer.*", "task.completed"]
"""


@click.command()
@routing_options()
def show(forwards: tuple[str, ...], events: str | None, config_path: Path | None) -> None:
    """Print the routing in force, as a command using the flags would get it."""
    routing = resolve_routing(forwards, events, config_path)
    if routing is None:
        click.echo("null")
        return
    click.echo(json.dumps({"routes": routing.describe(), "events": list(routing.events)}))


@click.command()
@routing_options(events=False)
def show_no_events(forwards: tuple[str, ...], config_path: Path | None) -> None:
    routing = resolve_routing(forwards, None, config_path)
    click.echo(json.dumps(None if routing is None else routing.describe()))


def run(
    cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str, cmd: click.Command = show
) -> Result:
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(cmd, list(args), catch_exceptions=False)


def shown(result: Result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- the file ------------------------------------------------------------------------------


def test_the_file_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "hooktap.toml").write_text(ROUTES_TOML)
    config = project_config.load(cwd=tmp_path)
    assert config == ProjectConfig(
        path=tmp_path / "hooktap.toml",
        forward=(
            "localhost:8000/webhooks/pivotal",
            "customer.*=localhost:8001/hooks",
            "task.*=localhost:8002/webhooks/pivotal",
        ),
        events=("customer.*", "task.completed"),
    )
    assert project_config.load(cwd=tmp_path / "nowhere") is None


def test_single_strings_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "team.toml"
    text = '[listen]\nforward = "8000"\nevents = "customer.*, task.completed"\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    config = project_config.load(path)
    assert config is not None
    assert config.forward == ("8000",)
    assert config.events == ("customer.*", "task.completed")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert project_config.load(empty) == ProjectConfig(path=empty)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[listen\n", "is not valid TOML"),
        ("[listne]\nforward = ['8000']\n", "unknown table or key 'listne'; hooktap reads [listen]"),
        ("listen = 1\n", "'listen' must be a table, [listen]"),
        ("[listen]\nforwards = ['8000']\n", "unknown key 'forwards' in [listen]"),
        ("[listen]\nforward = 8000\n", "[listen] forward must be a list of strings"),
        ("[listen]\nforward = ['8000', 1]\n", "[listen] forward must be a list of strings"),
        ("[listen]\nevents = ['customer.*', ' ']\n", "[listen] events has an empty entry"),
        ("[listen]\nevents = 'customer.*,'\n", "[listen] events has an empty entry"),
    ],
)
def test_a_file_that_cannot_be_used_names_itself(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hooktap.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        project_config.load(path)
    assert str(caught.value).startswith(str(path)) or f"config file {path}" in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        project_config.load(tmp_path / "absent.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[listen]")
    with pytest.raises(ConfigError, match="cannot read config file"):
        project_config.load(binary)


# --- flags and the file --------------------------------------------------------------------


def test_no_flags_and_no_file_is_no_routing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shown(run(tmp_path, monkeypatch)) is None


def test_the_files_routes_with_the_fallback_moved_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hooktap.toml").write_text(ROUTES_TOML)
    assert shown(run(tmp_path, monkeypatch)) == {
        "routes": [
            "customer.*=http://localhost:8001/hooks",
            "task.*=http://localhost:8002/webhooks/pivotal",
            "http://localhost:8000/webhooks/pivotal",
        ],
        "events": ["customer.*", "task.completed"],
    }


def test_flags_win_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hooktap.toml").write_text(ROUTES_TOML)
    # --forward replaces the whole route list; the file's events still hold.
    assert shown(run(tmp_path, monkeypatch, "-f", "task.*=9001", "-f", "9000")) == {
        "routes": ["task.*=http://localhost:9001/", "http://localhost:9000/"],
        "events": ["customer.*", "task.completed"],
    }
    # --events replaces the file's events; its routes still hold.
    got = shown(run(tmp_path, monkeypatch, "--events", "task.* webhook.ping"))
    assert isinstance(got, dict) and got["events"] == ["task.*", "webhook.ping"]
    assert len(got["routes"]) == 3


def test_config_names_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hooktap.toml").write_text('[listen]\nforward = ["8000"]\n')
    other = tmp_path / "team" / "routes.toml"
    other.parent.mkdir()
    other.write_text('[listen]\nforward = ["task.*=8002", "8003"]\n')
    assert shown(run(tmp_path, monkeypatch, "--config", str(other))) == {
        "routes": ["task.*=http://localhost:8002/", "http://localhost:8003/"],
        "events": [],
    }
    assert shown(run(tmp_path, monkeypatch, "--config", str(other), cmd=show_no_events)) == [
        "task.*=http://localhost:8002/",
        "http://localhost:8003/",
    ]


@pytest.mark.parametrize(
    ("toml", "args", "message"),
    [
        (None, ["--events", "customer.*"], "it needs a --forward target"),
        (
            '[listen]\nevents = ["customer.*"]\n',
            [],
            "--events chooses which deliveries are forwarded (from {path}), so it needs a",
        ),
        (None, ["-f", "8000", "-f", "8001"], "only one can be the fallback"),
        (None, ["-f", "8000", "--events", "a,,b"], "has an empty pattern"),
        (
            '[listen]\nforward = ["8000", "8001"]\n',
            [],
            "only one can be the fallback; give the others a pattern, as in --forward "
            "'customer.*=localhost:8001/hooks' (from {path})",
        ),
        ('[listen]\nevents = ["task.[c"]\n', ["-f", "8000"], "unbalanced [ ] (from {path})"),
        (None, ["--config", "absent.toml"], "config file absent.toml does not exist"),
        ("[listen\n", [], "{path} is not valid TOML"),
        (None, ["-f", "cust omer=8001"], "route pattern 'cust omer' is not an event type"),
    ],
)
def test_bad_input_exits_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str | None, args: list[str], message: str
) -> None:
    path = tmp_path / "hooktap.toml"
    if toml is not None:
        path.write_text(toml)
    result = run(tmp_path, monkeypatch, *args)
    assert result.exit_code == 2
    assert message.replace("{path}", str(path)) in result.stderr
    assert "Traceback" not in result.output


def test_a_folder_for_config_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(tmp_path, monkeypatch, "--config", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_a_pattern_no_known_type_matches_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(tmp_path, monkeypatch, "-f", "custmer.*=8001", "-f", "8000")
    assert shown(result) == {
        "routes": ["custmer.*=http://localhost:8001/", "http://localhost:8000/"],
        "events": [],
    }
    assert "warning: 'custmer.*' matches no Pivotal event type" in result.stderr
    quiet = resolve_routing(("custmer.*=8001",), None, None, warn=False)
    assert quiet is not None and quiet.routes[0].pattern == "custmer.*"


def test_a_route_that_can_get_nothing_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(tmp_path, monkeypatch, "-f", "task.*=8001", "-f", "task.completed=8002")
    assert result.exit_code == 0
    assert (
        "warning: route 'task.completed=http://localhost:8002/' gets no delivery: every type it "
        "matches goes to a route before it" in result.stderr
    )
    right_order = run(tmp_path, monkeypatch, "-f", "task.completed=8002", "-f", "task.*=8001")
    assert right_order.exit_code == 0 and "warning" not in right_order.stderr


def test_help_shows_the_three_flags() -> None:
    text = CliRunner().invoke(show, ["--help"]).output
    assert "-f, --forward [PATTERN=]TARGET" in text
    assert "--events PATTERNS" in text and "--config FILE" in text
    assert "--events" not in CliRunner().invoke(show_no_events, ["--help"]).output
