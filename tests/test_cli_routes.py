"""`hooktap check` and `hooktap trigger` with routes, against real handlers on several ports:
check holds each route's handler to Pivotal's rules with an event type that route takes, and
trigger, through a real `hooktap listen` with two routes, says where each delivery landed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.cli.pivotal_cmd import check_cmd, trigger_cmd
from hooktap.listen.routes import Decision
from support.procs import Procs
from support.servers import serve

HOOK = "/webhooks/pivotal"


def invoke(cmd: click.Command, args: list[str]) -> Result:
    return CliRunner().invoke(cmd, args, catch_exceptions=False)


async def invoke_async(cmd: click.Command, args: list[str]) -> Result:
    return await asyncio.to_thread(invoke, cmd, args)


@dataclass
class TypedHandler:
    """A correct handler that knows only the event types starting with `prefix` (""
    for all): svix over the raw body, 401 when that fails, 400 for a type it does not
    handle. It records every type it was sent, verified or not."""

    secret: str
    prefix: str = ""
    verify: bool = True
    url: str = ""
    types: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event_type = str(json.loads(body).get("type"))
        except ValueError:
            event_type = "?"
        self.types.append(event_type)
        if self.verify:
            names = ("svix-id", "svix-timestamp", "svix-signature")
            try:
                Webhook(self.secret).verify(body, {n: request.headers.get(n, "") for n in names})
            except (WebhookVerificationError, ValueError):
                return web.Response(status=401, text="invalid signature")
        if not event_type.startswith(self.prefix):
            return web.Response(status=400, text=f"unknown event type {event_type}")
        return web.Response(text="ok")

    @property
    def target(self) -> str:
        return self.url.removeprefix("http://") + HOOK


@contextlib.asynccontextmanager
async def typed_handler(
    secret: str, prefix: str = "", *, verify: bool = True
) -> AsyncIterator[TypedHandler]:
    handler = TypedHandler(secret, prefix, verify)
    app = web.Application()
    app.router.add_post(HOOK, handler.handle)
    async with serve(app) as url:
        handler.url = url
        yield handler


def json_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


# --- check ---------------------------------------------------------------------------------


async def test_check_holds_each_routes_handler_to_the_rules_with_a_type_it_takes(
    secret: str,
) -> None:
    async with (
        typed_handler(secret, "customer.") as customers,
        typed_handler(secret, "task.") as tasks,
        typed_handler(secret, verify=False) as rest,  # accepts anything: forgeries too
    ):
        args = ["-f", rest.target, "-f", f"customer.*={customers.target}"]
        args += ["-f", f"task.*={tasks.target}", "--secret", secret]
        human = await invoke_async(check_cmd, args)
        as_json = await invoke_async(check_cmd, [*args, "--json"])
    assert human.exit_code == 1 and as_json.exit_code == 1  # the fallback fails its checks
    # Each handler only ever saw the types its route takes; the fallback, listed first, is
    # checked last, with the first type no route before it takes.
    assert set(customers.types) == {"customer.created"}
    assert set(tasks.types) == {"task.created"}
    assert set(rest.types) == {"webhook.ping"}
    out = human.output
    assert f"Route customer.*=http://{customers.target}, checked with customer.created" in out
    assert out.index("customer.created events") < out.index("task.created events")
    assert out.index("task.created events") < out.index("webhook.ping events")
    assert f"PASS     customer.*=http://{customers.target} (customer.created): 10 of 11" in out
    assert f"PASS     task.*=http://{tasks.target} (task.created): 10 of 11 passed" in out
    assert f"FAIL     http://{rest.target} (webhook.ping): 3 of 11 passed, 7 failed" in out
    summaries = [x for x in json_lines(as_json) if x["event"] == "summary"]
    assert [(s["pattern"], s["event_type"], s["failed"]) for s in summaries] == [
        ("customer.*", "customer.created", 0),
        ("task.*", "task.created", 0),
        (None, "webhook.ping", 7),
    ]
    assert summaries[1]["url"] == f"http://{tasks.target}"
    assert summaries[1]["route"] == f"task.*=http://{tasks.target}"
    checks = [x for x in json_lines(as_json) if x["event"] == "check"]
    assert len(checks) == 33 and all(c["event_type"] for c in checks)


async def test_the_fallback_keeps_the_usual_event_when_no_route_takes_it(secret: str) -> None:
    async with typed_handler(secret, "task.") as tasks, typed_handler(secret) as rest:
        result = await invoke_async(
            check_cmd,
            ["-f", f"task.*={tasks.target}", "-f", rest.target, "--secret", secret, "--json"],
        )
    assert result.exit_code == 0, result.output
    assert set(rest.types) == {"customer.updated"}  # what check sends a lone handler
    assert set(tasks.types) == {"task.created"}


async def test_routes_no_known_type_reaches_are_skipped_with_the_reason(secret: str) -> None:
    async with typed_handler(secret, "task.") as tasks, typed_handler(secret) as other:
        args = ["-f", f"tsk.*={other.target}", "-f", f"task.*={tasks.target}"]
        args += ["-f", f"task.completed={other.target}", "--secret", secret]
        human = await invoke_async(check_cmd, args)
        as_json = await invoke_async(check_cmd, [*args, "--json"])
    assert human.exit_code == 0, human.output  # what was checked passed
    assert other.types == []
    typo = f"SKIPPED  tsk.*=http://{other.target}: 'tsk.*' matches no known Pivotal event type"
    assert typo in human.output
    assert (
        f"SKIPPED  task.completed=http://{other.target}: every type it takes goes to a route "
        f"before it (task.*=http://{tasks.target})" in human.output
    )
    skipped = [x for x in json_lines(as_json) if x["event"] == "skipped"]
    assert [(s["pattern"], s["event_type"]) for s in skipped] == [
        ("tsk.*", None),
        ("task.completed", None),
    ]
    assert "matches no known Pivotal event type" in str(skipped[0]["reason"])


async def test_events_choose_the_type_a_lone_handler_is_checked_with(secret: str) -> None:
    async with typed_handler(secret, "task.") as tasks:
        result = await invoke_async(
            check_cmd, ["-f", tasks.target, "--events", "task.completed", "--secret", secret]
        )
    assert result.exit_code == 0, result.output
    assert set(tasks.types) == {"task.completed"}


async def test_check_reads_hooktap_toml_or_config(
    secret: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with typed_handler(secret, "customer.") as customers, typed_handler(secret) as rest:
        toml = f'[listen]\nforward = ["customer={customers.target}", "{rest.target}"]\n'
        (tmp_path / "hooktap.toml").write_text(toml)
        monkeypatch.chdir(tmp_path)
        from_cwd = await invoke_async(check_cmd, ["--secret", secret])
        other = tmp_path / "other.toml"
        other.write_text(f'[listen]\nforward = ["{customers.target}"]\n')
        from_config = await invoke_async(check_cmd, ["--config", str(other), "--secret", secret])
        flag_wins = await invoke_async(check_cmd, ["-f", rest.target, "--secret", secret])
    assert from_cwd.exit_code == 0, from_cwd.output
    assert f"PASS     customer=http://{customers.target} (customer.created)" in from_cwd.output
    assert f"PASS     http://{rest.target} (webhook.ping)" in from_cwd.output
    # One target for everything: the report as it always was, with the usual event.
    assert from_config.exit_code == 0, from_config.output
    assert "Routes:" not in from_config.output and "Route " not in from_config.output
    assert from_config.output.startswith(f"Checking http://{customers.target} against")
    assert flag_wins.exit_code == 0 and "Routes:" not in flag_wins.output
    # 12 requests a check: the file's fallback with webhook.ping, the flag's target as always.
    assert rest.types == ["webhook.ping"] * 12 + ["customer.updated"] * 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no handler to check: give --forward TARGET"),
        (["-f", "8000", "-f", "8001"], "only one can be the fallback"),
        (["-f", "tsk.*=8001"], "no route can be checked: tsk.*=http://localhost:8001/: 'tsk.*'"),
        (["--events", "task.*"], "it needs a --forward target"),
        (["-f", "8000", "--config", "absent.toml"], "config file absent.toml does not exist"),
    ],
)
def test_check_bad_routes_exit_2(
    args: list[str], message: str, secret: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(check_cmd, [*args, "--secret", secret])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


# --- trigger, through a real listener with routes ------------------------------------------


async def test_trigger_lands_on_the_task_route_and_says_where(
    procs: Procs, hooktap_home: Path, secret: str
) -> None:
    env = {"PIVOTAL_WEBHOOK_SECRET": secret}
    async with (
        typed_handler(secret, "customer.") as customers,
        typed_handler(secret, "task.") as tasks,
    ):
        proc = procs.start(
            [
                "listen",
                "--forward",
                f"customer.*={customers.target}",
                "--forward",
                f"task.*={tasks.target}",
                "--events",
                "customer.*,task.*,webhook.ping",
                "--port",
                "0",
                "--json",
                "--no-healthcheck",
            ],
            hooktap_home,
            env=env,
        )
        webhook_url = str(proc.wait_json("ready")["webhook_url"])

        sent = procs.start(["trigger", "task.completed", "--json"], hooktap_home, env=env)
        record = await asyncio.to_thread(sent.json_line)
        assert await asyncio.to_thread(sent.wait) == 0
        assert tasks.types == ["task.completed"] and customers.types == []
        assert record["status"] == 200
        assert record["target"] == f"http://{tasks.target}" and record["state"] == "forwarded"
        assert "reason" not in record

        # The same command in this process (HOOKTAP_HOME is the listener's): quicker to start.
        # With --url it does not wait for the history at all: the listener stored the outcome
        # before it answered.
        text = await invoke_async(
            trigger_cmd, ["customer.at_risk", "--url", webhook_url, "--secret", secret]
        )
        assert text.exit_code == 0, text.output
        assert customers.types == ["customer.at_risk"]
        line = rf"→ customer\.at_risk evt_\w+ 200 in \d+ ms; routed to http://{customers.target}"
        assert re.fullmatch(line, text.stdout.strip()), text.stdout

        # Outside --events: stored, answered 200, no handler sees it.
        filtered = await invoke_async(
            trigger_cmd, ["contact.created", "--json", "--secret", secret]
        )
        landed = json.loads(filtered.stdout)
        assert landed["status"] == 200 and landed["state"] == "filtered"
        assert landed["target"] is None
        assert landed["reason"] == Decision("filtered", None).reason
        # In --events, but no route takes it and there is no fallback.
        unrouted = await invoke_async(trigger_cmd, ["webhook.ping", "--secret", secret])
        assert unrouted.exit_code == 0, unrouted.output
        assert "; unrouted: no --forward route matches its event type" in unrouted.stdout
        assert tasks.types == ["task.completed"] and customers.types == ["customer.at_risk"]

        # `check` with no --forward and no hooktap.toml checks the running listener's routes.
        checked = await invoke_async(check_cmd, ["--json", "--secret", secret])
        assert checked.exit_code == 0, checked.output
        routes = {r["route"] for r in json_lines(checked) if r.get("event") == "summary"}
        assert routes == {f"customer.*=http://{customers.target}", f"task.*=http://{tasks.target}"}
        assert set(customers.types[1:]) == {"customer.created"}
        assert set(tasks.types[1:]) == {"task.created"}

        proc.signal(signal.SIGINT)
        assert proc.wait() == 0


async def test_trigger_says_nothing_extra_for_a_delivery_not_in_this_history(
    hooktap_home: Path, secret: str
) -> None:
    """A history exists (a listener ran here once) but the delivery went elsewhere, as to a
    listener on another machine: the line is what it always was."""
    from hooktap.home import history_db
    from hooktap.store import Store

    Store(history_db()).close()
    async with typed_handler(secret, "task.") as tasks:
        url = tasks.url + HOOK
        text = await invoke_async(trigger_cmd, ["task.completed", "--url", url, "--secret", secret])
        as_json = await invoke_async(
            trigger_cmd, ["task.completed", "--url", url, "--secret", secret, "--json"]
        )
    assert text.exit_code == 0 and as_json.exit_code == 0
    assert text.output.rstrip().endswith(" ms") and ";" not in text.output
    record = json.loads(as_json.stdout)
    assert "target" not in record and "state" not in record and record["status"] == 200
