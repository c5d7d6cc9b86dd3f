"""Real servers for tests, on 127.0.0.1 port 0: a recording handler, the relay, a listener.

Nothing here is a mock: the relay is hooktap's own make_app(), the listener is hooktap's own
Listener, and the handler is a real aiohttp server that records exactly what reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from hooktap.listen.events import ListenerEvent, Ready
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.listen.transport.inprocess import InProcessTransport
from hooktap.listen.transport.websocket import WebSocketTransport
from hooktap.relay import server as relay_server
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.config import CONFIG
from hooktap.relay.embed import InProcessRelay
from hooktap.store import Store


@dataclass
class Seen:
    method: str
    path_qs: str
    raw_headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Handler:
    """A local webhook handler that records each request and answers as told."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    status: int = 200
    reply: bytes = b"ok"
    reply_headers: dict[str, str] = field(default_factory=lambda: {"X-Handler": "recorded"})
    delay: float = 0.0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers]
        async with self._arrived:
            self.seen.append(Seen(request.method, request.path_qs, headers, body))
            self._arrived.notify_all()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, body=self.reply, headers=self.reply_headers)

    async def wait_for(self, count: int, timeout: float = 10) -> list[Seen]:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.seen) >= count), timeout)
        return self.seen


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on loopback: a relay app as hooktap serves it (its limits, its refusals),
    any other app (a handler) with aiohttp's defaults."""
    if CONFIG in app:
        runner = await relay_server.serve(app, "127.0.0.1", 0, shutdown_timeout=0.5)
    else:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_handler() -> AsyncIterator[Handler]:
    handler = Handler()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    async with serve(app) as url:
        handler.url = url
        yield handler


# The relay apps running_relay serves, by URL: an in-process listener links to the app itself.
_relay_apps: dict[str, web.Application] = {}


@contextlib.asynccontextmanager
async def running_relay(data_dir: Path, **options: object) -> AsyncIterator[str]:
    app = make_app(RelayConfig(data_dir=data_dir, **options))  # type: ignore[arg-type]
    async with serve(app) as url:
        _relay_apps[url] = app
        try:
            yield url
        finally:
            del _relay_apps[url]


def in_process_relay(relay_url: str) -> InProcessRelay:
    """The relay running_relay serves at `relay_url`, for a listener linked to it in process."""
    return InProcessRelay(_relay_apps[relay_url.rstrip("/")])


# How a listener reaches its relay: over a websocket, or linked by function call to a relay
# this process serves (what `hooktap listen` does with the relay it embeds).
TRANSPORTS = ("websocket", "in-process")


@dataclass
class RunningListener:
    listener: Listener
    store: Store
    webhook_url: str
    events: list[ListenerEvent]
    transport: str = "websocket"


@contextlib.asynccontextmanager
async def running_listener(
    relay_url: str, target: str, db_path: Path, transport: str = "websocket", **options: object
) -> AsyncIterator[RunningListener]:
    """A real Listener connected to `relay_url`, yielded once a webhook would flow.

    With transport="in-process" the relay must be one running_relay serves in this process:
    the listener links to its app by function call instead of a websocket."""
    store = Store(db_path)
    config = ListenerConfig(target=parse_target(target), relay_url=relay_url, **options)  # type: ignore[arg-type]
    assert transport in TRANSPORTS, transport
    in_process = in_process_relay(relay_url) if transport == "in-process" else None
    listener = Listener(config, store, in_process=in_process)
    events: list[ListenerEvent] = []
    ready: asyncio.Future[Ready] = asyncio.get_running_loop().create_future()

    def collect(event: ListenerEvent) -> None:
        events.append(event)
        if isinstance(event, Ready) and not ready.done():
            ready.set_result(event)

    listener.subscribe(collect)
    task = asyncio.create_task(listener.run())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=10, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # surfaces why it could not connect
        if ready not in done:
            raise TimeoutError("listener did not become ready")
        if relay_url is not None:  # None: the relay the listener embeds, however it links
            kind = WebSocketTransport if in_process is None else InProcessTransport
            assert isinstance(listener.connection, kind), f"not connected over {transport}"
        yield RunningListener(listener, store, ready.result().webhook_url, events, transport)
    finally:
        await listener.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        store.close()


async def until(predicate: Callable[[], object], timeout: float = 10) -> None:
    """Wait for `predicate()` to hold, polling: for state a test cannot await directly (rows in
    history, a relay's queue). Raises TimeoutError after `timeout` s."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)
