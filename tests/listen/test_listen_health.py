"""The handler's health, wired into a real Listener and `hooktap listen`: a target down at start
is said right after the ready line, before any webhook fails on it, loudly in the log; one
that comes up is said up; a target up at start is told to the outputs once, quietly."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from raw_http import OK, answer, raw_server

from hooktap.listen import output
from hooktap.listen.events import DeliveryForwarded, Ready, TargetHealth
from hooktap.listen.routes import build_routing
from support.procs import Procs, free_port
from support.servers import Handler, running_handler, running_listener, running_relay, until


async def test_a_target_down_at_start_is_said_after_ready_and_again_when_it_comes_up(
    tmp_path: Path,
) -> None:
    down_port = free_port()  # nothing listens here until the test starts a handler on it
    down_url = f"http://127.0.0.1:{down_port}/late"
    async with running_handler() as up, running_relay(tmp_path / "relay") as relay:
        routing = build_routing([f"task.*={down_url}", up.url + "/hooks"])
        async with running_listener(
            relay,
            up.url,
            tmp_path / "h.db",
            routing=routing,
            healthcheck=True,
            health_interval=0.1,
        ) as run:
            await until(lambda: len([e for e in run.events if isinstance(e, TargetHealth)]) >= 2)
            late = Handler()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", late.handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", down_port).start()
            try:
                await until(lambda: sum(isinstance(e, TargetHealth) for e in run.events) >= 3)
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(run.webhook_url, data=b'{"type": "task.created"}') as resp,
                ):
                    assert resp.status == 200
                await until(lambda: any(isinstance(e, DeliveryForwarded) for e in run.events))
            finally:
                await runner.cleanup()
            events = list(run.events)

    health = [e for e in events if isinstance(e, TargetHealth)]
    first = [e for e in events if isinstance(e, Ready | TargetHealth)]
    assert isinstance(first[0], Ready)  # the ready line stays first
    at_start = {e.target: e for e in health[:2]}
    down = at_start[f"127.0.0.1:{down_port}"]
    assert down.state == "down" and "is not accepting connections" in down.detail
    assert down.urls == (down_url,)
    upstart = at_start[up.url.removeprefix("http://")]
    assert upstart.state == "up" and upstart.urls == (up.url + "/hooks",)
    back = health[2]
    assert (back.target, back.state) == (f"127.0.0.1:{down_port}", "up")
    assert "again" in back.detail
    assert [e.delivery.event_type for e in events if isinstance(e, DeliveryForwarded)] == [
        "task.created"
    ]
    assert len(late.seen) == 1

    # What the outputs make of that sequence of events, as `hooktap listen` shows them.
    log, lines = io.StringIO(), io.StringIO()
    for show in (output.LogLines(log), output.JsonLines(lines, io.StringIO())):
        for event in events:
            show(event)
    said = log.getvalue()
    assert f"target down: 127.0.0.1:{down_port} is not accepting connections" in said
    assert f"target up: 127.0.0.1:{down_port} is accepting connections again" in said
    assert f"{up.url.removeprefix('http://')} is accepting" not in said  # up at start: quiet
    json_lines = [json.loads(x) for x in lines.getvalue().splitlines()]
    kinds = [x["event"] for x in json_lines]
    assert kinds[0] == "ready" and kinds.index("target") < kinds.index("delivery")
    targets = [x for x in json_lines if x["event"] == "target"]
    assert [(x["target"], x["state"]) for x in targets] == [(e.target, e.state) for e in health]
    assert all(set(x) == {"event", "state", "target", "detail", "urls"} for x in targets)


async def test_hooktap_listen_json_says_a_down_target_before_the_first_webhook(
    procs: Procs, hooktap_home: Path
) -> None:
    port = free_port()
    async with running_handler() as up:
        routes = ["-f", f"task.*=127.0.0.1:{port}/t", "-f", up.url]
        proc = procs.start(["listen", "--port", "0", "--json", *routes], hooktap_home)
        ready = proc.json_line()
        assert ready["event"] == "ready"
        down = proc.wait_json("target")
        while down["state"] != "down":  # the up target's line may come first
            down = proc.wait_json("target")
        async with (
            aiohttp.ClientSession() as http,
            http.post(str(ready["webhook_url"]), data=b'{"type":"task.completed"}') as resp,
        ):
            assert resp.status == 502  # the handler is down: the sender hears it
        failed = proc.wait_json("delivery")
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0
        out, err = proc.rest()
    assert down == {
        "event": "target",
        "state": "down",
        "target": f"127.0.0.1:{port}",
        "detail": f"127.0.0.1:{port} is not accepting connections (connection refused)",
        "urls": [f"http://127.0.0.1:{port}/t"],
    }
    assert failed["status"] is None and failed["route"] == "task.*"
    events = [json.loads(line)["event"] for line in out]
    assert events.index("target") < events.index("delivery")
    assert any(f"target down: 127.0.0.1:{port} is not accepting connections" in x for x in err)


@pytest.mark.parametrize("probing", [True, False])
async def test_no_healthcheck_probes_nothing(
    procs: Procs, hooktap_home: Path, probing: bool
) -> None:
    """Without --no-healthcheck the handler sees the probe's connection (a connect, no
    request) and --json a target line; with it, only the forward's connection and no line."""
    async with raw_server(answer(OK)) as handler:
        flags = [] if probing else ["--no-healthcheck"]
        proc = procs.start(
            ["listen", "--port", "0", "--json", *flags, "-f", handler.target], hooktap_home
        )
        ready = proc.json_line()
        if probing:
            assert proc.wait_json("target")["state"] == "up"
        async with (
            aiohttp.ClientSession() as http,
            http.post(str(ready["webhook_url"]), data=b"{}") as resp,
        ):
            assert resp.status == 200
        proc.wait_json("delivery")
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0
        out, _ = proc.rest()
    assert ("target" in [json.loads(line)["event"] for line in out]) is probing
    assert len(handler.requests) == 1
    assert handler.connections == (2 if probing else 1)
