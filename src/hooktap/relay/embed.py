"""What the relay offers a program that runs it in its own process: the one door `listen/`
goes through.

`hooktap listen` serves a relay on loopback and links its listener to it by function call, no
websocket framing and no loopback hop per delivery. Everything it needs from the relay is here:
making, serving and stopping the app, and `InProcessRelay`, the relay as an in-process
listener sees it (attach, take a result, pause, release, queue depth), plus what the
HOOKTAP_HOME guard needs to move the relay's queue file. The listener never reaches past it
into the relay's parts, so these can change behind it: InProcessRelay's methods are the
relay service object's (relay/service.py).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from hooktap.protocol import Delivery, Result
from hooktap.relay.app import SERVICE, RelayConfig, make_app
from hooktap.relay.broker.local import LocalBroker
from hooktap.relay.drain import stop as stop_relay
from hooktap.relay.hub import Link
from hooktap.relay.keys import RELAY
from hooktap.relay.server import serve

__all__ = ["SERVICE", "InProcessRelay", "Link", "RelayConfig", "make_app", "serve", "stop_relay"]


class InProcessRelay:
    """A relay app this process serves, seen from a listener in the same process: a thin
    face of its RelayService, which does the same for the websocket endpoint.

    A delivery goes through the same hub, queue and answers as one over a websocket: the
    listener attaches a `Link` whose `deliver` the relay awaits (it returns once the listener
    has room for the delivery: back-pressure), and hands each Result back to `take_result`."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.service = app[RELAY]

    async def attach(
        self,
        channel: str,
        token: str,
        deliver: Callable[[Delivery], Awaitable[None]],
        *,
        timeout: float,
        paused: bool,
        instance: str = "",
        history: str = "",
    ) -> Link:
        """Make this listener the channel's: it owns the relay, so it always takes the channel,
        replacing a websocket listener that joined this relay before this process took the
        port over. The queue is handed over at once unless `paused`. The handler timeout is
        capped by the relay's max_handler_timeout, as a websocket listener's is."""
        relay = self.service
        link = Link(
            channel,
            None,
            timeout=relay.handler_timeout(timeout),
            paused=paused,
            local=deliver,
            instance=instance,
            history=history,
            client="in-process",
        )
        if await relay.broker.channel_state(channel, math.inf) == "unknown":
            # This process took the port over with a data dir that never saw the channel:
            # keep the URL the listener already printed (its token re-registers it, as a
            # websocket would). The id derives from the token: it comes back under its name.
            await relay.broker.claim(token)
        await relay.attach(link, takeover=True)
        if not paused:
            link.spawn(relay.flush(link))
        return link

    async def take_result(self, link: Link, result: Result) -> None:
        await self.service.take_result(link, result)

    def pause(self, link: Link, paused: bool) -> None:
        self.service.pause(link, paused)

    async def release(self, link: Link) -> None:
        await self.service.release(link)

    def depth(self, channel: str) -> int:
        """How many deliveries wait in the channel's queue (read in memory)."""
        return self.service.depth(channel)

    # For listen/home_guard.py: HOOKTAP_HOME deleted under the embedded relay.

    @property
    def queue_path(self) -> Path:
        return self.service.config.data_dir / "relay.db"

    def move_queue(self, path: Path) -> Path:
        """Copy the queue to `path` and carry on there; where it now is (see RelayDB.reopen).
        Blocks until the queue's worker thread has done it."""
        broker = self.service.broker
        assert isinstance(broker, LocalBroker)  # an embedded relay keeps its queue in a file
        return broker.move_queue(path)
