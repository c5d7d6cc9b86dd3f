"""Nothing lost: real processes killed, frozen and restarted while deliveries flow."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
from pathlib import Path

import aiohttp

from support.procs import Proc, Procs, free_port
from support.servers import Handler, running_handler, until


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> list[int]:
    statuses: list[int] = [0] * len(bodies)
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        async with slots, http.post(url, data=bodies[i]) as resp:
            statuses[i] = resp.status
            await resp.read()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(i, http) for i in range(len(bodies))))
    return statuses


async def _listen(procs: Procs, home: Path, relay_url: str, target: str, *extra: str) -> Proc:
    proc = procs.start(
        ["listen", "--forward", target, "--json", "--relay", relay_url, *extra], home
    )
    ready = await asyncio.to_thread(proc.json_line)
    assert ready["event"] == "ready"
    return proc


def _wait_state(proc: Proc, state: str) -> None:
    while proc.wait_json("connection")["state"] != state:
        pass


def _counts(handler: Handler) -> collections.Counter[bytes]:
    return collections.Counter(seen.body for seen in handler.seen)


async def test_listener_sigkilled_mid_burst_loses_nothing_and_repeats_nothing(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    _, relay_url = procs.relay(tmp_path / "relay-home")
    async with running_handler() as handler:
        handler.delay = 0.01
        first = await _listen(procs, hooktap_home, relay_url, handler.url)
        webhook_url = json.loads(first.out_lines[0])["webhook_url"]
        bodies = [f'{{"n": {i}}}'.encode() for i in range(200)]
        burst = asyncio.create_task(_post_all(webhook_url, bodies, concurrency=16))
        await until(lambda: len(handler.seen) >= 40, 30)
        first.popen.kill()
        first.wait()
        statuses = await burst  # in-flight ones were answered 202: kept for the next listener
        assert set(statuses) <= {200, 202} and statuses.count(202) > 0
        assert len(handler.seen) < 200
        await _listen(procs, hooktap_home, relay_url, handler.url)
        await until(lambda: len(_counts(handler)) == 200, 30)
        await asyncio.sleep(0.3)  # a late duplicate would show up here
        counts = _counts(handler)
        assert set(counts) == set(bodies)
        assert max(counts.values()) == 1, [b for b, n in counts.items() if n > 1]


async def test_relay_sigkilled_with_a_queue_keeps_it_in_order(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    port = free_port()
    relay_home = tmp_path / "relay-home"
    relay, relay_url = procs.relay(relay_home, "--port", str(port))
    async with running_handler() as handler:
        # A first run creates the channel; then the listener goes away.
        listener = await _listen(procs, hooktap_home, relay_url, handler.url)
        webhook_url = json.loads(listener.out_lines[0])["webhook_url"]
        listener.signal(signal.SIGINT)
        assert listener.wait() == 0
        bodies = [f"queued {i:02d}".encode() for i in range(50)]
        for body in bodies:  # one at a time, so arrival order is the list order
            assert await _post_all(webhook_url, [body], 1) == [202]
        relay.popen.kill()
        relay.wait()
        procs.relay(relay_home, "--port", str(port))
        await _listen(procs, hooktap_home, relay_url, handler.url, "--concurrency", "1")
        await handler.wait_for(50, timeout=30)
        await asyncio.sleep(0.3)
        assert [seen.body for seen in handler.seen] == bodies


async def test_queue_bound_answers_503_with_a_reason(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    _, relay_url = procs.relay(tmp_path / "relay-home", "--max-queue", "3")
    listener = await _listen(procs, hooktap_home, relay_url, "127.0.0.1:9")
    webhook_url = json.loads(listener.out_lines[0])["webhook_url"]
    listener.signal(signal.SIGINT)
    listener.wait()
    assert await _post_all(webhook_url, [b"1", b"2", b"3"], 1) == [202, 202, 202]
    async with aiohttp.ClientSession() as http, http.post(webhook_url, data=b"4") as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "60"
        assert "queue is full" in (await resp.json())["error"]


async def test_listener_frozen_past_the_heartbeat_reconnects_and_loses_nothing(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    _, relay_url = procs.relay(tmp_path / "relay-home", "--heartbeat", "0.3")
    async with running_handler() as handler:
        listener = await _listen(procs, hooktap_home, relay_url, handler.url)
        webhook_url = json.loads(listener.out_lines[0])["webhook_url"]
        assert await _post_all(webhook_url, [b"before"], 1) == [200]
        listener.signal(signal.SIGSTOP)
        try:
            # While frozen: the relay notices within 3 heartbeats and queues (202).
            statuses = await _post_all(webhook_url, [f"frozen {i}".encode() for i in range(5)], 1)
            assert statuses == [202] * 5
        finally:
            listener.signal(signal.SIGCONT)
        # It says so truthfully, then reconnects by itself.
        await asyncio.to_thread(_wait_state, listener, "disconnected")
        await asyncio.to_thread(_wait_state, listener, "connected")
        await until(lambda: len(handler.seen) == 6, 30)
        await asyncio.sleep(0.3)
        assert sorted(seen.body for seen in handler.seen) == sorted(
            [b"before"] + [f"frozen {i}".encode() for i in range(5)]
        )


async def test_listener_reconnects_by_itself_when_the_relay_comes_back(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    port = free_port()
    relay_home = tmp_path / "relay-home"
    relay, relay_url = procs.relay(relay_home, "--port", str(port), "--heartbeat", "0.3")
    async with running_handler() as handler:
        listener = await _listen(procs, hooktap_home, relay_url, handler.url)
        webhook_url = json.loads(listener.out_lines[0])["webhook_url"]
        relay.popen.kill()
        relay.wait()
        await asyncio.to_thread(_wait_state, listener, "disconnected")
        procs.relay(relay_home, "--port", str(port), "--heartbeat", "0.3")
        await asyncio.to_thread(_wait_state, listener, "connected")
        assert await _post_all(webhook_url, [b"after the outage"], 1) == [200]
        assert (await handler.wait_for(1))[0].body == b"after the outage"


async def test_a_listener_that_joined_takes_over_the_embedded_relay_when_its_owner_exits(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    port = free_port()
    async with running_handler() as handler:
        owner = procs.start(
            ["listen", "--forward", "9", "--port", str(port), "--json"], tmp_path / "owner-home"
        )
        await asyncio.to_thread(owner.json_line)
        joiner = procs.start(
            ["listen", "--forward", handler.url, "--port", str(port), "--json"], hooktap_home
        )
        webhook_url = str((await asyncio.to_thread(joiner.json_line))["webhook_url"])
        owner.signal(signal.SIGINT)
        assert owner.wait() == 0
        await asyncio.to_thread(_wait_state, joiner, "disconnected")
        await asyncio.to_thread(_wait_state, joiner, "connected")
        # Same port, same data dir: the joiner's channel and URL still work.
        assert await _post_all(webhook_url, [b"still here"], 1) == [200]
        assert (await handler.wait_for(1))[0].body == b"still here"
