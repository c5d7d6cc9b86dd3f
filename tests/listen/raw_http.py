"""Raw HTTP/1.1 servers for the forwarder's tests: real sockets on 127.0.0.1, port 0, that
read requests by hand and write whatever bytes a test wants, including wrong ones, so what
is tested is what goes over the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from hooktap.listen.forward import Exchange, Forwarder, Outcome, Request

# reply(writer, request, index): index counts requests on this connection from 0. It answers
# (or not) and returns whether to keep reading requests from this connection.
Reply = Callable[[asyncio.StreamWriter, bytes, int], Awaitable[bool]]


@dataclass
class Server:
    target: str
    requests: list[bytes] = field(default_factory=list)  # every request, in arrival order
    connections: int = 0  # TCP connections accepted
    received: int = 0  # bytes read, all connections


async def _read_request(reader: asyncio.StreamReader, server: Server) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        server.received += len(getattr(exc, "partial", b""))
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    server.received += len(head) + len(body)
    return head + body


@asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[Server]:
    """A server that hands each request to `reply`; it returns whether to keep the socket."""
    server: Server

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        index = 0
        try:
            while (request := await _read_request(reader, server)) is not None:
                server.requests.append(request)
                if not await reply(writer, request, index):
                    break
                index += 1
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    server = Server(f"127.0.0.1:{port}")
    try:
        yield server
    finally:
        listening.close()
        await listening.wait_closed()


def answer(data: bytes, keep: bool = True) -> Reply:
    """A reply that writes the same bytes to every request."""

    async def reply(writer: asyncio.StreamWriter, _request: bytes, _index: int) -> bool:
        writer.write(data)
        await writer.drain()
        return keep

    return reply


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# What the listener does while an exchange holds its connection: commit the record, write.
Between = Callable[[Exchange], Awaitable[None]]


async def in_steps(fwd: Forwarder, request: Request, between: Between) -> Outcome:
    """Send as the listener's pipeline does: open an exchange, run `between` while it holds
    its connection (only when it has one), then answer."""
    async with fwd.open(request) as exchange:
        if exchange.ready:
            await between(exchange)
        return await exchange.answer()


def counter() -> tuple[list[int], Between]:
    calls: list[int] = []

    async def between(_exchange: Exchange) -> None:
        await asyncio.sleep(0)  # really awaited, not just called
        calls.append(1)

    return calls, between
