"""Handler faults seen end to end: a real relay, a real Listener and its history, and a raw
local handler that misbehaves on purpose. What a sender gets back and what history records
are checked, not only what the forwarder returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from raw_http import OK, raw_server

from support.servers import running_listener, running_relay


async def test_a_handler_closing_a_reused_socket_gets_each_delivery_once(tmp_path: Path) -> None:
    """gunicorn's max_requests and a crashed worker: the handler answers the first request on
    each connection, keeps it alive, and closes it after reading the second. That second
    delivery must not be written again behind the listener's back: its sender gets a 502 and
    history records the attempt that failed."""

    async def reply(writer: asyncio.StreamWriter, _request: bytes, index: int) -> bool:
        if index == 0:
            writer.write(OK)
            await writer.drain()
            return True
        return False  # read the second request, then closed without a byte of answer

    sent = [b'{"n": %d}' % n for n in range(6)]
    statuses: list[int] = []
    async with (
        raw_server(reply) as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.target, tmp_path / "history.db") as listener,
        aiohttp.ClientSession() as http,
    ):
        for body in sent:  # one at a time, so the listener reuses its pooled socket
            async with http.post(listener.webhook_url, data=body) as resp:
                statuses.append(resp.status)
                text = await resp.text()
                if resp.status == 502:
                    assert "connection closed before an answer" in text, text
        stored = {
            delivery.body: listener.store.attempts(delivery.id)
            for summary in listener.store.query(None, limit=100)
            if (delivery := listener.store.get(summary.id)) is not None
        }
    received = [request.split(b"\r\n\r\n", 1)[1] for request in handler.requests]
    assert sorted(received) == sorted(sent)  # each body reached the handler exactly once
    # A fresh socket answers; reusing it finds the handler gone after it read the request.
    assert statuses == [200, 502] * 3
    assert set(stored) == set(sent)
    for body, status in zip(sent, statuses, strict=True):
        (attempt,) = stored[body]
        assert attempt.kind == "forward"
        if status == 200:
            assert attempt.status == 200 and attempt.error is None
        else:
            assert attempt.status is None and attempt.error is not None
            assert attempt.error.startswith("connection closed before an answer")
            assert handler.target in attempt.error
