"""Hosts a forward target may name: an IP literal or a name the resolver can take. Anything
else is refused where it is typed (exit 2 from the CLI), not discovered later as a
UnicodeError in the forwarder or the health probe."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hooktap.cli import main
from hooktap.listen.forward import Forwarder
from hooktap.listen.routes import parse_route
from hooktap.listen.target import Target, parse_target


@pytest.mark.parametrize(
    "text",
    [
        "api..local",
        "api..local:8000/hooks",
        "8001=customer.*",
        "=8001",
        "foo bar",
        "a" * 64 + ".dev:80",
        "http://ex ample.com/",
        "api.local..:80",
        "-=x:80",
        "ho$t:80",
    ],
)
def test_a_host_that_is_no_name_nor_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or a host name"):
        parse_target(text)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("localhost:8000", "localhost"),
        ("api.local:8000/hooks", "api.local"),
        ("my-api.internal:9000", "my-api.internal"),
        ("my_app:8000", "my_app"),  # a Docker container's name resolves on its network
        ("api.local.:8000", "api.local."),
        ("a" * 63 + ".dev:80", "a" * 63 + ".dev"),
        ("[::1]:8000", "::1"),
        ("https://bücher.example/h", "bücher.example"),
        ("10.0.0.1:80", "10.0.0.1"),
    ],
)
def test_names_and_addresses_that_work_are_kept(text: str, host: str) -> None:
    assert parse_target(text).host == host


@pytest.mark.parametrize("text", ["api..local:8000", "a..b", "foo bar:8000"])
def test_the_cli_refuses_a_bad_host_with_exit_2(text: str) -> None:
    result = CliRunner().invoke(main, ["listen", "--forward", text, "--json"])
    assert result.exit_code == 2, result.output
    assert "is not an IP address or a host name" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_port_before_the_pattern_asks_did_you_mean() -> None:
    with pytest.raises(ValueError, match=r"did you mean customer\.\*=8001"):
        parse_route("8001=customer.*")
    result = CliRunner().invoke(main, ["listen", "--forward", "8001=customer.*", "--json"])
    assert result.exit_code == 2, result.output
    assert "did you mean customer.*=8001" in result.output


@pytest.mark.parametrize("host", ["api..local", "a" * 64 + ".local"])
async def test_the_forwarder_reports_a_host_the_resolver_refuses(host: str) -> None:
    """A Target built without parse_target (an old listener.json, say): the delivery fails
    with a reason, as for any unreachable handler, instead of raising UnicodeError."""
    forwarder = Forwarder(Target("http", host, 80, ""), timeout=5)
    try:
        outcome = await forwarder.send("POST", "", "", [("Content-Type", "text/plain")], b"x")
    finally:
        await forwarder.close()
    assert outcome.status is None
    assert outcome.error is not None and "is not a valid host name" in outcome.error
