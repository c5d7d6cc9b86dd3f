"""The relay's NATS connection, and a new one when nats-py gives the old one up for good.

nats-py reconnects on its own after a lost connection, but one `-ERR` from the server on a
live connection (an Authorization Violation after the token changed and the config was
reloaded, an expired creds JWT, a revoked account) makes it close the client for good: no
reconnect, every later call raises ConnectionClosedError. Left alone, the relay would stay up
and useless (503 on every webhook, for ever). So `closed_cb` logs one error line and builds a
new client, retried with a backoff until NATS takes it: then the stream and buckets are looked
up again, the live and poke subjects of the channels held here are subscribed again, and their
links are handed the queue from new pull subscriptions. What the listeners held unacknowledged
over the old connection comes back from JetStream after its ACK_WAIT, and each listener knows
it from its history.

Why a new client and not an exit for a supervisor to restart: the relay may be embedded or
run without one, and an exit would drop every listener's websocket and every waiting sender,
where a new client keeps them. While the relay has no client (`dead`), /healthz answers 503
too, so that an orchestrator that prefers to restart it can.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from hooktap.relay.broker import KeepFailed
from hooktap.relay.broker.nats_connect import NatsConnect
from hooktap.relay.broker.nats_tls import connect_nats

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from hooktap.relay.hub import Hub, Link

log = logging.getLogger("hooktap.relay")

CONNECT_WAIT = 5.0
REVIVE_FIRST, REVIVE_MAX = 0.5, 5.0  # seconds between attempts at a new client, doubling


async def _nats_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc or type(exc).__name__)


class Revival:
    """Mixed into JetStreamBroker, which provides what is declared here."""

    servers: list[str]
    connect: NatsConnect | None
    hub: Hub
    nc: Client | None
    _subs: dict[str, list[Subscription]]
    _pending: dict[str, tuple[Link, Msg]]
    _pulls: dict[str, JetStreamContext.PullSubscription]
    _fetched: dict[str, list[Msg]]
    # Why NATS cannot be used until a new client is connected; None while it can (or may again
    # by itself: nats-py reconnecting after a lost connection).
    dead: str | None = None
    _closing = False  # the relay closes the client itself: no revival
    _started = False

    if TYPE_CHECKING:

        async def _prepare(self) -> None: ...
        async def _subscribe(self, channel: str) -> list[Subscription]: ...
        async def hand_over(self, link: Link) -> None: ...
        def _spawn(self, coro: object) -> None: ...

    def unreachable(self) -> str | None:
        """Why NATS cannot be used right now, or None: what a sender's 503 says at once rather
        than after a request nats-py would only buffer until it reconnects."""
        if self.dead is not None:
            return self.dead
        if self.nc is None or not self.nc.is_connected:
            return f"NATS is unreachable ({', '.join(self.servers)}): not connected"
        return None

    async def _connect(self) -> Client:
        """A connected client (KeepFailed, TimeoutError or a NATS error otherwise)."""
        async with asyncio.timeout(CONNECT_WAIT):
            # Reconnects on its own once connected; the first connect has CONNECT_WAIT.
            return await connect_nats(
                self.servers,
                self.connect,
                _nats_error,
                name="hooktap-relay",
                max_reconnect_attempts=-1,
                closed_cb=self._closed,
            )

    async def _closed(self) -> None:
        nc = self.nc
        if self._closing or not self._started or nc is None or self.dead is not None:
            return  # closed by the relay, a failed attempt at a client, or already revived
        if not nc.is_closed:
            return
        why = nc.last_error or "no reason given"
        self.dead = f"NATS closed this relay's connection for good ({why}); connecting anew"
        log.error(
            "NATS closed this relay's connection and will not reconnect it (%s): connecting "
            "anew until NATS takes this relay again; until then webhooks get 503",
            why,
        )
        self._spawn(self._revive_forever())

    async def _revive_forever(self) -> None:
        delay, said = REVIVE_FIRST, ""
        while not self._closing:
            await asyncio.sleep(delay)
            delay = min(REVIVE_MAX, delay * 2)
            try:
                nc = await self._connect()
            except (TimeoutError, NatsError, OSError, KeepFailed) as exc:
                why = str(exc) or type(exc).__name__
                if why != said:  # once per reason, not once per attempt
                    log.warning("NATS: a new connection failed (%s); trying again", why)
                    said = why
                continue
            self.nc = nc
            try:
                await self._prepare()
                await self._resubscribe()
            except (TimeoutError, NatsError) as exc:
                log.warning("NATS: connected again, but JetStream did not answer (%s)", exc)
                self.nc = None
                await nc.close()
                continue
            self.dead = None
            log.warning("NATS: connected again; the channels held here are served again")
            return

    async def _resubscribe(self) -> None:
        """Serve the channels held here on the new client. Deliveries handed over on the old
        one cannot be acked or nak'd there: JetStream hands them out again after ACK_WAIT."""
        self._pending.clear()
        self._pulls.clear()
        self._fetched.clear()
        held, self._subs = list(self._subs), {}
        for channel in held:
            link = self.hub.holder(channel)
            if link is None:
                continue
            self._subs[channel] = await self._subscribe(channel)
            if not (link.reoffer_due or link.paused):
                link.spawn(self.hand_over(link))
