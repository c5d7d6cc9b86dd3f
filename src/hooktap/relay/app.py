"""The relay's aiohttp application: public ingress, the listener websocket, channels, health.

`make_app()` is the one factory shared by `hooktap relay`, the embedded relay inside
`hooktap listen`, and the tests.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from hooktap import __version__
from hooktap.outbox import Outbox
from hooktap.protocol import (
    Batch,
    Error,
    Flow,
    Hello,
    Liveness,
    Ping,
    Pong,
    ProtocolError,
    RelaySession,
    Result,
    encode,
)
from hooktap.protocol import Delivery as WireDelivery
from hooktap.relay.channels_api import create_channel
from hooktap.relay.config import CONFIG, RelayConfig, problem, public_base
from hooktap.relay.db import RelayDB, new_delivery_id
from hooktap.relay.hub import Hub, Link
from hooktap.relay.keys import DB, HUB, METRICS
from hooktap.relay.metrics import RelayMetrics

log = logging.getLogger("hooktap.relay")

SERVICE = "hooktap-relay"
MAX_RESULT_BODY = 32 * 1024 * 1024  # the listener truncates larger handler responses
_RESPONSE_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
    }
)


def make_app(config: RelayConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body)
    app[CONFIG] = config
    app[DB] = RelayDB(config.data_dir / "relay.db")
    app[HUB] = Hub()
    app[METRICS] = RelayMetrics(app[DB], app[HUB])
    app.router.add_post("/api/channels", create_channel)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/c/{channel}/ws", listener_socket)
    app.router.add_route("*", "/c/{channel}", ingress)
    app.router.add_route("*", "/c/{channel}/{tail:.*}", ingress)
    app.on_shutdown.append(_close_links)
    app.on_cleanup.append(_close_db)
    return app


async def _close_links(app: web.Application) -> None:
    for link in list(app[HUB].links.values()):
        link.close()
        if link.ws is not None:
            await link.ws.close(code=1001, message=b"relay shutting down")


async def _close_db(app: web.Application) -> None:
    app[DB].close()


# --- channels and health ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"service": SERVICE, "version": __version__, "status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


# --- public ingress ----------------------------------------------------------------------------


def _tail_and_query(request: web.Request, channel: str) -> tuple[str, str]:
    """The raw (still percent-encoded) path after /c/{channel}, and the raw query."""
    raw_path, _, query = request.raw_path.partition("?")
    prefix_end = raw_path.find("/", len("/c/"))
    tail = raw_path[prefix_end:] if prefix_end != -1 else ""
    return tail, query


async def ingress(request: web.Request) -> web.StreamResponse:
    """What Pivotal posts to: push to the live listener and pass its answer back, or keep the
    delivery on disk and answer 202."""
    channel = request.match_info["channel"]
    app = request.app
    db, hub, config, stats = app[DB], app[HUB], app[CONFIG], app[METRICS]
    if not db.channel_exists(channel):
        stats.rejected.labels("unknown-channel").inc()
        return problem(404, f"no channel {channel!r} on this relay")
    if db.depth(channel) >= config.max_queue:
        stats.rejected.labels("queue-full").inc()
        resp = problem(
            503,
            f"channel queue is full ({config.max_queue} deliveries waiting for a listener); "
            "retry later",
        )
        resp.headers["Retry-After"] = "60"
        return resp
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        stats.rejected.labels("too-large").inc()
        return problem(413, f"body larger than this relay's limit of {config.max_body} bytes")
    now = time.time()
    tail, query = _tail_and_query(request, channel)
    delivery = WireDelivery(
        id=new_delivery_id(now),
        received_at=now,
        method=request.method,
        path=tail,
        query=query,
        headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers],
        body=body,
        remote=request.remote or "",
        scheme=request.scheme,
        host=request.host,
    )
    stats.received.inc()
    link = hub.live(channel)
    if link is None:
        return _keep(app, channel, delivery, "no listener is connected")
    # A live listener gets it straight from memory: the sender has not been answered yet, so
    # if the relay dies now the sender retries. Only what we answer 202 for must be on disk,
    # and it is written there before that answer.
    waiter = link.expect(delivery.id)
    if not await link.push(delivery):
        return _keep(app, channel, delivery, "the listener disconnected")
    try:
        # No shield needed: Link.resolve skips a waiter cancelled by this timeout.
        async with asyncio.timeout(link.timeout + 5):
            result = await waiter
    except TimeoutError:
        link.waiting.pop(delivery.id, None)
        stats.answered.labels("504").inc()
        kept = _keep(app, channel, delivery, "")
        return problem(
            504 if kept.status == 202 else kept.status,
            f"the listener did not report a result within {link.timeout + 5:g} s; the "
            "delivery is kept and will be handed over again",
            id=delivery.id,
        )
    if result is None:
        return _keep(app, channel, delivery, "the listener disconnected before answering")
    if result.refused:
        return _keep(app, channel, delivery, f"the listener could not take it: {result.error}")
    stats.answered.labels(str(result.status)).inc()
    headers = CIMultiDict(
        (name, value) for name, value in result.headers if name.lower() not in _RESPONSE_DROP
    )
    status = result.status if result.status is not None else 502
    return web.Response(status=status, body=result.body, headers=headers)


def _keep(app: web.Application, channel: str, delivery: WireDelivery, why: str) -> web.Response:
    """Write the delivery to the channel's queue and answer 202; 503 if it cannot be kept."""
    db, stats = app[DB], app[METRICS]
    try:
        db.enqueue(channel, delivery)
    except sqlite3.Error as exc:
        log.error("cannot store a delivery for %s: %s", channel, exc)
        stats.rejected.labels("store-failed").inc()
        resp = problem(503, f"the relay could not store the delivery ({exc}); retry later")
        resp.headers["Retry-After"] = "30"
        return resp
    return _queued(stats, delivery.id, why)


def _queued(stats: RelayMetrics, delivery_id: str, why: str) -> web.Response:
    stats.queued.inc()
    return web.json_response(
        {
            "queued": True,
            "id": delivery_id,
            "reason": f"{why}; the delivery is stored and will be handed over the next time "
            "a listener connects",
        },
        status=202,
    )


# --- the listener's websocket ------------------------------------------------------------------


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def listener_socket(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return await ingress(request)  # a webhook that happens to end in /ws
    channel = request.match_info["channel"]
    db, hub, config = request.app[DB], request.app[HUB], request.app[CONFIG]
    if not db.channel_exists(channel):
        return problem(404, f"no channel {channel!r} on this relay; create one first")
    token = _bearer(request)
    if token is None:
        return problem(401, "missing channel token: send Authorization: Bearer <token>")
    if not db.check_token(channel, token):
        return problem(403, f"wrong token for channel {channel!r}")

    ws = web.WebSocketResponse(
        compress=False,  # bodies are already compact; deflating megabytes costs more than it saves
        # Results carry the handler's response body, which may be larger than any request.
        max_msg_size=max(config.max_body, MAX_RESULT_BODY) + (1 << 20),
        autoping=True,
    )
    await ws.prepare(request)
    session = RelaySession()
    try:
        hello = await _await_hello(ws, session, config.hello_timeout)
    except ProtocolError as exc:
        await _refuse(ws, exc)
        return ws
    if hello is None:
        return ws
    link = Link(
        channel,
        ws,
        timeout=float(hello.timeout),
        paused=hello.paused,
        liveness=Liveness(config.heartbeat, time.monotonic()),
    )
    if session.batches:
        link.outbox = Outbox(ws.send_bytes)
    await _replace(hub.attach(link))
    webhook_url = f"{public_base(request)}/c/{channel}"
    await ws.send_bytes(session.welcome(channel, webhook_url, config.heartbeat, db.depth(channel)))
    log.info("listener connected to %s (%s)", channel, hello.client)
    _spawn(link, _heartbeat(link, config.heartbeat))
    if not link.paused:
        _spawn(link, _flush(request.app, link))
    liveness = link.liveness
    assert liveness is not None
    try:
        async for msg in ws:
            liveness.seen(time.monotonic())
            if msg.type != WSMsgType.BINARY:
                if msg.type == WSMsgType.ERROR:
                    break
                raise ProtocolError("text messages are not part of the protocol")
            frame = session.receive(msg.data)
            if isinstance(frame, Result):
                take_result(request.app, link, frame)
            elif isinstance(frame, Batch):
                for result in frame.frames:
                    assert isinstance(result, Result)  # RelaySession checked every one
                    take_result(request.app, link, result)
            elif isinstance(frame, Ping):
                await ws.send_bytes(encode(Pong(frame.sent_at)))
            elif isinstance(frame, Flow):
                set_paused(request.app, link, frame.paused)
            elif isinstance(frame, Error):
                log.info("listener on %s closed: %s", channel, frame.reason)
                break
    except ProtocolError as exc:
        await _refuse(ws, exc)
    finally:
        release(request.app, link)
        if not ws.closed:
            await ws.close()
        log.info("listener on %s disconnected", channel)
    return ws


async def _await_hello(
    ws: web.WebSocketResponse, session: RelaySession, timeout: float
) -> Hello | None:
    try:
        msg = await ws.receive(timeout=timeout)
    except TimeoutError:
        raise ProtocolError(f"no Hello within {timeout:g} s", "hello-timeout") from None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    if msg.type != WSMsgType.BINARY:
        raise ProtocolError("text messages are not part of the protocol; expected a Hello")
    frame = session.receive(msg.data)
    assert isinstance(frame, Hello)  # RelaySession guarantees the first frame is a Hello
    return frame


async def _replace(old: Link | None) -> None:
    """A newer listener took the channel: the older one is told why and let go."""
    if old is None:
        return
    old.close()
    if old.ws is not None:
        await _refuse(
            old.ws, ProtocolError("another listener connected to this channel", "replaced")
        )


# --- the in-process link of the embedded relay --------------------------------------------------


def attach_local(
    app: web.Application,
    channel: str,
    token: str,
    deliver: Callable[[WireDelivery], Awaitable[None]],
    timeout: float,
    paused: bool,
) -> Link:
    """Connect the listener that owns this embedded relay by function call: the same hub, queue
    and answers as a websocket listener, without framing each delivery twice over loopback."""
    link = Link(channel, None, timeout=timeout, paused=paused, local=deliver)
    if not app[DB].channel_exists(channel):
        # This process took the port over with a data dir that never saw the channel: keep the
        # URL the listener already printed (its token re-registers it, as a websocket would).
        app[DB].create_channel(channel, token)
    replaced = app[HUB].attach(link)
    if replaced is not None:
        asyncio.get_running_loop().create_task(_replace(replaced))
    if not paused:
        _spawn(link, _flush(app, link))
    return link


def queue_depth(app: web.Application, channel: str) -> int:
    return app[DB].depth(channel)


# --- what every link does, over a websocket or in-process ----------------------------------------


def take_result(app: web.Application, link: Link, result: Result) -> None:
    """The listener stored a delivery: forget it here, and answer its waiting sender.

    A refusal is no acknowledgement: a queued delivery stays queued, and ingress queues a live
    one, for the listener's next connection."""
    if not result.refused:
        app[DB].confirm(link.channel, result.id)
    link.resolve(result)


def set_paused(app: web.Application, link: Link, paused: bool) -> None:
    """Pause: new deliveries queue (202). Resume: hand the queue over."""
    link.paused = paused
    if not paused:
        _spawn(link, _flush(app, link))


def release(app: web.Application, link: Link) -> None:
    app[HUB].detach(link)
    for task in list(link.tasks):
        task.cancel()


def _spawn(link: Link, coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    link.tasks.add(task)
    task.add_done_callback(link.tasks.discard)


async def _refuse(ws: web.WebSocketResponse, exc: ProtocolError) -> None:
    """Say why, then close cleanly: the peer learns the reason, the relay keeps serving."""
    if ws.closed:
        return
    try:
        await ws.send_bytes(encode(Error(exc.code, exc.reason)))
        await ws.close(code=1002 if exc.code != "replaced" else 4000, message=exc.code.encode())
    except (ConnectionError, RuntimeError):
        pass


async def _flush(app: web.Application, link: Link) -> None:
    """Hand over the channel's queue in arrival order."""
    for delivery in app[DB].pending(link.channel):
        if link.closed or link.paused:
            return
        if not await link.push(delivery):
            return


async def _heartbeat(link: Link, interval: float) -> None:
    """Ping every interval; a listener silent for three is dead and its link is closed."""
    assert link.ws is not None
    while not link.closed:
        await asyncio.sleep(interval)
        liveness = link.liveness
        if liveness is not None and liveness.dead(time.monotonic()):
            log.info("listener on %s silent for %.0f s: closing", link.channel, liveness.window)
            link.close()
            await _refuse(
                link.ws,
                ProtocolError(f"no frame for {liveness.window:g} s", "heartbeat-timeout"),
            )
            return
        try:
            await link.ws.send_bytes(encode(Ping(time.time())))
        except (ConnectionError, RuntimeError):
            return
