"""Each channel's kept bytes, counted for every instance together (--max-channel-mb).

JetStream bounds a subject's message count itself, but has no per-subject byte bound, and
the queue stream reports bytes only for the whole stream. So the instances keep a counter
per channel in a counter stream (NATS 2.12+, `allow_msg_counter`): `Nats-Incr` adds to it
atomically on the server, whichever instance adds. A keep adds the delivery's size before
it is published (a failed or duplicate publish takes it back); the instance that acks it
takes it off. Each instance reads the counters of the channels whose depth changed (with the
queue's depths, every REFRESH s) and learns the total from every add it makes itself.

What remains racy: the ingress checks the cap against this view, so two instances taking
posts for one channel within one refresh of each other may each admit one that together
pass the cap (by at most what the other instances admitted in that time).

A counter can drift: an instance killed between adding and publishing (or between acking
and taking off). A channel whose queue is empty while its counter has said the same
non-zero figure for HEAL_AFTER s is reset: its counter messages are purged up to the one
read, so an add that came in between is not lost (it carries the drift on, and the reset is
tried again once the count has held still for HEAL_AFTER again).

A NATS server without counters (before 2.12) answers an add without a total: each instance
then counts what it kept itself, as before, and says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from nats.errors import Error as NatsError
from nats.js.api import StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

log = logging.getLogger("hooktap.relay")

BYTES_STREAM = "HOOKTAP_BYTES"
BYTES = "hooktap.bytes."
STREAM_EXISTS = 10058
HEAL_AFTER = 30.0  # longer than any keep takes between its add and its publish
REREAD = 5.0  # a non-zero counter is read again at least this often


class ChannelBytes:
    def __init__(self) -> None:
        self.js: JetStreamContext | None = None
        self.shared = True  # False: a NATS without counters; each instance counts its own
        self._bytes: dict[str, int] = {}
        # channel -> (the counter message last read, when it was first seen, when read)
        self._seen: dict[str, tuple[int, float, float]] = {}
        self._depths: dict[str, int] = {}

    async def open(self, js: JetStreamContext, replicas: int) -> None:
        self.js = js
        config = StreamConfig(
            name=BYTES_STREAM,
            subjects=[BYTES + "*"],
            allow_msg_counter=True,
            max_msgs_per_subject=1,  # the latest total is all that is read
            num_replicas=replicas,
        )
        try:
            await js.add_stream(config)
        except APIError as exc:
            if exc.err_code != STREAM_EXISTS:
                raise

    def get(self, channel: str) -> int:
        return self._bytes.get(channel, 0)

    async def add(self, channel: str, delta: int) -> None:
        """Add `delta` bytes to the channel's count (negative: taken off)."""
        assert self.js is not None
        if not self.shared:
            self._bytes[channel] = max(0, self._bytes.get(channel, 0) + delta)
            return
        ack = await self.js.publish(BYTES + channel, b"", headers={"Nats-Incr": f"{delta:+d}"})
        if ack.val is None:  # the server ignored Nats-Incr: no counters before NATS 2.12
            self.shared = False
            log.warning(
                "NATS has no counters (nats-server 2.12 or later has them): each relay "
                "instance counts --max-channel-mb for what it kept itself"
            )
            with contextlib.suppress(NatsError):
                await self.js.purge_stream(BYTES_STREAM)
            return await self.add(channel, delta)
        self._bytes[channel] = int(ack.val)

    async def refresh(self, depths: dict[str, int]) -> None:
        """Read the counters that may have changed; reset one that drifted."""
        before, self._depths = self._depths, depths
        if not self.shared:  # as before counters: an empty queue keeps no bytes
            for channel in list(self._bytes):
                if channel not in depths:
                    del self._bytes[channel]
            return
        now = time.monotonic()
        stale = [
            channel
            for channel in {*depths, *self._bytes}
            if depths.get(channel, 0) != before.get(channel, 0)
            or now - self._seen.get(channel, (0, 0.0, 0.0))[2] > REREAD
        ]
        await asyncio.gather(*(self._read(channel, now) for channel in stale))

    async def _read(self, channel: str, now: float) -> None:
        assert self.js is not None
        try:
            msg = await self.js.get_last_msg(BYTES_STREAM, BYTES + channel)
        except NotFoundError:
            self._bytes.pop(channel, None)
            self._seen.pop(channel, None)
            return
        assert msg.seq is not None and msg.data is not None
        total = int(json.loads(msg.data)["val"])
        seq, since, _ = self._seen.get(channel, (0, now, now))
        if seq != msg.seq:
            since = now
        self._seen[channel] = (msg.seq, since, now)
        self._bytes[channel] = total
        if not total and not self._depths.get(channel):
            del self._bytes[channel], self._seen[channel]  # not read again until it changes
            return
        if total and not self._depths.get(channel) and now - since > HEAL_AFTER:
            log.warning("%s's byte count drifted (%d with nothing kept): reset", channel, total)
            # Up to the message read: an add since then (a keep starting) survives.
            await self.js.purge_stream(BYTES_STREAM, subject=BYTES + channel, seq=msg.seq + 1)
            self._bytes.pop(channel, None)
