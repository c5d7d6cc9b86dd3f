"""The listeners linked to this relay instance: at most one per channel, and the senders
waiting on them.

A Link wraps one listener: a websocket, or, for the listener that runs the embedded relay in
its own process, a plain function call (no framing, no loopback socket). A broker that routes
a live delivery to this instance calls `Link.offer`, which pushes it and waits on a future
that the listener's Result resolves; if the link drops first, the future resolves to None and
the sender is told it is queued. Any broker keeps its listeners here: what differs between
brokers is how a delivery posted elsewhere reaches this hub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hooktap.outbox import Outbox
from hooktap.protocol import Delivery, Error, ProtocolError, RelaySession, Result
from hooktap.relay.broker import NoAnswer, Offered

# After a listener hands a delivery back (its history cannot be written), the relay offers the
# channel's queue again after this many seconds, doubling up to REOFFER_MAX while it keeps
# refusing: soon enough that a freed disk is noticed in seconds, slow enough not to spin.
REOFFER_FIRST = 0.5
REOFFER_MAX = 30.0


@dataclass(eq=False)
class Link:
    channel: str
    ws: web.WebSocketResponse | None
    timeout: float
    # The websocket's protocol state (encoding, pongs, liveness); None for an in-process
    # link, which has no frames and cannot go silent.
    session: RelaySession | None = None
    paused: bool = False
    local: Callable[[Delivery], Awaitable[None]] | None = None
    # Who is on the other end: a random id per listener run (the same listener reconnecting
    # keeps it), and the id of the history it records deliveries in ("" from older listeners).
    instance: str = ""
    history: str = ""
    client: str = ""
    connected_at: float = field(default_factory=time.time)
    sent: set[str] = field(default_factory=set)
    waiting: dict[str, asyncio.Future[Result | None]] = field(default_factory=dict)
    closed: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # its heartbeat and flushes
    outbox: Outbox | None = None  # the listener speaks protocol 2: one message per loop tick
    # The broker's hand-over of the queue to this link: one at a time, and whether another
    # was asked for while it ran; after a refusal, when to offer the queue again.
    handing: bool = False
    hand_again: bool = False
    reoffer_delay: float = REOFFER_FIRST
    reoffer_due: bool = False  # a re-offer of the queue is scheduled

    @property
    def history_mark(self) -> str:
        """What the queue records as the history a delivery was handed to over this link. An
        older listener names none; "unknown" never equals a real history, so nobody
        de-duplicates against it."""
        return self.history or "unknown"

    async def offer(self, delivery: Delivery, grace: float) -> Offered:
        """Push a live delivery and wait for its Result: see Broker.offer. One deadline, the
        handler's timeout plus `grace`, for the push (the in-process link's waits for a free
        slot) and the answer, told to the listener too: it must not start the delivery after
        the sender was told 504. On NoAnswer the link lets go of the delivery: the listener
        has it, or will, and answers it late."""
        wait = self.timeout + grace
        delivery.answer_by = time.time() + wait
        waiter = self.expect(delivery.id)
        try:
            # No shield needed: resolve() skips a waiter cancelled by this timeout.
            async with asyncio.timeout(wait):
                if not await self.push(delivery):
                    delivery.answer_by = None  # kept: whoever gets it next may take its time
                    return Offered(None)  # the link was gone: nothing went out
                result = await waiter
        except TimeoutError:
            self.forget(delivery.id)
            raise NoAnswer(wait) from None
        return Offered(result, None if result is not None else self.history_mark)

    async def push(self, delivery: Delivery) -> bool:
        """Send one delivery unless this link already carried it; False if the link is gone."""
        if self.closed:
            return False
        if delivery.id in self.sent:
            return True
        self.sent.add(delivery.id)
        if self.local is not None:
            try:
                await self.local(delivery)  # returns once the listener has room: back-pressure
            except asyncio.CancelledError:
                # The sender stopped waiting (504) while the listener had no room. Over a
                # websocket the delivery would be in the listener's buffer by now, and the
                # listener records it, past its answer_by, without forwarding it: so here too
                # it stays offered, instead of vanishing from the listener's history.
                if not self.closed:
                    self.spawn(self.local(delivery))
                raise
            return True
        assert self.ws is not None and self.session is not None
        try:
            if self.outbox is not None:
                await self.outbox.put(self.session.send(delivery))
            else:
                await self.ws.send_bytes(self.session.send(delivery))
        except (ConnectionError, RuntimeError):
            self.close()
            return False
        return True

    def expect(self, delivery_id: str) -> asyncio.Future[Result | None]:
        fut: asyncio.Future[Result | None] = asyncio.get_running_loop().create_future()
        self.waiting[delivery_id] = fut
        return fut

    def forget(self, delivery_id: str) -> None:
        """The sender stopped waiting (it was answered 504): drop what we hold for it."""
        self.waiting.pop(delivery_id, None)
        self.sent.discard(delivery_id)

    def resolve(self, result: Result) -> None:
        self.sent.discard(result.id)  # confirmed: nothing left to de-duplicate against
        fut = self.waiting.pop(result.id, None)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def alive(self, now: float) -> bool:
        """Whether the listener on this link is demonstrably there: an in-process link always
        is; a websocket one if it spoke within two heartbeats (it pings every one)."""
        if self.closed:
            return False
        liveness = self.session.liveness if self.session is not None else None
        if liveness is None:
            return True
        return now - liveness.last_seen <= 2 * liveness.interval

    def close(self) -> None:
        """Release every waiting sender: their deliveries stay queued for the next link."""
        self.closed = True
        self.ended.set()
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_result(None)
        self.waiting.clear()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` for as long as this link lives (its heartbeat, its flushes)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def refuse(self, exc: ProtocolError) -> None:
        """Close the link and tell a websocket listener why (an in-process one sees `ended`)."""
        self.close()
        if self.ws is not None and self.session is not None:
            await refuse(self.ws, self.session, exc)


async def refuse(ws: web.WebSocketResponse, session: RelaySession, exc: ProtocolError) -> None:
    """Say why, then close cleanly: the peer learns the reason, the relay keeps serving."""
    if ws.closed:
        return
    try:
        await ws.send_bytes(session.send(Error(exc.code, exc.reason)))
        await ws.close(code=1002 if exc.code != "replaced" else 4000, message=exc.code.encode())
    except (ConnectionError, RuntimeError):
        pass


class Hub:
    def __init__(self) -> None:
        self.links: dict[str, Link] = {}

    def live(self, channel: str) -> Link | None:
        link = self.links.get(channel)
        if link is None or link.closed or link.paused:
            return None
        return link

    def holder(self, channel: str) -> Link | None:
        """The channel's open link, paused or not."""
        link = self.links.get(channel)
        return None if link is None or link.closed else link

    def attach(self, link: Link) -> Link | None:
        """Make `link` the channel's listener; return the one it replaces, if any."""
        old = self.links.get(link.channel)
        self.links[link.channel] = link
        return old if old is not None and old is not link else None

    def detach(self, link: Link) -> None:
        link.close()
        if self.links.get(link.channel) is link:
            del self.links[link.channel]

    def connected(self) -> int:
        return sum(1 for link in self.links.values() if not link.closed)
