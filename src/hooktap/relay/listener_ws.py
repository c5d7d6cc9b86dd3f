"""`GET /c/{channel}/ws`: the listener's websocket, from the token check to the last frame."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSMsgType, web

from hooktap.outbox import Outbox
from hooktap.protocol import (
    Batch,
    Error,
    Flow,
    Hello,
    ProtocolError,
    RelaySession,
    Result,
)
from hooktap.relay.broker import ChannelBusy
from hooktap.relay.config import bearer, problem, public_base
from hooktap.relay.hub import Link, refuse
from hooktap.relay.ingress import ingress
from hooktap.relay.keys import RELAY
from hooktap.relay.logs import note
from hooktap.relay.rates import LoginGate

log = logging.getLogger("hooktap.relay")

# Results carry the handler's response body, which the listener caps at 1 MiB; a request body
# may be as large as the relay's max_body. Messages past both are not ours.
RESULT_BODY_ROOM = 2 * 1024 * 1024


async def listener_socket(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return await ingress(request)  # a webhook that happens to end in /ws
    channel = request.match_info["channel"]
    relay = request.app[RELAY]
    config = relay.config
    async with LoginGate(request) as gate:
        if gate.limited is not None:
            return gate.limited
        token = bearer(request)
        if token is None:
            return problem(401, "missing channel token: send Authorization: Bearer <token>")
        # An unknown channel and a wrong token get the same answer, from the same lookup: a
        # prober learns nothing about which channels exist. Both count as a failed guess.
        if not await relay.broker.check_token(channel, token):
            await gate.failed()
            return problem(403, "unknown channel or wrong token")

    ws = web.WebSocketResponse(
        compress=False,  # bodies are already compact; deflating megabytes costs more than it saves
        max_msg_size=config.max_body + RESULT_BODY_ROOM,
        autoping=True,
    )
    await ws.prepare(request)
    # The session answers Pings with the channel's depth, and keeps the heartbeat clock.
    session = RelaySession(config.heartbeat, time.monotonic(), queued=lambda: relay.depth(channel))
    try:
        hello = await _await_hello(ws, session, config.hello_timeout)
    except ProtocolError as exc:
        await refuse(ws, session, exc)
        return ws
    if hello is None:
        return ws
    timeout = relay.handler_timeout(hello.timeout)
    link = Link(
        channel,
        ws,
        timeout=timeout,
        paused=hello.paused,
        session=session,
        instance=hello.instance,
        history=hello.history,
        client=f"{hello.client or 'a listener'} from {request.remote or 'unknown'}",
    )
    try:
        await relay.attach(link, hello.takeover)
    except ChannelBusy as exc:
        note(
            logging.INFO,
            "listener-refused",
            f"listener refused on {channel}: channel busy",
            channel=channel,
            remote=request.remote or "",
            reason="busy",
        )
        await refuse(ws, session, ProtocolError(str(exc), "busy"))
        return ws
    if session.batches:
        link.outbox = Outbox(ws.send_bytes)
    webhook_url = f"{public_base(request)}/c/{channel}"
    queued = relay.depth(channel)
    await ws.send_bytes(
        session.welcome(channel, webhook_url, config.heartbeat, queued, timeout=timeout)
    )
    note(
        logging.INFO,
        "listener-connected",
        f"listener connected to {channel} ({link.client})",
        channel=channel,
        client=hello.client,
        remote=request.remote or "",
    )
    link.spawn(_heartbeat(link, session, config.heartbeat))
    if not link.paused:
        link.spawn(relay.flush(link))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type == WSMsgType.ERROR:
                    break
                raise ProtocolError("text messages are not part of the protocol")
            frame = session.receive(msg.data, time.monotonic())
            if isinstance(frame, Result):
                await relay.take_result(link, frame)
            elif isinstance(frame, Batch):
                for result in frame.frames:
                    assert isinstance(result, Result)  # RelaySession checked every one
                    await relay.take_result(link, result)
            elif isinstance(frame, Flow):
                relay.pause(link, frame.paused)
            elif isinstance(frame, Error):
                log.info("listener on %s closed: %s", channel, frame.reason)
                break
            for reply in session.data_to_send():  # the Pong a Ping asked for
                await ws.send_bytes(reply)
    except ProtocolError as exc:
        await refuse(ws, session, exc)
    finally:
        await relay.release(link)
        if not ws.closed:
            await ws.close()
        note(
            logging.INFO,
            "listener-disconnected",
            f"listener on {channel} disconnected",
            channel=channel,
            remote=request.remote or "",
            connected_s=round(time.time() - link.connected_at, 3),
        )
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


async def _heartbeat(link: Link, session: RelaySession, interval: float) -> None:
    """The one heartbeat loop: every interval, the Ping the session says is due; a listener
    silent for the session's window is dead, and its link is closed."""
    assert link.ws is not None
    while not link.closed:
        await asyncio.sleep(interval)
        try:
            ping = session.beat(time.monotonic())
        except ProtocolError as exc:
            log.info("listener on %s: %s; closing", link.channel, exc.reason)
            await link.refuse(exc)
            return
        if ping is None:
            continue
        try:
            await link.ws.send_bytes(ping)
        except (ConnectionError, RuntimeError):
            return
