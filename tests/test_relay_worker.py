"""The relay's queue database is used off the event loop: every SQLite statement a serving
relay runs (claims, logins, writes of queued bodies, hand-overs, confirms, readiness) runs on
its one worker thread, while the counts its caps read stay exact under concurrent senders."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp
import pytest

from support.servers import (
    TRANSPORTS,
    in_process_relay,
    running_handler,
    running_listener,
    running_relay,
    until,
)

MiB = 1024 * 1024


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_sqlite_statement_runs_on_the_event_loop(tmp_path: Path, transport: str) -> None:
    loop_thread = threading.get_ident()
    ran: list[tuple[int, str]] = []
    async with running_handler() as handler, running_relay(tmp_path / "relay") as relay:
        relay_db = in_process_relay(relay).service.broker.db.db  # type: ignore[attr-defined]
        # Called by SQLite in the thread that runs each statement.
        relay_db.set_trace_callback(lambda sql: ran.append((threading.get_ident(), sql)))
        async with running_listener(relay, handler.url, tmp_path / "h.db", transport) as lst:
            url = lst.webhook_url  # the channel this listener claimed, and claims again below
        channel = url.rsplit("/", 1)[1]
        async with aiohttp.ClientSession() as http:
            for body in (b"small", b"x" * (2 * MiB)):  # a large body goes through blob I/O
                async with http.post(url, data=body) as resp:
                    assert resp.status == 202
            async with http.post(f"{relay}/c/nosuchchannel", data=b"?") as resp:
                assert resp.status == 404  # an unknown channel is looked up on disk
            async with http.get(f"{relay}/readyz") as resp:
                assert resp.status == 200
            depth = in_process_relay(relay).depth
            async with running_listener(relay, handler.url, tmp_path / "h.db", transport) as lst:
                await handler.wait_for(2)
                await until(lambda: depth(channel) == 0)  # confirmed: deleted from the queue
                async with http.post(url, data=b"live") as resp:
                    assert resp.status == 200
    statements = " ".join(sql.split()[0].upper() for _, sql in ran)
    for kind in ("INSERT", "DELETE", "UPDATE", "SELECT", "BEGIN"):
        assert kind in statements, statements
    on_loop = [sql for thread, sql in ran if thread == loop_thread]
    assert on_loop == []


async def test_concurrent_senders_cannot_pass_a_byte_cap_together(tmp_path: Path) -> None:
    """Each body is counted as it is handed to the writer, before the write ends: four 1 MiB
    bodies sent at once against a 3 MiB channel cap keep exactly three."""
    async with running_relay(tmp_path / "relay", max_channel_bytes=3 * MiB) as relay:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{relay}/api/channels", json={}) as resp:
                channel = (await resp.json())["channel"]

            async def post(n: int) -> int:
                body = bytes([n]) * MiB
                async with http.post(f"{relay}/c/{channel}", data=body) as resp:
                    return resp.status

            statuses = await asyncio.gather(*(post(n) for n in range(4)))
        assert sorted(statuses) == [202, 202, 202, 503]
        service = in_process_relay(relay).service
        assert service.depth(channel) == 3 and service.broker.queued_bytes(channel) == 3 * MiB
