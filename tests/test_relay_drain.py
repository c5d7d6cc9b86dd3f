"""SIGTERM to a relay in the middle of a burst: every sender gets the handler's answer, a 202
(kept) or a connection error; the relay exits 0; the next relay on the same port and data
dir gets the listener back by itself and hands over what was kept, each exactly once."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import signal
from pathlib import Path

import aiohttp

from support.procs import Procs, free_port
from support.servers import running_handler

BURST = 40


async def _send(http: aiohttp.ClientSession, url: str, n: int) -> tuple[int, str]:
    """(status, what the sender read), or (0, why) when the connection failed."""
    try:
        async with http.post(url, data=json.dumps({"n": n}).encode()) as resp:
            return resp.status, (await resp.read()).decode()
    except aiohttp.ClientConnectionError as exc:
        return 0, repr(exc)


async def _queue_depth(relay: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{relay}/metrics") as resp:
        text = await resp.text()
    return float(re.search(r"^hooktap_relay_queue_depth (\S+)$", text, re.M).group(1))


async def test_sigterm_mid_burst_answers_or_keeps_every_delivery_once(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    relay = f"http://127.0.0.1:{port}"
    args = ["relay", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    first = procs.start([*args, "--drain-timeout", "1", "--log-format", "json"], tmp_path / "r")
    await asyncio.to_thread(first.wait_stderr, "listening on")

    async with running_handler() as handler:
        handler.delay = 0.5
        handler.reply = b"handled"
        listener = procs.start(
            ["listen", "--relay", relay, "--forward", handler.url, "--json", "--concurrency", "8"],
            tmp_path / "l",
        )
        ready = await asyncio.to_thread(listener.wait_json, "ready")
        url = str(ready["webhook_url"])

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            burst = [asyncio.ensure_future(_send(http, url, n)) for n in range(BURST)]
            await handler.wait_for(8)  # the handler is busy: now stop the relay
            first.signal(signal.SIGTERM)
            answers = await asyncio.gather(*burst)
            assert await asyncio.to_thread(first.wait) == 0

        # Every sender got the handler's answer, a 202 with the delivery kept, or no connection.
        answered = {
            n for n, (status, body) in enumerate(answers) if (status, body) == (200, "handled")
        }
        kept = {n for n, (status, body) in enumerate(answers) if status == 202}
        failed = {n for n, (status, _) in enumerate(answers) if status == 0}
        assert answered | kept | failed == set(range(BURST)), answers
        assert answered and kept, answers  # the drain let some finish and kept the rest
        print(f"answered {len(answered)}, kept {len(kept)}, no connection {len(failed)}")
        for n in kept:
            assert json.loads(answers[n][1])["queued"] is True

        # The same port and data dir: the listener comes back by itself, the queue follows.
        second = procs.start(args, tmp_path / "r")
        await asyncio.to_thread(second.wait_stderr, "listener connected")

        def arrived() -> collections.Counter[int]:
            return collections.Counter(json.loads(seen.body)["n"] for seen in handler.seen)

        async def settled() -> None:
            while not (kept <= set(arrived()) and await _queue_depth(relay) == 0):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(settled(), 20)
        counts = arrived()
        assert max(counts.values()) == 1, counts  # nothing reached the handler twice
        assert answered | kept <= set(counts)  # every answered or kept delivery arrived
        assert listener.popen.poll() is None  # it reconnected; it never gave up

    # The first relay said what it did with the senders it could not wait for.
    _, err = first.rest()
    drained = [json.loads(line) for line in err if '"drained"' in line]
    assert drained and 0 < drained[0]["kept"] <= len(kept)
