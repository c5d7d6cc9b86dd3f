"""`hooktap events`, `trigger` and `check` as a user runs them, against real local servers.

The commands run their own event loop (asyncio.run), so each is invoked in a worker thread
while the test's loop serves the handler they talk to.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.cli.pivotal_cmd import _check_url, check_cmd, events_cmd, trigger_cmd
from hooktap.listen import state
from hooktap.pivotal.catalog import event_types
from hooktap.pivotal.signing import verify
from support.fastapi_app import SECRET, Handled, correct_handler, docs_handler
from support.fastapi_app import serve as serve_fastapi
from support.servers import running_handler, serve

RATE_ARGS = ["--count", "4", "--rate", "20", "--json"]


def invoke(cmd: click.Command, args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cmd, args, env=env, catch_exceptions=False)


async def invoke_async(
    cmd: click.Command, args: list[str], env: dict[str, str] | None = None
) -> Result:
    return await asyncio.to_thread(invoke, cmd, args, env)


# --- events ----------------------------------------------------------------------------------


def test_events_lists_every_type() -> None:
    result = invoke(events_cmd, [])
    assert result.exit_code == 0
    for event_type in event_types():
        assert event_type in result.output
    assert "* customer.at_risk" in result.output
    assert "  task.deleted" in result.output


def test_events_shows_one_sample() -> None:
    result = invoke(events_cmd, ["customer.churned"])
    assert result.exit_code == 0
    first, rest = result.output.split("\n", 1)
    assert first.startswith("customer.churned (customer): ")
    assert json.loads(rest)["data"]["object"]["lifecycle_stage"] == "churned"


def test_events_json_lines() -> None:
    result = invoke(events_cmd, ["--json"])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["type"] for line in lines] == event_types()
    assert all(line["sample"]["type"] == line["type"] for line in lines)
    one = invoke(events_cmd, ["--json", "task.completed"])
    assert [json.loads(x)["type"] for x in one.output.splitlines()] == ["task.completed"]


def test_events_unknown_type() -> None:
    result = invoke(events_cmd, ["customer.exploded"])
    assert result.exit_code == 2
    assert "unknown event type 'customer.exploded'" in result.output
    assert "customer.created" in result.output


# --- trigger ---------------------------------------------------------------------------------


async def test_trigger_sends_a_signed_sample(secret: str) -> None:
    async with running_handler() as handler:
        url = handler.url + "/webhooks/pivotal"
        result = await invoke_async(
            trigger_cmd,
            ["customer.at_risk", "--url", url, "--set", "data.object.health_score=12"],
            env={"PIVOTAL_WEBHOOK_SECRET": secret},
        )
        seen = await handler.wait_for(1)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("→ customer.at_risk evt_")
    assert " 200 in " in result.output
    (req,) = seen
    assert req.method == "POST" and req.path_qs == "/webhooks/pivotal"
    names = [n.lower() for n, _ in req.raw_headers]
    assert {"svix-id", "svix-timestamp", "svix-signature", "content-type"} <= set(names)
    assert verify(secret, req.raw_headers, req.body).status == "valid"
    doc = json.loads(req.body)
    assert doc["type"] == "customer.at_risk"
    assert doc["data"]["object"]["health_score"] == 12
    assert doc["data"]["object"]["health_status"] == "at_risk"


async def test_trigger_count_rate_and_json(secret: str) -> None:
    async with running_handler() as handler:
        started = time.monotonic()
        result = await invoke_async(
            trigger_cmd,
            ["task.completed", "--url", handler.url, "--secret", secret, *RATE_ARGS],
        )
        elapsed = time.monotonic() - started
        assert result.exit_code == 0, result.output
        seen = await handler.wait_for(4)
    assert elapsed >= 3 / 20  # four launches at 50 ms intervals
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == 4
    assert all(r["event"] == "sent" and r["status"] == 200 for r in records)
    bodies = [json.loads(s.body) for s in seen]
    assert len({b["id"] for b in bodies}) == 4
    assert len({dict(s.raw_headers)["svix-id"] for s in seen}) == 4
    assert {r["id"] for r in records} == {b["id"] for b in bodies}


async def test_trigger_data_file_then_sets(secret: str, tmp_path: Path) -> None:
    record = {"id": "cus_custom", "object": "customer", "name": "From File", "tags": ["a", "b"]}
    path = tmp_path / "customer.json"
    path.write_text(json.dumps(record))
    sets = ["--data-file", str(path)]
    sets += ["--set", "data.object.tags.0=x", "--set", "data.object.tags.1=1"]
    async with running_handler() as handler:
        result = await invoke_async(
            trigger_cmd,
            ["customer.updated", "--url", handler.url, "--secret", secret, *sets],
        )
        assert result.exit_code == 0, result.output
        (req,) = await handler.wait_for(1)
    assert json.loads(req.body)["data"] == {"object": {**record, "tags": ["x", 1]}}


async def test_trigger_defaults_to_the_running_listener(secret: str) -> None:
    async with running_handler() as handler:
        state.write(handler.url + "/c/abc", "http://localhost:8000", "embedded")
        try:
            result = await invoke_async(trigger_cmd, ["webhook.ping", "--secret", secret])
        finally:
            state.clear()
        (req,) = await handler.wait_for(1)
    assert result.exit_code == 0, result.output
    assert req.path_qs == "/c/abc"
    assert json.loads(req.body)["type"] == "webhook.ping"


async def test_trigger_exits_1_when_the_receiver_refuses(secret: str) -> None:
    async with running_handler() as handler:
        handler.status = 500
        result = await invoke_async(
            trigger_cmd, ["task.created", "--url", handler.url, "--secret", secret]
        )
    assert result.exit_code == 1
    assert " 500 in " in result.output
    assert "1 of 1 deliveries did not get a 2xx" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.nope"], "unknown event type 'nope.nope'"),
        (["task.created"], "a signing secret is needed"),
        (["task.created", "--secret", "whsec_!!!"], "got 'whsec_!!!': not valid base64"),
        (["task.created", "--secret", "{secret}", "--set", "data"], "expected KEY=VALUE"),
        (
            ["task.created", "--secret", "{secret}", "--set", "data.object.title.x=1"],
            "data.object.title is 'Import historical shipment data', not an object",
        ),
        (
            ["customer.updated", "--secret", "{secret}", "--set", "date.health_score=12"],
            "--set date.health_score: customer.updated events have no field 'date' (did you "
            "mean data.object.health_score?); --allow-new-fields adds it anyway",
        ),
        (
            ["customer.updated", "--secret", "{secret}", "--set", "data.object.healthscore=1"],
            "no field 'data.object.healthscore' (did you mean data.object.health_score?)",
        ),
        (
            ["customer.updated", "--secret", "{secret}", "--set", "data.health_score=12"],
            "(did you mean data.object.health_score?)",
        ),
        (
            ["customer.updated", "--secret", "{secret}", "--set", "data.object.health_score=1e999"],
            "1e999 is too large for a JSON number: parsers read it as Infinity",
        ),
        (
            ["task.created", "--secret", "{secret}", "--set", 'data.object.title="\\ud800"'],
            "value holds a lone surrogate ('\\ud800')",
        ),
        (
            ["task.created", "--secret", "{secret}", "--set", "data.object.title=\udcff"],
            "value holds a lone surrogate ('\\udcff')",
        ),
        (
            ["task.created", "--secret", "{secret}", "--set", ".".join(["data"] * 2000) + "=1"],
            "has 2,000 segments; at most 32",
        ),
        (
            [
                "task.created",
                "--allow-new-fields",
                "--secret",
                "{secret}",
                "--set",
                ".".join(["data"] * 2000) + "=1",
            ],
            "has 2,000 segments; at most 32",
        ),
        (
            ["task.created", "--secret", "{secret}", "--data-file", "/nonexistent/x.json"],
            "cannot read",
        ),
        (["task.created", "--secret", "{secret}", "--url", "localhost:1"], "--url must be an http"),
        (["task.created", "--secret", "{secret}"], "no running listener found"),
    ],
)
def test_trigger_user_errors_exit_2(args: list[str], message: str, secret: str) -> None:
    result = invoke(trigger_cmd, [a.replace("{secret}", secret) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"name": "\\ud800"}', "holds a lone surrogate"),
        ("[" * 2000 + "]" * 2000, "nested too deep"),
        ('{"health_score": 1e999}', "too large for a JSON number"),
        ('{"health_score": NaN}', "is not JSON"),
    ],
)
def test_trigger_data_file_that_cannot_be_sent(
    content: str, message: str, secret: str, tmp_path: Path
) -> None:
    path = tmp_path / "record.json"
    path.write_text(content)
    result = invoke(trigger_cmd, ["task.created", "--secret", secret, "--data-file", str(path)])
    assert result.exit_code == 2
    assert f"--data-file {path}" in result.output and message in result.output
    assert "Traceback" not in result.output


async def test_trigger_adds_a_new_field_only_when_allowed(secret: str) -> None:
    async with running_handler() as handler:
        args = ["customer.updated", "--url", handler.url, "--secret", secret]
        args += ["--set", "data.object.healthscore=5"]
        refused = await invoke_async(trigger_cmd, args)
        result = await invoke_async(trigger_cmd, [*args, "--allow-new-fields"])
        (req,) = await handler.wait_for(1)
    assert refused.exit_code == 2
    assert result.exit_code == 0, result.output
    record = json.loads(req.body)["data"]["object"]
    assert record["healthscore"] == 5 and record["health_score"] == 82


def test_trigger_data_file_not_json(secret: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    result = invoke(trigger_cmd, ["task.created", "--secret", secret, "--data-file", str(path)])
    assert result.exit_code == 2
    assert "is not JSON" in result.output


# --- check -----------------------------------------------------------------------------------


def verifying_app(secret: str) -> web.Application:
    """A correct aiohttp handler: svix over the raw body, 401 on any failure."""
    wh = Webhook(secret)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        names = ("svix-id", "svix-timestamp", "svix-signature")
        try:
            wh.verify(body, {n: request.headers.get(n, "") for n in names})
        except (WebhookVerificationError, ValueError):
            return web.Response(status=401, text="invalid signature")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/pivotal", receive)
    return app


async def test_check_passes_a_correct_handler(secret: str) -> None:
    async with serve(verifying_app(secret)) as base:
        target = base.removeprefix("http://") + "/webhooks/pivotal"  # 127.0.0.1:PORT/path
        result = await invoke_async(check_cmd, ["--forward", target, "--secret", secret])
    assert result.exit_code == 0, result.output
    assert "10 of 11 checks passed; 1 could not be judged (UNKNOWN: each says why)." in (
        result.output
    )
    assert "FAIL" not in result.output
    assert "UNKNOWN  retry processed once\n" in result.output
    assert "The target looks wrong" not in result.output


def pass_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.lstrip().startswith("PASS")]


async def test_check_against_pivotals_handler_never_passes_idempotency() -> None:
    """Pivotal's published handler processes a retry twice: the report says what it saw
    (2xx both times) and that whether the work was repeated is unknown."""
    handled = Handled()
    async with serve_fastapi(docs_handler(SECRET, handled)) as url:
        as_json = await invoke_async(check_cmd, ["-f", url, "--secret", SECRET, "--json"])
        human = await invoke_async(check_cmd, ["-f", url, "--secret", SECRET])
    lines = [json.loads(line) for line in as_json.output.splitlines()]
    once = next(x for x in lines if x.get("name") == "retry processed once")
    assert once["verdict"] == "unknown" and once["passed"] is None
    assert "got 2xx both times" in once["got"] and "cannot be seen from here" in once["got"]
    event_id = once["got"].split("event ", 1)[1].split()[0]
    assert handled.times(event_id) == 2  # what check cannot see, and does not claim
    assert "PASS     retry answered 2xx: 200 in " in human.output
    assert "UNKNOWN  retry processed once\n" in human.output
    assert not any("processed" in line for line in pass_lines(human.output))


async def test_check_at_a_wrong_path_says_so_and_counts_no_404_as_a_refusal() -> None:
    async with serve_fastapi(correct_handler()) as url:
        root = url.removesuffix("/webhooks/pivotal")  # what `--forward 127.0.0.1:PORT` means
        result = await invoke_async(check_cmd, ["-f", root, "--secret", SECRET])
    assert result.exit_code == 1
    assert pass_lines(result.output) == []
    assert "0 of 11 checks passed; 8 could not be judged" in result.output
    assert "UNKNOWN  tampered body\n" in result.output
    netloc = root.removeprefix("http://")
    assert result.output.rstrip().endswith(
        "The target looks wrong: every request got 404: is the path right? Pivotal's handlers "
        f"live at /webhooks/pivotal; try --forward {netloc}/webhooks/pivotal"
    )


async def test_check_json_and_failures_exit_1(secret: str) -> None:
    async with running_handler() as handler:  # answers 200 to anything: verifies nothing
        result = await invoke_async(
            check_cmd,
            ["--forward", handler.url + "/hook", "--json"],
            env={"PIVOTAL_WEBHOOK_SECRET": secret},
        )
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.output.splitlines()]
    checks, summary = lines[:-1], lines[-1]
    assert summary == {
        "event": "summary",
        "url": handler.url + "/hook",
        "passed": 3,
        "failed": 7,
        "unknown": 1,
        "diagnosis": None,
    }
    assert {c["name"] for c in checks if c["passed"]} == {
        "signed delivery",
        "retry answered 2xx",
        "out-of-order events",
    }
    assert {c["name"]: c["verdict"] for c in checks if c["passed"] is None} == {
        "retry processed once": "unknown"
    }
    tampered = next(c for c in checks if c["name"] == "tampered body")
    assert tampered["got"].startswith("200 in ") and tampered["verdict"] == "fail"


async def test_check_human_report_names_failures(secret: str) -> None:
    async with running_handler() as handler:
        result = await invoke_async(check_cmd, ["-f", handler.url, "--secret", secret])
    assert result.exit_code == 1
    assert "FAIL     missing svix-signature\n" in result.output
    assert "expected: 4xx" in result.output
    assert "3 of 11 checks passed; 1 could not be judged" in result.output


def test_check_user_errors(secret: str) -> None:
    no_secret = invoke(check_cmd, ["--forward", "8000"])
    assert no_secret.exit_code == 2
    assert "a signing secret is needed" in no_secret.output
    bad_target = invoke(check_cmd, ["--forward", "ftp://x", "--secret", secret])
    assert bad_target.exit_code == 2
    assert "must use http or https" in bad_target.output


def test_check_target_forms() -> None:
    assert _check_url("8000") == "http://localhost:8000/"
    assert _check_url("localhost:8000") == "http://localhost:8000/"
    assert _check_url("localhost:8000/webhooks/pivotal") == "http://localhost:8000/webhooks/pivotal"
    assert _check_url("https://127.0.0.1:8443/h") == "https://127.0.0.1:8443/h"


@pytest.mark.parametrize("cmd", [events_cmd, trigger_cmd, check_cmd])
def test_help_has_an_example(cmd: click.Command) -> None:
    result = invoke(cmd, ["--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"hooktap {cmd.name}" in result.output
    if cmd is not events_cmd:
        assert "PIVOTAL_WEBHOOK_SECRET" in result.output
