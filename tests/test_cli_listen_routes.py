"""`hooktap listen` with routes, --events and hooktap.toml, as a user runs it: the real CLI in
a subprocess (its --json lines, its stderr), and the refusals that come before anything
starts, each a clear exit 2."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from hooktap.cli import main
from support.procs import Procs
from support.servers import running_handler

TOML = """\
[listen]
forward = ["customer.*={customers}/hooks", "{rest}/webhooks/pivotal"]
events = ["customer.*", "task.*"]
"""


def envelope(event_type: str) -> bytes:
    return json.dumps({"id": "evt_1", "type": event_type, "data": {"object": {}}}).encode()


async def post(url: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body) as resp:
        return resp.status


async def test_json_lines_carry_state_route_and_target_with_routes_from_hooktap_toml(
    procs: Procs, hooktap_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_handler() as customers, running_handler() as rest:
        (tmp_path / "hooktap.toml").write_text(TOML.format(customers=customers.url, rest=rest.url))
        monkeypatch.chdir(tmp_path)  # the subprocess starts here: ./hooktap.toml is read
        proc = procs.start(["listen", "--port", "0", "--json", "--no-healthcheck"], hooktap_home)
        ready = proc.wait_json("ready")
        assert ready["routes"] == [
            f"customer.*={customers.url}/hooks",
            f"{rest.url}/webhooks/pivotal",
        ]
        assert ready["events"] == ["customer.*", "task.*"]
        assert ready["forward_to"] == f"{rest.url}/webhooks/pivotal"  # the fallback
        url = str(ready["webhook_url"])
        for event_type in ("customer.created", "task.completed", "onboarding.created"):
            assert await post(url, envelope(event_type)) == 200
        lines = {}
        for _ in range(3):
            line = proc.wait_json("delivery")
            lines[line["type"]] = line
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0
        _, err = proc.rest()

    customer, task, onboarding = (
        lines[t] for t in ("customer.created", "task.completed", "onboarding.created")
    )
    assert (customer["state"], customer["route"], customer["status"]) == (
        "forwarded",
        "customer.*",
        200,
    )
    assert customer["target"] == f"{customers.url}/hooks"
    assert (task["state"], task["route"], task["target"]) == (
        "forwarded",
        None,
        f"{rest.url}/webhooks/pivotal",
    )
    assert onboarding["state"] == "filtered"
    assert (onboarding["status"], onboarding["target"], onboarding["route"]) == (None,) * 3
    assert "not in --events" in onboarding["reason"]
    # The same request fields as a forwarded line: only the handler's side is missing.
    only_forwarded = {"duplicate_svix_id", "pivotal_would_retry", "rules_broken", "note"}
    assert set(customer) - set(onboarding) == only_forwarded
    assert set(onboarding) - set(customer) == {"reason"}
    assert onboarding["signature"] == "unsigned" and onboarding["id"] not in (
        customer["id"],
        task["id"],
    )
    body_sha = hashlib.sha256(envelope("customer.created")).hexdigest()
    assert [hashlib.sha256(s.body).hexdigest() for s in customers.seen] == [body_sha]
    assert [json.loads(s.body)["type"] for s in rest.seen] == ["task.completed"]
    text = "\n".join(err)
    assert "Routes (the first match wins):" in text
    assert "Only these event types: customer.*, task.*" in text
    assert "Traceback" not in text


async def test_flags_win_over_hooktap_toml_and_log_lines_say_where_each_went(
    procs: Procs, hooktap_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--forward replaces the file's routes and --events its events (the file's would have
    let task.* through); the log lines name the filtered ones, dim, with why."""
    async with running_handler() as flagged:
        toml = TOML.format(customers="http://127.0.0.1:9", rest="http://127.0.0.1:9")
        (tmp_path / "hooktap.toml").write_text(toml)
        monkeypatch.chdir(tmp_path)
        args = ["--port", "0", "--no-tui", "--no-healthcheck", "-f", flagged.url + "/f"]
        proc = procs.start(["listen", *args, "--events", "onboarding.*"], hooktap_home)
        url = proc.wait_stderr("Webhook URL: ").split("Webhook URL: ", 1)[1].strip()
        banner = [proc.wait_stderr("Routes (the first match wins):")]
        banner.append(proc.wait_stderr("anything else"))
        banner.append(proc.wait_stderr("Only these event types"))
        assert await post(url, envelope("onboarding.created")) == 200
        forwarded = proc.wait_stderr("onboarding.created")
        assert await post(url, envelope("task.completed")) == 200
        filtered = proc.wait_stderr("task.completed")
        assert [json.loads(s.body)["type"] for s in flagged.seen] == ["onboarding.created"]
    assert f"→ {flagged.url}/f" in banner[1] and "customer.*" not in "".join(banner)
    assert "onboarding.*" in banner[2] and "task.*" not in banner[2]
    assert "→ 200" in forwarded and f"{flagged.url}/f" in forwarded
    assert "→ filtered" in filtered and "(not in --events)" in filtered


def listen(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["listen", "--no-tui", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_bad_routes_events_and_config_exit_2_with_the_reason(
    hooktap_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [
        (["--events", "customer.*"], "needs a --forward target"),
        (["-f", "=localhost:8000"], "has no event-type pattern before '='"),
        (["-f", "customer.*=ftp://x:1"], "must use http or https"),
        (["-f", "8000", "-f", "8001"], "only one can be the fallback"),
        (["-f", "8000", "--events", "customer.*,,task.*"], "has an empty pattern"),
        (["-f", "cust{omer}=8000"], "not an event type or a glob"),
        (["--config", str(tmp_path / "missing.toml")], "does not exist"),
    ]
    for args, words in cases:
        code, output = listen(*args)
        assert code == 2, (args, output)
        assert words in output, (args, output)

    (tmp_path / "hooktap.toml").write_text("[listen]\nforward = [\n")
    code, output = listen()
    assert code == 2 and "is not valid TOML" in output and "hooktap.toml" in output
    (tmp_path / "hooktap.toml").write_text('[listen]\nforward = ["task.*=localhost:99999"]\n')
    code, output = listen()
    assert code == 2 and "99999" in output and "(from " in output and "hooktap.toml" in output
    (tmp_path / "hooktap.toml").write_text('[listen]\nevents = ["task.*"]\n')
    code, output = listen()
    assert code == 2 and "needs a --forward target" in output


def test_no_target_anywhere_names_forward_and_hooktap_toml(
    hooktap_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = listen()
    assert code == 2
    assert "Missing option '--forward'" in output and "hooktap.toml" in output
