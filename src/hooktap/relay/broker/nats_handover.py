"""Handing a channel's kept deliveries from the stream to the listener linked here
(JetStreamBroker's side of Broker.hand_over), and keeping what it holds from coming back.

A durable pull consumer per channel, shared by every instance. A delivery fetched and handed
to a listener stays unacknowledged until the listener settles it (nats.py: settle). While
it is held, this instance tells JetStream so every HEARTBEAT s (`in_progress`), so ACK_WAIT
can be short: when the instance dies, its beats stop and what it held comes back within
ACK_WAIT to whichever instance holds the channel next, which looks again for it (a fetch
only finds it once it is due). The history each was last handed to lives in the HANDED
bucket until it is acked: a listener with another history records it without forwarding
it (`handed_before`); the same listener finds it in its own history and does not forward
it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from hooktap.protocol import Delivery, ProtocolError, decode
from hooktap.relay.broker.nats_stream import QUEUE, STREAM
from hooktap.relay.hub import Link

log = logging.getLogger("hooktap.relay")

HANDED_BUCKET = "hooktap_handed"
BATCH = 64
FETCH_WAIT = 0.25  # how long a hand-over waits for more before it ends
# A delivery handed over by an instance that died comes back after this; one held by a live
# instance never does, since the instance beats every HEARTBEAT s while it holds it.
ACK_WAIT = 4.0
HEARTBEAT = 1.0


class StreamHandOver:
    """Mixed into JetStreamBroker, which sets these up (start) and calls back into
    hand_over and _reoffer_later (LocalBroker's)."""

    js: JetStreamContext | None
    handed: KeyValue | None
    _pending: dict[str, tuple[Link, Msg]]  # handed over, not yet settled
    _pulls: dict[str, JetStreamContext.PullSubscription]
    _looking: set[str]  # channels whose deliveries held by a dead instance are awaited
    _fetched: dict[str, list[Msg]]  # per channel: the batch being handed over

    if TYPE_CHECKING:  # LocalBroker's, borrowed by JetStreamBroker

        async def hand_over(self, link: Link) -> None: ...
        def _reoffer_later(self, link: Link) -> None: ...

    async def _pull(self, channel: str) -> JetStreamContext.PullSubscription:
        pull = self._pulls.get(channel)
        if pull is None:
            assert self.js is not None
            config = ConsumerConfig(ack_wait=ACK_WAIT, max_ack_pending=10_000)
            pull = await self.js.pull_subscribe(
                QUEUE + channel, durable="ch_" + channel, stream=STREAM, config=config
            )
            self._pulls[channel] = pull
        return pull

    async def _hand_over(self, link: Link) -> None:
        try:
            await self._hand_over_from_stream(link)
        except (NatsError, TimeoutError) as exc:
            # NATS away, or the consumer's group between leaders: again after a backoff. The
            # batch was let go (_hand_batch); what was marked here and never went out is let
            # go too, or the beats would hold it from JetStream for ever.
            log.warning("hand-over to %s stopped: %s", link.channel, exc or "timeout")
            for delivery_id, (holder, msg) in list(self._pending.items()):
                if holder is link and delivery_id not in link.sent:
                    del self._pending[delivery_id]
                    with contextlib.suppress(NatsError):
                        await msg.nak()
            pull = self._pulls.pop(link.channel, None)
            if pull is not None:  # a new one next time: drop this one's inbox subscription
                with contextlib.suppress(NatsError):
                    await pull.unsubscribe()
            self._reoffer_later(link)

    async def _hand_over_from_stream(self, link: Link) -> None:
        channel = link.channel
        pull = await self._pull(channel)
        while not (link.closed or link.paused):
            try:
                msgs = await pull.fetch(BATCH, timeout=FETCH_WAIT)
            except NatsTimeout:
                # Nothing came: the queue is empty, or its consumer could not answer.
                info = await pull.consumer_info()
                if info.num_pending:
                    raise
                held_here = sum(held.channel == channel for held, _ in self._pending.values())
                if info.num_ack_pending > held_here:  # handed out by an instance now dead
                    self._look_again(link)
                return
            self._fetched[channel] = msgs  # beaten too, until each is handed or let go
            try:
                if not await self._hand_batch(link, msgs):
                    return
            finally:
                self._fetched.pop(channel, None)

    async def _hand_batch(self, link: Link, msgs: list[Msg]) -> bool:
        """Push a fetched batch to the link; False when the link stopped taking them (the
        rest are nak'd, for whoever takes the channel next)."""
        for i, msg in enumerate(msgs):
            if link.closed or link.paused:
                await _let_go(msgs[i:])
                return False
            try:
                if not await self._hand_one(link, msg):
                    await _let_go(msgs[i:])
                    return False
            except (NatsError, TimeoutError):
                # This one and the rest back to JetStream at once, in order: held by nobody,
                # they would wait out ACK_WAIT, and later deliveries would overtake them.
                await _let_go(msgs[i:])
                raise
        return True

    async def _hand_one(self, link: Link, msg: Msg) -> bool:
        """Push one fetched delivery; False when the link stopped taking them."""
        try:
            delivery = decode(msg.data)
            if not isinstance(delivery, Delivery):
                raise ProtocolError(f"a {type(delivery).__name__} frame")
        except ProtocolError as exc:  # not one of ours: never hand it out
            log.error("dropping an unreadable message in %s: %s", msg.subject, exc)
            await msg.term()
            return True
        if delivery.id in link.sent:  # pushed already, its Result still to come
            self._pending[delivery.id] = (link, msg)
            return True
        who = link.history_mark
        handed_to = await self._handed_get(delivery.id)
        delivery.handed_before = bool(handed_to) and handed_to != who
        if handed_to != who:
            await self._handed_put(delivery.id, who)
        # Held from here (beaten, settled), once nothing before the push can fail.
        self._pending[delivery.id] = (link, msg)
        if not await link.push(delivery):
            self._pending.pop(delivery.id, None)
            await self._handed_put(delivery.id, handed_to)
            return False
        return True

    def _look_again(self, link: Link) -> None:
        """Fetch again once what another instance held may be due (ACK_WAIT after its last
        beat), until it came: nothing else would wake this link's hand-over for it."""
        if link.channel in self._looking:
            return
        self._looking.add(link.channel)

        async def later() -> None:
            try:
                await asyncio.sleep(ACK_WAIT / 2)
            finally:
                self._looking.discard(link.channel)
            if not (link.closed or link.paused):
                await self.hand_over(link)

        link.spawn(later())

    async def _beat_forever(self) -> None:
        """Tell JetStream that every delivery a listener here holds is still being worked on."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                held = [msg for _, msg in self._pending.values()]
                for msg in held + [msg for batch in self._fetched.values() for msg in batch]:
                    with contextlib.suppress(NatsError):
                        await msg.in_progress()
            except Exception:  # a bug must not stop the beats: each one stopped is redelivered
                log.exception("telling NATS what listeners here hold failed")

    async def _handed_get(self, delivery_id: str) -> str | None:
        assert self.handed is not None
        try:
            entry = await self.handed.get(delivery_id)
        except NotFoundError:  # never marked, or purged since
            return None
        return entry.value.decode() if entry.value else None

    async def _handed_put(self, delivery_id: str, history: str | None) -> None:
        assert self.handed is not None
        if history:
            await self.handed.put(delivery_id, history.encode())
        else:
            with contextlib.suppress(NotFoundError):
                await self.handed.purge(delivery_id)


async def _let_go(msgs: list[Msg]) -> None:
    """Back to JetStream for the channel's next hand-over, in their order."""
    for msg in msgs:
        with contextlib.suppress(NatsError):
            await msg.nak()
