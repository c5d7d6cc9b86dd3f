"""Memory and time one sender may take from a relay on the internet (issue 13, points 1 and
2): ten concurrent 30 MiB uploads keep a `hooktap relay` process under about 300 MB and every
accepted one is kept byte for byte; a body that trickles or stalls is refused 408
after --body-timeout; a body that finds no memory free in time is refused 503 with
Retry-After. Real relay processes, the real listener and a real handler on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psutil
import pytest

from support.procs import Procs
from support.servers import running_handler, running_listener, running_relay

MiB = 1024 * 1024
RSS_LIMIT = 300 * 1000 * 1000  # "about 300 MB"


class PeakRss:
    """The highest resident set size of a process, sampled every 10 ms on a thread (the
    event loop is busy sending and cannot be trusted to sample on time)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def test_ten_concurrent_30_mib_uploads_stay_under_300_mb_and_are_kept_intact(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    relay_proc, relay = procs.relay(
        tmp_path / "relay-home", "--data-dir", str(data), "--max-channel-mb", "512"
    )
    noise = os.urandom(30 * MiB)
    bodies = [os.urandom(64) + noise[64:] for _ in range(10)]  # ten different bodies
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay}/api/channels", json={}) as resp:
            url = (await resp.json())["webhook_url"]

        async def upload(body: bytes) -> tuple[int, dict[str, str]]:
            async with http.post(url, data=body) as resp:
                return resp.status, dict(resp.headers)

        with PeakRss(relay_proc.popen.pid) as rss:
            answers = await asyncio.gather(*(upload(body) for body in bodies))
    assert rss.peak < RSS_LIMIT, f"relay RSS peaked at {rss.peak / 1e6:.0f} MB"
    # The relay holds at most --max-inflight-mb of bodies at once: the rest waited their
    # turn (202) or, had no room come in time, were told to retry (503).
    assert {status for status, _ in answers} <= {202, 503}, answers
    for status, headers in answers:
        assert status == 202 or int(headers["Retry-After"]) > 0
    accepted = [b for b, (status, _) in zip(bodies, answers, strict=True) if status == 202]
    # About three at a time fit, so the last wait two or three turns: well inside the default
    # --body-timeout of 10 s, even on a loaded machine.
    assert len(accepted) >= 8, Counter(status for status, _ in answers)
    # Every accepted body is in the relay's queue on disk, byte for byte.
    relay_proc.stop()
    with contextlib.closing(sqlite3.connect(data / "relay.db")) as db:
        kept = Counter(_digest(body) for (body,) in db.execute("SELECT body FROM queue"))
    assert kept == Counter(_digest(body) for body in accepted)


async def _trickle(
    relay: str, path: str, head: str, first: bytes, more: list[bytes], gap: float
) -> tuple[float, int, dict[str, str]]:
    """Send a request head and `first`, then each of `more` `gap` seconds apart, until the
    answer comes: (seconds from the head to the answer, its status, its JSON body)."""
    host, port = relay.split("://", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n\r\n".encode() + first)
    await writer.drain()
    started = time.monotonic()

    async def send() -> None:
        for piece in more:
            await asyncio.sleep(gap)
            writer.write(piece)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        took = time.monotonic() - started
        length = next(
            int(line.split(b":")[1])
            for line in answer.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
    finally:
        sender.cancel()
        writer.close()
    return took, int(answer.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("head", "first", "more"),
    [
        # A byte a second: never a stall, but far under 1 KiB/s once the second has passed.
        ("Content-Length: 100", b"{", [b"x"] * 99),
        ("Content-Length: 100", b"{", []),  # a byte, then nothing
        ("Transfer-Encoding: chunked", b'5\r\n{"a":\r\n', []),
    ],
    ids=["1-byte-a-second", "stalled", "stalled-chunked"],
)
async def test_a_slow_or_stalled_body_gets_408_after_the_body_timeout(
    procs: Procs, tmp_path: Path, head: str, first: bytes, more: list[bytes]
) -> None:
    _, relay = procs.relay(tmp_path / "relay-home", "--body-timeout", "1")
    async with running_handler() as handler, aiohttp.ClientSession() as http:
        async with running_listener(relay, handler.url, tmp_path / "history.db") as listener:
            path = "/c/" + listener.webhook_url.rsplit("/c/", 1)[1]
            took, status, answer = await _trickle(relay, path, head, first, more, gap=1.0)
            assert status == 408, answer
            assert 0.9 <= took < 3, took
            assert "--body-timeout" in answer["error"]
            async with http.get(f"{relay}/metrics") as resp:
                assert 'requests_rejected_total{reason="slow-body"} 1.0' in await resp.text()
            # The relay goes on serving, and the refused body reached nobody.
            async with http.post(listener.webhook_url, data=b"next") as resp:
                assert resp.status == 200
        assert [s.body for s in handler.seen] == [b"next"]


async def test_a_body_with_no_memory_free_in_time_gets_503_with_retry_after(
    tmp_path: Path,
) -> None:
    async with (
        running_relay(
            tmp_path / "relay", max_body=MiB, max_inflight_bytes=MiB, body_timeout=1.0
        ) as relay,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{relay}/api/channels", json={}) as resp:
            url = (await resp.json())["webhook_url"]
        path = "/c/" + url.rsplit("/c/", 1)[1]
        # One sender holds the whole budget, sending 8 KiB every 0.2 s (fast enough not to
        # time out) for about 2 s; a second one meanwhile finds no room within a second.
        piece = b"a" * (8 * 1024)
        holder = asyncio.create_task(
            _trickle(relay, path, f"Content-Length: {MiB}", piece, [piece] * 10, 0.2)
        )
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with http.post(url, data=b"b" * 1000) as resp:
            waited = time.monotonic() - started
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) > 0
            reason = (await resp.json())["error"]
        assert "--max-inflight-mb" in reason
        assert 0.9 <= waited < 3, waited
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
        # Once the holder is gone its room comes back: the next sender is taken.
        async with http.post(url, data=b"c" * 1000) as resp:
            assert resp.status == 202
