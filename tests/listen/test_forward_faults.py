"""Handler faults seen end to end: a real relay, a real Listener and its history, and a raw
local handler that misbehaves on purpose. What a sender gets back and what history records
are checked, not only what the forwarder returns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from raw_http import OK, Reply, answer, raw_server

from hooktap.listen.forward import MAX_RESPONSE_BODY, Forwarder
from hooktap.listen.target import parse_target
from support.servers import TRANSPORTS, running_handler, running_listener, running_relay


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_handler_closing_a_reused_socket_gets_each_delivery_once(
    tmp_path: Path, transport: str
) -> None:
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
        running_listener(relay, handler.target, tmp_path / "history.db", transport) as listener,
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


# --- a response body with no end ------------------------------------------------------------

PIECE = 1000  # each piece of an endless body is one byte value repeated, so order shows


def piece(n: int) -> bytes:
    return bytes([n % 256]) * PIECE


def endless_body(cap: int) -> bytes:
    """The first `cap` bytes an endless handler sends."""
    return b"".join(piece(n) for n in range(cap // PIECE + 1))[:cap]


def streaming(head: bytes, chunked: bool) -> Reply:
    """A handler that answers with `head` and then sends body bytes until the socket dies."""

    async def reply(writer: asyncio.StreamWriter, _request: bytes, _index: int) -> bool:
        writer.write(head)
        n = 0
        try:
            while True:
                data = piece(n)
                writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                n += 1
                await writer.drain()
        except ConnectionError:
            return False  # the forwarder hung up: what it should do

    return reply


ENDLESS = {
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n", True),
    "huge-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\nX-A: 1\r\n\r\n", False),
    "until-eof": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-A: 1\r\n\r\n", False),
}


@pytest.mark.parametrize("framing", list(ENDLESS))
async def test_an_endless_response_body_is_cut_at_the_cap(framing: str) -> None:
    head, chunked = ENDLESS[framing]
    cap = 100_000
    async with raw_server(streaming(head, chunked)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=10, max_response_body=cap)
        started = time.monotonic()
        out = await fwd.send("POST", "/", "", [], b"{}")
        took = time.monotonic() - started
        again = await fwd.send("POST", "/", "", [], b"{}")
        await fwd.close()
    assert took < 2, took
    assert out.status == 200 and out.error is None and not out.timed_out and out.truncated
    assert out.headers[-1] == ("X-A", "1")
    assert len(out.body) == cap and out.body == endless_body(cap)
    assert again.truncated and again.body == out.body
    assert server.connections == 2  # a cut-off socket is never reused


@pytest.mark.parametrize(("size", "truncated"), [(1000, False), (1001, True)])
async def test_a_complete_body_over_the_cap_is_cut_too(size: int, truncated: bool) -> None:
    """The cap is on what is kept, whether or not the handler would have stopped."""
    body = bytes(range(256)) * 4
    body = (body * 2)[:size]
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (size, body)
    async with raw_server(answer(response)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5, max_response_body=1000)
        outs = [await fwd.send("POST", "/", "", [], b"{}") for _ in range(2)]
        await fwd.close()
    for out in outs:
        assert out.status == 200 and out.error is None and out.truncated is truncated
        assert out.body == body[:1000]
    assert server.connections == (2 if truncated else 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_sender_of_an_endless_answer_gets_the_first_mebibyte(
    tmp_path: Path, transport: str
) -> None:
    head, chunked = ENDLESS["chunked"]
    async with (
        raw_server(streaming(head, chunked)) as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.target, tmp_path / "history.db", transport) as listener,
        aiohttp.ClientSession() as http,
    ):
        started = time.monotonic()
        async with http.post(listener.webhook_url, data=b"{}") as resp:
            status, body = resp.status, await resp.read()
        took = time.monotonic() - started
        (summary,) = listener.store.query(None, limit=10)
        (attempt,) = listener.store.attempts(summary.id)
    assert took < 5, took
    assert status == 200 and body == endless_body(MAX_RESPONSE_BODY)
    assert attempt.status == 200 and attempt.response_body == body


# --- a sender claiming to be someone else -------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_spoofed_forwarding_headers_never_reach_the_handler(
    tmp_path: Path, transport: str
) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.url, tmp_path / "history.db", transport) as listener,
        aiohttp.ClientSession() as http,
    ):
        spoofed = {
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "Forwarded": "for=6.6.6.6;host=evil.example;proto=https",
        }
        async with http.post(listener.webhook_url, data=b"{}", headers=spoofed) as resp:
            assert resp.status == 200
        (seen,) = await handler.wait_for(1)
    forwarding = [
        (name.lower(), value)
        for name, value in seen.raw_headers
        if name.lower() in ("x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded")
    ]
    relay_host = relay.split("://", 1)[1]  # aiohttp's Host: the relay's own host:port
    assert sorted(forwarding) == [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", relay_host),
        ("x-forwarded-proto", "http"),
    ]
    for value in spoofed.values():
        assert all(value not in v for _, v in seen.raw_headers)
