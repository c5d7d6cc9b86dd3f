"""The two transports behind one interface, each driven as the Listener drives it: open with a
Hello, deliveries to `take`, Results back, pause, the relay's queue count, close, takeover."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from hooktap.listen import channel as channels
from hooktap.listen.channel import ChannelCredentials, RelayAccess, RelayRefused
from hooktap.listen.transport import Opened
from hooktap.listen.transport.inprocess import InProcessTransport
from hooktap.listen.transport.websocket import WebSocketTransport
from hooktap.protocol import (
    Delivery,
    Error,
    Flow,
    Frame,
    Hello,
    Ping,
    Pong,
    RelaySession,
    Result,
    encode,
)
from support.servers import in_process_relay, running_relay, serve

HELLO = Hello(client="hooktap/test", timeout=7.0, instance="run-1", history="hist-1")


class Peer:
    """A relay's end of one websocket, speaking hooktap's protocol through its real session:
    what the listener sent, in order, and a way to send it frames."""

    def __init__(self) -> None:
        self.session = RelaySession()
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.ws: web.WebSocketResponse | None = None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                break
            frame = self.session.receive(msg.data)
            if isinstance(frame, Hello):
                welcome = self.session.welcome("chan1", "http://hooks.example/c/chan1", 60, 4)
                await ws.send_bytes(welcome)
            await self.frames.put(frame)
        return ws

    async def send(self, frame: Frame) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(encode(frame))

    async def next(self) -> Frame:
        return await asyncio.wait_for(self.frames.get(), 5)


@contextlib.asynccontextmanager
async def peer_relay() -> AsyncIterator[tuple[Peer, ChannelCredentials]]:
    peer = Peer()
    app = web.Application()
    app.router.add_get("/c/{channel}/ws", peer.handle)
    async with serve(app) as url:
        yield peer, ChannelCredentials(url, "chan1", "htk_token", f"{url}/c/chan1")


def delivery(n: int) -> Delivery:
    return Delivery(f"d{n}", 1.0, "POST", "/x", "", [("A", "b")], b"body %d" % n)


async def test_the_websocket_transport_speaks_the_protocol_both_ways() -> None:
    taken: asyncio.Queue[Delivery] = asyncio.Queue()
    async with peer_relay() as (peer, creds):
        transport = WebSocketTransport(creds, RelayAccess())
        opened = await transport.open(HELLO, taken.put)
        assert opened == Opened("http://hooks.example/c/chan1", 4, keeps_refused=True)
        hello = await peer.next()
        assert isinstance(hello, Hello)
        assert (hello.client, hello.timeout, hello.instance, hello.history) == (
            "hooktap/test",
            7.0,
            "run-1",
            "hist-1",
        )
        serving = asyncio.create_task(transport.serve())
        await peer.send(Ping(123.5))
        assert await peer.next() == Pong(123.5)
        await peer.send(Pong(0.0, queued=7))
        await peer.send(delivery(1))
        got = await asyncio.wait_for(taken.get(), 5)
        assert (got.id, got.body) == ("d1", b"body 1")
        assert transport.queued() == 7  # the Pong came before the delivery
        await transport.send_result(Result("d1", 201, [("X", "y")], b"made"))
        assert await peer.next() == Result("d1", 201, [("X", "y")], b"made")
        await transport.pause(True)
        assert await peer.next() == Flow(True)
        await peer.send(Error("replaced", "another listener took this channel over"))
        with pytest.raises(RelayRefused, match="took it over"):
            await asyncio.wait_for(serving, 5)
        await transport.close()
        await transport.close()  # twice is fine


async def test_the_in_process_transport_links_to_the_relay_by_function_call(
    tmp_path: Path,
) -> None:
    taken: asyncio.Queue[Delivery] = asyncio.Queue()
    async with (
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        creds = await channels.create(relay)
        transport = InProcessTransport(in_process_relay(relay), creds)
        opened = await transport.open(HELLO, taken.put)
        assert opened == Opened(creds.webhook_url, 0, keeps_refused=True)
        serving = asyncio.create_task(transport.serve())

        async def answer() -> None:
            got = await asyncio.wait_for(taken.get(), 5)
            await transport.send_result(Result(got.id, 201, [("X", "y")], got.body[::-1]))

        answering = asyncio.create_task(answer())
        async with http.post(creds.webhook_url, data=b"live") as resp:
            assert (resp.status, await resp.read(), resp.headers["X"]) == (201, b"evil", "y")
        await answering
        await transport.pause(True)
        async with http.post(creds.webhook_url, data=b"held") as resp:
            assert resp.status == 202
        assert transport.queued() == 1 and taken.empty()
        await transport.pause(False)
        held = await asyncio.wait_for(taken.get(), 5)
        assert held.body == b"held"
        await transport.send_result(Result(held.id, 200))
        assert transport.queued() == 0

        # Another listener in this process takes the channel: the first is told so.
        second = InProcessTransport(in_process_relay(relay), creds)
        await second.open(HELLO, taken.put)
        with pytest.raises(RelayRefused, match="took it over"):
            await asyncio.wait_for(serving, 5)
        await transport.close()
        stopping = asyncio.create_task(second.serve())
        await second.close()  # from another task: serve() returns, no error
        await asyncio.wait_for(stopping, 5)
        assert second.queued() is None
