"""The broker of relay instances sharing a NATS JetStream cluster (`hooktap relay --nats`).

- Channels: a key-value bucket (nats_channels.py), so any instance authenticates any listener.
- The live route: the instance whose link holds a channel serves `hooktap.live.<channel>`.
  A sender's instance sends the delivery there as a request (the protocol's own frame
  encoding) and gets the listener's Result back as the reply. When no instance serves it,
  NATS answers "no responders" at once: NotHeld, and the ingress keeps the delivery.
- Keeping: a stream with a subject per channel (`hooktap.q.<channel>`), work-queue retention,
  published with the delivery id as Nats-Msg-Id (a retried publish is stored once). The
  server keeps the per-channel count bound (max_msgs_per_subject, discarding new) and the
  total byte bound; depths are read from the stream every REFRESH seconds and counted on keep.
  Each channel's bytes are counted for all instances in a counter stream (nats_bytes.py).
- Hand-over (nats_handover.py): a durable pull consumer per channel, shared by every
  instance; a message is acked when its listener settles it with a Result that is not
  refused, nak'd with a delay when refused, and nak'd at once when its link drops; held
  meanwhile with a heartbeat, so a dead instance's come back within seconds. The history a
  kept delivery was last handed to lives in a second bucket until the delivery is acked.
- After a keep, the channel's holder is poked on `hooktap.poke.<channel>` to hand over again.
- A connection NATS closes for good (one -ERR on a live connection) is built anew, and while
  NATS is unreachable senders are refused at once (nats_revive.py).
- A listener attaching where its channel is not held yet first asks the live subject (a
  probe): the instance holding a live listener answers "busy" (ChannelBusy), or, on a
  takeover or the same listener reconnecting, lets its link go before it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from hooktap.protocol import Delivery, ProtocolError, Result, decode, encode
from hooktap.relay.broker import ChannelBusy, KeepFailed, NoAnswer, NotHeld, Offered, TooLarge
from hooktap.relay.broker.local import LocalBroker
from hooktap.relay.broker.nats_bytes import BYTES_STREAM, ChannelBytes
from hooktap.relay.broker.nats_channels import BUCKET, NatsChannels, valid_channel
from hooktap.relay.broker.nats_connect import NatsConnect
from hooktap.relay.broker.nats_handover import HANDED_BUCKET, StreamHandOver
from hooktap.relay.broker.nats_metrics import NatsStats
from hooktap.relay.broker.nats_revive import CONNECT_WAIT, Revival
from hooktap.relay.broker.nats_stream import QUEUE, STREAM, make_stream
from hooktap.relay.db import ChannelState, Claim
from hooktap.relay.hub import REOFFER_FIRST, Hub, Link
from hooktap.relay.service import busy_reason

log = logging.getLogger("hooktap.relay")

LIVE, POKE = "hooktap.live.", "hooktap.poke."
REFRESH = 0.5  # seconds between reads of the stream's per-channel depths
PROBE_WAIT = 2.0  # how long a listener attaching waits for another instance to say "busy"
OUTCOME, HANDED, WAIT, GRACE = "Hooktap-Outcome", "Hooktap-Handed-To", "Hooktap-Wait", "Grace"
PROBE, TAKEOVER, REASON = "Hooktap-Probe", "Hooktap-Takeover", "Hooktap-Reason"
SIZE = "Hooktap-Size"  # a kept delivery's body size, taken off its channel's count on ack
HEADER_ROOM = 1024  # what a message's headers may add to its frame, against max_payload


class JetStreamBroker(StreamHandOver, Revival):
    """See relay/broker/__init__.py for the contract this keeps."""

    def __init__(
        self,
        servers: list[str],
        hub: Hub,
        *,
        max_queue: int,
        max_store_bytes: int,
        max_body: int,
        max_handler_timeout: float,
        connect: NatsConnect | None = None,
    ) -> None:
        self.servers, self.hub, self.replicas = servers, hub, 1
        self.connect = connect  # credentials and TLS (nats_connect.py)
        self.max_queue, self.max_store_bytes, self.max_body = max_queue, max_store_bytes, max_body
        self.max_handler_timeout = max_handler_timeout
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.channels = NatsChannels(self.unreachable)
        self.handed: KeyValue | None = None
        self._depth: dict[str, int] = {}
        self.channel_bytes = ChannelBytes()
        self._unshared: dict[str, int] = {}  # being kept here, not yet in channel_bytes
        self._total_bytes = 0
        self._sizes: dict[str, tuple[str, int]] = {}  # kept here, not yet settled: id -> size
        self._pending: dict[str, tuple[Link, Msg]] = {}  # handed over, not yet settled
        self._pulls: dict[str, JetStreamContext.PullSubscription] = {}
        self._looking: set[str] = set()
        self._fetched: dict[str, list[Msg]] = {}
        self._subs: dict[str, list[Subscription]] = {}  # per channel held here: live, poke
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = NatsStats()  # what /metrics adds (register_metrics)

    async def start(self) -> None:
        try:
            self.nc = await self._connect()
        except (TimeoutError, NatsError, OSError) as exc:
            why = str(exc) or f"no answer within {CONNECT_WAIT:g} s"
            raise KeepFailed(f"cannot reach NATS at {', '.join(self.servers)}: {why}") from None
        try:
            await self._prepare()
        except (TimeoutError, NatsError) as exc:
            await self.close()
            raise KeepFailed(f"NATS JetStream at {', '.join(self.servers)}: {exc}") from None
        if self.nc.max_payload < self.max_body + 64 * 1024:
            log.warning(
                "NATS carries messages of at most %d bytes (its max_payload): larger webhooks "
                "get 413; raise max_payload in the NATS servers' configuration (up to 64 MiB) "
                "or lower --max-body-mb",
                self.nc.max_payload,
            )
        self._started = True
        self._spawn(self._refresh_forever())
        self._spawn(self._beat_forever())

    async def _prepare(self) -> None:
        """The stream, the buckets, and the first read of the depths."""
        assert self.nc is not None
        self.js = self.nc.jetstream()
        self.replicas = await make_stream(
            self.js, self.max_queue, self.max_store_bytes, self.max_body
        )
        self.stats.replicas = self.replicas
        await self.channels.open(self.js, self.replicas)
        await self.channel_bytes.open(self.js, self.replicas)
        try:
            self.handed = await self.js.key_value(HANDED_BUCKET)
        except NotFoundError:
            self.handed = await self.js.create_key_value(
                bucket=HANDED_BUCKET, history=1, replicas=self.replicas
            )
        await self._refresh()

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- channels ----------------------------------------------------------------------------

    async def claim(self, token: str) -> Claim | None:
        return await self.channels.claim(token)

    async def owns(self, token: str) -> bool:
        return await self.channels.owns(token)

    async def check_token(self, channel: str, token: str) -> bool:
        return await self.channels.check_token(channel, token)

    async def channel_state(self, channel: str, ttl: float) -> ChannelState:
        return await self.channels.channel_state(channel, ttl)

    # --- the live route ----------------------------------------------------------------------

    def listening(self, channel: str) -> bool:
        # Another instance may hold it: only asking tells (no responders means no).
        return valid_channel(channel)

    async def offer(self, channel: str, delivery: Delivery, grace: float) -> Offered:
        link = self.hub.live(channel)
        if link is not None:
            return await link.offer(delivery, grace)
        if self.unreachable() is not None or self.nc is None:
            # nats-py would buffer the request until it reconnects, and the sender would wait
            # for a reply that cannot come: keep() says why at once instead.
            raise NotHeld(channel)
        wait = self.max_handler_timeout + grace
        headers = {GRACE: repr(grace)}
        data = encode(delivery)
        if not self._fits(data):
            raise NotHeld(channel)  # NATS cannot carry it: keep() says why
        sent = time.perf_counter()
        try:
            reply = await self.nc.request(
                LIVE + channel, data, timeout=wait + grace, headers=headers
            )
        except NoRespondersError:
            raise NotHeld(channel) from None
        except NatsTimeout:
            raise NoAnswer(wait + grace) from None
        except NatsError as exc:  # the connection, or a body past NATS's max_payload
            log.warning("live route to %s failed: %s", channel, exc)
            raise NotHeld(channel) from None
        self.stats.observe(time.perf_counter() - sent)
        head = reply.headers or {}
        outcome = head.get(OUTCOME, "")
        if outcome == "result":
            result = decode(reply.data)
            assert isinstance(result, Result)
            return Offered(result)
        if outcome == "noanswer":
            raise NoAnswer(float(head.get(WAIT, wait)))
        if outcome == "gone":
            return Offered(None, head.get(HANDED) or None)
        raise NotHeld(channel)

    async def _serve_live(self, msg: Msg) -> None:
        """A delivery posted to another instance, for a listener linked here."""
        channel = msg.subject[len(LIVE) :]
        if PROBE in (msg.headers or {}):
            return await self._serve_probe(channel, msg)
        link = self.hub.live(channel)
        headers: dict[str, str] = {OUTCOME: "notheld"}
        body = b""
        try:
            delivery = decode(msg.data)
            if link is not None and isinstance(delivery, Delivery):
                grace = float((msg.headers or {}).get(GRACE, "5"))
                offered = await link.offer(delivery, grace)
                if offered.result is not None:
                    headers, body = {OUTCOME: "result"}, encode(offered.result)
                else:
                    headers = {OUTCOME: "gone", HANDED: offered.handed_to or ""}
        except NoAnswer as late:
            headers = {OUTCOME: "noanswer", WAIT: repr(late.wait)}
        except ProtocolError as exc:
            log.warning("a live delivery for %s could not be read: %s", channel, exc)
        with contextlib.suppress(NatsError):
            await self._respond(msg, body, headers)

    async def _serve_probe(self, channel: str, msg: Msg) -> None:
        """A listener attaching on another instance asks whether the channel is held here;
        judged as the service judges two links on one instance (RelayService.attach)."""
        head = msg.headers or {}
        holder = self.hub.holder(channel)
        headers = {OUTCOME: "released"}
        if holder is not None:
            instance, takeover = head.get(PROBE, ""), head.get(TAKEOVER) == "1"
            same = instance not in ("", "-") and instance == holder.instance
            if not takeover and not same and holder.alive(time.monotonic()):
                headers = {OUTCOME: "busy", REASON: busy_reason(holder)}
            else:
                reason = ProtocolError("another listener took this channel over", "replaced")
                await holder.refuse(reason)  # its senders' deliveries are kept (202)
                await self._unsubscribe(channel)  # before the answer: one responder at a time
        with contextlib.suppress(NatsError):
            await self._respond(msg, b"", headers)

    async def _probe(self, link: Link, takeover: bool) -> None:
        """ChannelBusy if a live listener holds the channel on another instance; with
        `takeover` (or the same listener reconnecting), that instance lets it go."""
        assert self.nc is not None
        head = {PROBE: link.instance or "-", TAKEOVER: "1" if takeover else "0"}
        try:
            reply = await self.nc.request(LIVE + link.channel, b"", PROBE_WAIT, headers=head)
        except (NoRespondersError, NatsTimeout):
            return  # nobody holds it, or its instance cannot say: the newcomer takes it
        if (reply.headers or {}).get(OUTCOME) == "busy":
            raise ChannelBusy((reply.headers or {}).get(REASON, "another listener holds it"))

    async def _respond(self, msg: Msg, body: bytes, headers: dict[str, str]) -> None:
        assert self.nc is not None and msg.reply
        await self.nc.publish(msg.reply, body, headers=headers)

    # --- keeping -----------------------------------------------------------------------------

    async def keep(self, channel: str, delivery: Delivery, handed_to: str | None) -> None:
        if (why := self.unreachable()) is not None or self.js is None:
            raise KeepFailed(why or "not connected to NATS")  # at once: a publish would wait
        size = len(delivery.body)
        # Whoever gets it next may take its time; whether it was handed before is judged then.
        kept = dataclasses.replace(delivery, answer_by=None, handed_before=False)
        data = encode(kept)
        if not self._fits(data):
            raise TooLarge(self._too_large(size))
        self._count(channel, delivery.id, size)  # before any await: see depth()
        headers = {"Nats-Msg-Id": delivery.id, SIZE: str(size)}
        counted = False  # in every instance's count of the channel's bytes (channel_bytes)
        try:
            if handed_to:
                await self._handed_put(delivery.id, handed_to)
            # Counted for every instance before it is kept: the count errs high, never low.
            await self.channel_bytes.add(channel, size)
            self._unshare(channel, size)
            counted = True
            ack = await self.js.publish(QUEUE + channel, data, headers=headers)
            if ack.duplicate:  # kept before, by a retried publish: counted then
                # Taking it back is best effort: the delivery is kept (its sender gets 202),
                # and a count left high heals (nats_bytes.py).
                with contextlib.suppress(TimeoutError, NatsError):
                    await self.channel_bytes.add(channel, -size)
        except (TimeoutError, NatsError, ProtocolError) as exc:
            if counted:
                with contextlib.suppress(TimeoutError, NatsError):
                    await self.channel_bytes.add(channel, -size)
            else:
                self._unshare(channel, size)
            self._uncount(delivery.id)
            raise KeepFailed(f"NATS did not keep it: {exc}") from exc
        holder = self.hub.live(channel)
        if holder is not None:
            if not holder.reoffer_due:
                holder.spawn(self.hand_over(holder))
        elif self.nc is not None:
            with contextlib.suppress(NatsError):
                await self.nc.publish(POKE + channel, b"")

    def _fits(self, data: bytes) -> bool:
        """Whether NATS carries it as one message: its max_payload counts the headers too."""
        return self.nc is None or len(data) + HEADER_ROOM <= self.nc.max_payload

    def _too_large(self, size: int) -> str:
        assert self.nc is not None
        return (
            f"this webhook's body ({size} bytes) is larger than NATS carries in one message "
            f"(its max_payload, {self.nc.max_payload} bytes), so relays sharing NATS can "
            "neither keep it nor pass it to another instance, and sending it again will not "
            "help; the relay's operator can raise max_payload on the NATS servers (up to 64 "
            "MiB) or lower `hooktap relay --max-body-mb` so that such a body is refused at once"
        )

    def _count(self, channel: str, delivery_id: str, size: int) -> None:
        self._sizes[delivery_id] = (channel, size)
        self._depth[channel] = self._depth.get(channel, 0) + 1
        self._unshared[channel] = self._unshared.get(channel, 0) + size
        self._total_bytes += size

    def _unshare(self, channel: str, size: int) -> None:
        left = self._unshared.pop(channel, 0) - size
        if left:
            self._unshared[channel] = left

    def _uncount(self, delivery_id: str) -> None:
        found = self._sizes.pop(delivery_id, None)
        if found is None:
            return
        channel, size = found
        self._depth[channel] = max(0, self._depth.get(channel, 1) - 1)
        self._total_bytes = max(0, self._total_bytes - size)

    def depth(self, channel: str | None = None) -> int:
        return sum(self._depth.values()) if channel is None else self._depth.get(channel, 0)

    def queued_bytes(self, channel: str | None = None) -> int:
        # Per channel: every instance's count (nats_bytes.py) and this one's keeps not yet
        # in it; in all: the stream's own byte count (the server enforces that bound).
        if channel is None:
            return self._total_bytes
        return self.channel_bytes.get(channel) + self._unshared.get(channel, 0)

    async def _refresh(self) -> None:
        assert self.js is not None
        info = await self.js.stream_info(STREAM, subjects_filter=QUEUE + "*")
        subjects = info.state.subjects or {}
        self._depth = {s[len(QUEUE) :]: n for s, n in subjects.items()}
        await self.channel_bytes.refresh(self._depth)
        self._total_bytes = self.stats.bytes = info.state.bytes
        self.stats.messages = info.state.messages

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await self._refresh()
            except (NatsError, TimeoutError):
                pass  # NATS away: /readyz says so; read again next time
            except Exception:  # a bug must not stop the depths for good: say it, go on
                log.exception("reading the queue's depths from NATS failed")

    # --- a listener on this instance ---------------------------------------------------------

    async def attach(self, link: Link, takeover: bool) -> None:
        assert self.nc is not None
        await self.channels.touch(link.channel)
        channel = link.channel
        if channel in self._subs:  # a link replacing another here: one responder per instance
            return
        await self._probe(link, takeover)

        self._subs[channel] = await self._subscribe(channel)

    async def _subscribe(self, channel: str) -> list[Subscription]:
        """Serve the channel's live and poke subjects from here."""
        assert self.nc is not None

        async def on_live(msg: Msg) -> None:
            self._spawn(self._serve_live(msg))  # concurrently: a slow handler blocks no other

        async def on_poke(msg: Msg) -> None:
            holder = self.hub.live(channel)
            if holder is not None and not holder.reoffer_due:
                holder.spawn(self.hand_over(holder))

        subs = [
            await self.nc.subscribe(LIVE + channel, cb=on_live),
            await self.nc.subscribe(POKE + channel, cb=on_poke),
        ]
        await self.nc.flush()  # the interest is known to the server before a sender asks
        return subs

    async def _unsubscribe(self, channel: str) -> None:
        for sub in self._subs.pop(channel, []):
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()

    async def detach(self, link: Link) -> None:
        held = self.hub.holder(link.channel) is not None
        if not held:
            await self._unsubscribe(link.channel)
        for delivery_id, (holder, msg) in list(self._pending.items()):
            if holder is link:  # never confirmed: the next listener gets it at once
                del self._pending[delivery_id]
                with contextlib.suppress(NatsError):
                    await msg.nak()
        if not held:
            pull = self._pulls.pop(link.channel, None)
            if pull is not None:
                with contextlib.suppress(NatsError):
                    await pull.unsubscribe()
        with contextlib.suppress(NatsError, asyncio.TimeoutError):
            await self.channels.touch(link.channel)

    # One hand-over at a time per link, and the backoff after a refusal, as on one machine:
    # both only call back into _hand_over and hand_over.
    hand_over = LocalBroker.hand_over
    _reoffer_later = LocalBroker._reoffer_later

    async def settle(self, link: Link, result: Result) -> None:
        # A NATS error here must not end the listener's link (the caller reads its frames):
        # what NATS did not confirm stays in the stream, comes back after ACK_WAIT (nothing
        # beats for it any more), and the listener knows it from its history.
        pending = self._pending.pop(result.id, None)
        if result.refused:
            if pending is not None:
                try:
                    await self._handed_put(result.id, None)
                    await pending[1].nak(delay=link.reoffer_delay)
                except (TimeoutError, NatsError) as exc:
                    log.warning("NATS did not take back %s: %s", result.id, exc or "timeout")
            self._reoffer_later(link)
            return
        link.reoffer_delay = REOFFER_FIRST
        if pending is None:
            return
        msg = pending[1]
        try:
            await msg.ack_sync()
        except (TimeoutError, NatsError) as exc:
            log.warning(
                "NATS did not confirm %s as delivered (%s): JetStream may hand it over again, "
                "and the listener knows it from its history",
                result.id,
                exc or "timeout",
            )
            self._look_again(link)  # nothing else would fetch it when it comes back
            return
        # Only now: a count taken off for an ack that never reached NATS would run low.
        with contextlib.suppress(TimeoutError, NatsError, ValueError):
            size = int((msg.headers or {}).get(SIZE, len(msg.data)))
            await self.channel_bytes.add(link.channel, -size)
        if result.id in self._sizes:
            self._uncount(result.id)
        else:  # kept by another instance: only the count is known here
            self._depth[link.channel] = max(0, self._depth.get(link.channel, 1) - 1)
        with contextlib.suppress(TimeoutError, NatsError):
            await self._handed_put(result.id, None)  # else it lingers, read by nobody

    def register_metrics(self, registry: CollectorRegistry) -> None:
        self.stats.register(registry)

    # --- health ------------------------------------------------------------------------------

    async def ping(self) -> None:
        if self.dead is not None:
            raise KeepFailed(self.dead)
        if self.nc is None or self.js is None or not self.nc.is_connected:
            raise KeepFailed("not connected to NATS")
        try:
            await self.js.account_info()
            # The account answers before a stream re-elects a leader after a node died; a
            # stream without one can neither keep a delivery nor admit a listener.
            for stream in (STREAM, BYTES_STREAM, f"KV_{BUCKET}", f"KV_{HANDED_BUCKET}"):
                await self.js.stream_info(stream)
        except (TimeoutError, NatsError) as exc:
            raise KeepFailed(f"NATS JetStream does not answer: {exc}") from exc

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(NatsError):
                await self.nc.close()
