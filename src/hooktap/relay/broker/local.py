"""The broker of a relay on one machine: a SQLite file (relay/db.py) for channels and queues,
and this process's links (relay/hub.py) as the live route.

Every SQLite call runs on one worker thread, so the event loop never waits on the disk: a
32 MiB body is written while the loop serves other senders, and the calls stay in the order
they were made (one thread, first come first served), which is what keeps a confirm after
the write it confirms. The loop awaits each call it needs the outcome of. What stays on the
loop, from memory, never touching SQLite: the counts of what is queued (depth and bytes,
per channel and in all, updated on the loop before a write is handed to the thread, so the
caps checked before the next write see it), whether a delivery is queued at all (a Result
for a delivery pushed live confirms nothing on disk, and costs no thread hop), and the
channels known to be live (`channel_state` of a channel seen within its TTL, the ingress's
check on every request). An unknown or stale channel is looked up on the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from hooktap.protocol import Delivery, Result
from hooktap.relay.broker import KeepFailed, NotHeld, Offered
from hooktap.relay.db import ChannelState, Claim, RelayDB
from hooktap.relay.hub import REOFFER_FIRST, REOFFER_MAX, Hub, Link

log = logging.getLogger("hooktap.relay")

T = TypeVar("T")

# Queued rows read per query when handing the queue over; their bodies are read one by one.
BATCH = 64


class LocalBroker:
    """See relay/broker/__init__.py for the contract this keeps."""

    def __init__(self, path: Path, hub: Hub) -> None:
        self.hub = hub
        self.db = RelayDB(path)  # opened once, as the relay starts; used on the worker only
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="relay-db")
        self._closed = False

    def _start(self, call: Callable[..., T], *args: object) -> asyncio.Future[T]:
        if self._closed:
            raise KeepFailed("the relay has stopped")
        return asyncio.get_running_loop().run_in_executor(self._worker, call, *args)

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` on the worker thread. It runs to its end even if the caller is
        cancelled meanwhile, as a synchronous call would have: nothing is left half done."""
        return await asyncio.shield(self._start(call, *args))

    # --- channels ----------------------------------------------------------------------------

    async def claim(self, token: str) -> Claim | None:
        return await self._run(self.db.claim, token)

    async def owns(self, token: str) -> bool:
        return await self._run(self.db.owns, token)

    async def check_token(self, channel: str, token: str) -> bool:
        return await self._run(self.db.check_token, channel, token)

    async def channel_state(self, channel: str, ttl: float) -> ChannelState:
        if self.db.seen_within(channel, ttl, time.time()):
            return "live"  # from memory: the ingress asks this of every request
        return await self._run(self.db.channel_state, channel, ttl)

    # --- the live route ----------------------------------------------------------------------

    def listening(self, channel: str) -> bool:
        return self.hub.live(channel) is not None

    async def offer(self, channel: str, delivery: Delivery, grace: float) -> Offered:
        link = self.hub.live(channel)
        if link is None:
            raise NotHeld(channel)
        return await link.offer(delivery, grace)

    # --- keeping -----------------------------------------------------------------------------

    async def keep(self, channel: str, delivery: Delivery, handed_to: str | None) -> None:
        db = self.db
        db.reserve(channel, delivery.id, len(delivery.body))  # before any await: see depth()

        def undo(written: asyncio.Future[None]) -> None:
            # On the loop, whether or not the caller still waits for the write.
            if written.cancelled() or written.exception() is not None:
                db.unreserve(channel, delivery.id)

        written = self._start(db.write, channel, delivery, handed_to)
        written.add_done_callback(undo)
        try:
            await asyncio.shield(written)
        except sqlite3.Error as exc:
            raise KeepFailed(str(exc)) from exc
        # A listener that took the channel while this one was being kept may have emptied
        # the queue already: it is offered the queue again, unless a re-offer is due anyway
        # (the listener that just handed this delivery back).
        holder = self.hub.live(channel)
        if holder is not None and not holder.reoffer_due:
            holder.spawn(self.hand_over(holder))

    def depth(self, channel: str | None = None) -> int:
        return self.db.total_depth() if channel is None else self.db.depth(channel)

    def queued_bytes(self, channel: str | None = None) -> int:
        return self.db.total_bytes() if channel is None else self.db.channel_bytes(channel)

    # --- a listener on this instance ---------------------------------------------------------

    async def attach(self, link: Link, takeover: bool) -> None:
        await self._run(self.db.touch, link.channel)  # no other instance can hold it

    async def detach(self, link: Link) -> None:
        if not self._closed:  # a websocket's handler may end after the relay's cleanup
            await self._run(self.db.touch, link.channel)

    async def hand_over(self, link: Link) -> None:
        if link.handing:
            link.hand_again = True  # the running hand-over looks again when it is done
            return
        link.handing = True
        try:
            while True:
                link.hand_again = False
                await self._hand_over(link)
                if not link.hand_again or link.closed or link.paused:
                    return
        finally:
            link.handing = False

    async def _hand_over(self, link: Link) -> None:
        channel, who = link.channel, link.history_mark
        async with contextlib.aclosing(self._pending(channel)) as pending:
            async for delivery, handed_to in pending:
                if link.closed or link.paused:
                    return
                if delivery.id in link.sent:
                    continue
                # One an earlier listener with another history was given and never confirmed
                # may have been forwarded by it: this one records it without forwarding.
                delivery.handed_before = bool(handed_to) and handed_to != who
                if handed_to != who:
                    await self._run(self.db.mark_handed, channel, delivery.id, who)
                if not await link.push(delivery):
                    if handed_to != who:  # nothing went out
                        await self._run(self.db.mark_handed, channel, delivery.id, handed_to)
                    return

    async def _pending(self, channel: str) -> AsyncIterator[tuple[Delivery, str | None]]:
        """The channel's queue in arrival order, one body in memory at a time."""
        last = -1
        while rows := await self._run(self.db.queued_rows, channel, last, BATCH):
            for row in rows:
                last = row.seq
                delivery = await self._run(self.db.load, row)
                if delivery is not None:  # else confirmed since its row was read
                    yield delivery, row.handed_to

    async def settle(self, link: Link, result: Result) -> None:
        db, channel = self.db, link.channel
        if result.refused:
            if db.is_queued(result.id):
                # It never reached the handler: no listener "may have it" any more.
                await self._run(db.mark_handed, channel, result.id, None)
            self._reoffer_later(link)
            return
        link.reoffer_delay = REOFFER_FIRST
        if db.unreserve(channel, result.id):  # else pushed live and never written
            await self._run(db.delete, channel, result.id)

    def _reoffer_later(self, link: Link) -> None:
        """The queue again after a backoff: a listener whose disk filled up gets its
        deliveries once it can record them, without having to reconnect."""
        if link.reoffer_due or link.closed:
            return
        link.reoffer_due = True
        delay = link.reoffer_delay
        link.reoffer_delay = min(REOFFER_MAX, delay * 2)

        async def later() -> None:
            await asyncio.sleep(delay)
            link.reoffer_due = False
            if not link.paused:
                await self.hand_over(link)

        link.spawn(later())

    # --- health ------------------------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self._run(self.db.ping)
        except sqlite3.Error as exc:
            raise KeepFailed(f"the relay's database does not answer: {exc}") from exc

    async def close(self) -> None:
        await self._run(self.db.close)
        self._closed = True
        self._worker.shutdown(wait=True)

    # For listen/home_guard.py: the embedded relay's queue file deleted under it.

    def move_queue(self, path: Path) -> Path:
        """Copy the queue to `path` and carry on there (RelayDB.reopen), on the worker, after
        every call already handed to it. Blocks the loop: a rare rescue, not a hot path."""
        return self._worker.submit(self.db.reopen, path).result()
