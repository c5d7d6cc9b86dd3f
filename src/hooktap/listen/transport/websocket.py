"""The listener's websocket to a relay: the wire protocol, its heartbeat, and batching."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from hooktap import __version__
from hooktap.listen.channel import ChannelCredentials, RelayAccess, RelayRefused
from hooktap.listen.transport import (
    TAKEN_OVER,
    Disconnected,
    HandshakeRefused,
    Opened,
    Take,
    Transport,
)
from hooktap.outbox import Outbox
from hooktap.protocol import (
    Batch,
    Error,
    Flow,
    Frame,
    Hello,
    ListenerSession,
    Ping,
    Pong,
    ProtocolError,
    Result,
)
from hooktap.protocol import Delivery as WireDelivery

log = logging.getLogger("hooktap.listen")

WELCOME_WAIT = 10.0  # seconds for the relay's first frame after our Hello
CLOSED = "connection to the relay closed"


class WebSocketTransport(Transport):
    def __init__(self, creds: ChannelCredentials, access: RelayAccess) -> None:
        self.creds = creds
        self.access = access
        self._ws: ClientConnection | None = None
        self._session = ListenerSession()
        self._outbox: Outbox | None = None  # protocol 2: results leave as one Batch per tick
        self._take: Take | None = None
        self._waiting_for_slot = False
        self._queued: int | None = None  # the relay's last word on its queue, from a Pong

    async def open(self, hello: Hello, take: Take) -> Opened:
        url = self.creds.websocket_url
        try:
            ws = await connect(
                url,
                ssl=self.access.ssl_for(url),
                additional_headers={"Authorization": f"Bearer {self.creds.token}"},
                user_agent_header=f"hooktap/{__version__}",
                compression=None,  # deflating megabyte bodies on loopback costs more than it saves
                max_size=None,
                ping_interval=None,  # our own heartbeat frames, in serve()
                open_timeout=10,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            raise HandshakeRefused(exc.response.status_code, _reason(exc)) from None
        except InvalidHandshake as exc:
            raise Disconnected(str(exc) or type(exc).__name__) from exc
        self._ws = ws
        session = self._session
        try:
            await ws.send(session.send(hello))
            first = session.receive(
                await asyncio.wait_for(ws.recv(), WELCOME_WAIT), time.monotonic()
            )
        except ConnectionClosed as exc:
            raise Disconnected(CLOSED) from exc
        if isinstance(first, Error):
            raise RelayRefused(f"the relay refused the connection: {first.reason}")
        welcome = session.welcome
        assert welcome is not None
        if welcome.timeout is not None and welcome.timeout < hello.timeout:
            log.warning(
                "hooktap: this relay holds a sender at most %g s, less than --timeout %g; "
                "a handler slower than that is answered 504 by the relay",
                welcome.timeout,
                hello.timeout,
            )
        self._take = take
        self._outbox = Outbox(ws.send) if session.batches else None
        # The same protocol version brought both Batch and refusals the relay keeps.
        return Opened(welcome.webhook_url, welcome.queued, keeps_refused=session.batches)

    async def serve(self) -> None:
        ws, session, liveness, take = self._ws, self._session, self._session.liveness, self._take
        assert ws is not None and liveness is not None and take is not None
        beat = asyncio.create_task(self._heartbeat(ws))
        try:
            async for data in ws:
                if isinstance(data, str):
                    raise ProtocolError("the relay sent a text message")
                frame = session.receive(data, time.monotonic())
                if isinstance(frame, WireDelivery):
                    deliveries: Sequence[Frame] = (frame,)
                elif isinstance(frame, Batch):
                    deliveries = frame.frames  # ListenerSession checked: Delivery frames only
                elif isinstance(frame, Ping):
                    for pong in session.data_to_send():  # the session queued its Pong
                        await ws.send(pong)
                    continue
                elif isinstance(frame, Pong):
                    self._queued = frame.queued
                    continue
                elif isinstance(frame, Error):
                    if frame.code == "replaced":
                        raise RelayRefused(TAKEN_OVER)
                    raise ProtocolError(frame.reason, frame.code)
                else:
                    continue
                for delivery in deliveries:
                    assert isinstance(delivery, WireDelivery)
                    # Back-pressure: while the listener has no room, frames wait in the
                    # socket, which is not the relay going silent (see _heartbeat).
                    self._waiting_for_slot = True
                    await take(delivery)
                    self._waiting_for_slot = False
                    liveness.seen(time.monotonic())
        except ConnectionClosed as exc:
            raise Disconnected(CLOSED) from exc
        finally:
            beat.cancel()

    async def send_result(self, result: Result) -> None:
        ws, outbox = self._ws, self._outbox
        assert ws is not None
        with contextlib.suppress(ConnectionClosed):
            if outbox is not None:
                await outbox.put(self._session.send(result))
            else:
                await ws.send(self._session.send(result))

    async def pause(self, paused: bool) -> None:
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(self._session.send(Flow(paused)))

    def queued(self) -> int | None:
        return self._queued

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    def abort(self) -> None:
        """Drop the socket without a closing handshake, as a crash or a lost network would."""
        if self._ws is not None:
            self._ws.transport.abort()

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Ping the relay (the session says when); if it goes silent (half-open socket,
        sleep), drop the connection so the listener reconnects instead of looking connected
        when it is not."""
        session = self._session
        liveness = session.liveness
        assert liveness is not None
        while True:
            await asyncio.sleep(liveness.interval)
            now = time.monotonic()
            if self._waiting_for_slot:
                liveness.seen(now)  # frames wait in the socket for our room, not the relay
            try:
                ping = session.beat(now)
            except ProtocolError:
                log.info("relay silent for %.0f s; reconnecting", liveness.window)
                ws.transport.abort()
                return
            if ping is not None:
                try:
                    await ws.send(ping)
                except ConnectionClosed:
                    return


def _reason(exc: InvalidStatus) -> str:
    try:
        body = json.loads(exc.response.body or b"")
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return exc.response.reason_phrase or "refused"
