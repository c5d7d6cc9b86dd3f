"""The forwarder against raw HTTP servers that misbehave the ways real handlers do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from hooktap.listen.forward import Forwarder, prepare_headers
from hooktap.listen.target import parse_target

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head + body


@asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server that hands each request to `reply`; it returns whether to keep the socket."""
    requests: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while (request := await _read_request(reader)) is not None:
            requests.append(request)
            if not await reply(reader, writer, request):
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}", requests, connections
    finally:
        server.close()
        await server.wait_closed()


async def test_keep_alive_is_reused_and_chunked_responses_are_read_whole() -> None:
    async def reply(_r, writer, _req) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        await writer.drain()
        return True

    async with raw_server(reply) as (target, requests, connections):
        fwd = Forwarder(parse_target(target), timeout=5)
        for _ in range(3):
            out = await fwd.send("POST", "/x", "", [("Content-Type", "text/plain")], b"hi")
            assert out.status == 200 and out.body == b"hello world" and out.error is None
            assert out.headers[1:3] == [("X-A", "1"), ("x-a", "2")]
        await fwd.close()
    assert len(requests) == 3 and len(connections) == 1


async def test_a_closed_keep_alive_socket_is_replaced_without_losing_the_request() -> None:
    async def reply(_r, writer, _req) -> bool:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        return False  # closes after each answer, without saying Connection: close

    async with raw_server(reply) as (target, requests, connections):
        fwd = Forwarder(parse_target(target), timeout=5)
        for _ in range(3):
            out = await fwd.send("POST", "", "", [], b"{}")
            assert out.status == 204, out.error
            await asyncio.sleep(0.05)  # let the server's FIN arrive first
        await fwd.close()
    assert len(requests) == 3  # each request reached the handler exactly once
    assert len(connections) == 3


async def test_head_response_has_no_body_and_connection_close_is_honoured() -> None:
    async def reply(_r, writer, request: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
        await writer.drain()
        return False

    async with raw_server(reply) as (target, _, connections):
        fwd = Forwarder(parse_target(target), timeout=5)
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.status == 200 and out.body == b""
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.status == 200
        await fwd.close()
    assert len(connections) == 2


@pytest.mark.parametrize(
    ("reply_bytes", "words"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "invalid HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "without a complete response"),
        (b"", "without a complete response"),
    ],
)
async def test_broken_handlers_are_reported_not_raised(reply_bytes: bytes, words: str) -> None:
    async def reply(_r, writer, _req) -> bool:
        writer.write(reply_bytes)
        await writer.drain()
        return False

    async with raw_server(reply) as (target, _, _):
        fwd = Forwarder(parse_target(target), timeout=5)
        out = await fwd.send("POST", "", "", [], b"{}")
        await fwd.close()
    assert out.status is None and out.error is not None and words in out.error


def test_prepare_headers_keeps_order_case_and_repeats() -> None:
    headers = [
        ("X-Forwarded-For", "10.0.0.1"),
        ("content-type", "application/json"),
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Host", "public.example"),
        ("host", "second.example"),
        ("Content-Length", "999"),
        ("TE", "trailers"),
    ]
    out = prepare_headers(
        "POST", headers, b"{}", "localhost:8000", remote="1.2.3.4", scheme="https", host="h"
    )
    assert out == [
        ("X-Forwarded-For", "10.0.0.1, 1.2.3.4"),
        ("content-type", "application/json"),
        ("Host", "localhost:8000"),
        ("Content-Length", "2"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "h"),
    ]
    # An empty POST still says its length; a GET without a body adds nothing.
    assert ("Content-Length", "0") in prepare_headers("POST", [], b"", "x")
    assert prepare_headers("GET", [], b"", "x") == [("Host", "x")]
