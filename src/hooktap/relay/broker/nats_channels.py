"""The channel registry of relays sharing NATS: one JetStream key-value bucket, so any
instance authenticates any listener.

A key is a channel id (derived from its token, relay/db.py's `channel_id`); its value is JSON
with the token's SHA-256, when it was made and when a listener was last seen on it. Tokens
themselves are never stored. What a relay asks per request (is this channel live?) is
answered from memory while the channel was seen within its TTL; the bucket is read otherwise.

When NATS cannot answer, what a door asks (claim, check_token, channel_state) raises
RegistryUnavailable: 503 with Retry-After, at once while NATS is known to be unreachable.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from hooktap.relay.broker import KeepFailed
from hooktap.relay.db import ChannelState, Claim, channel_id, hash_token

BUCKET = "hooktap_channels"
# What a channel id from a URL must look like to be a key (and a subject token) at all.
CHANNEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def valid_channel(channel: str) -> bool:
    return CHANNEL_RE.match(channel) is not None


class RegistryUnavailable(web.HTTPServiceUnavailable, KeepFailed):
    """NATS could not say who owns a channel. An HTTP 503 as well as a KeepFailed: the doors
    that ask (the ingress, the channel API, the listener's websocket) have no answer of their
    own for a broker that fails, so aiohttp answers this one, and relay/server.py gives it the
    relay's {"error": reason} shape, keeping its Retry-After."""

    def __init__(self, why: str) -> None:
        super().__init__(
            text=f"the relay cannot read its channels from NATS ({why}); retry later",
            headers={"Retry-After": "30"},
        )


class NatsChannels:
    def __init__(self, unreachable: Callable[[], str | None] = lambda: None) -> None:
        """`unreachable`: why NATS cannot answer now (None: it may), so a door is told at once
        rather than after a request nats-py buffers until it reconnects."""
        self.unreachable = unreachable
        self.kv: KeyValue | None = None
        self._last_seen: dict[str, float] = {}

    async def open(self, js: JetStreamContext, replicas: int) -> None:
        try:
            self.kv = await js.key_value(BUCKET)
        except NotFoundError:  # no such bucket yet: the first instance makes it
            self.kv = await js.create_key_value(bucket=BUCKET, history=1, replicas=replicas)

    async def _read(self, channel: str) -> dict[str, float | str] | None:
        assert self.kv is not None
        try:
            entry = await self.kv.get(channel)
        except NotFoundError:  # KeyNotFoundError, or KeyDeletedError for a deleted one
            return None
        if entry.value is None:
            return None
        record: dict[str, float | str] = json.loads(entry.value)
        self._last_seen[channel] = float(record["last_seen"])
        return record

    @contextlib.contextmanager
    def _asking(self) -> Iterator[None]:
        if (why := self.unreachable()) is not None:
            raise RegistryUnavailable(why)
        try:
            yield
        except (NatsError, TimeoutError) as exc:
            raise RegistryUnavailable(str(exc) or type(exc).__name__) from None

    async def claim(self, token: str) -> Claim | None:
        """The channel derived from the token, made if unknown; None if another token's."""
        with self._asking():
            return await self._claim(token)

    async def _claim(self, token: str) -> Claim | None:
        assert self.kv is not None
        channel = channel_id(token)
        record = await self._read(channel)
        if record is not None:
            if not hmac.compare_digest(str(record["token_sha256"]), hash_token(token)):
                return None
            await self.touch(channel)
            return Claim(channel, False)
        now = time.time()
        value = {"token_sha256": hash_token(token), "created_at": now, "last_seen": now}
        try:
            await self.kv.create(channel, json.dumps(value).encode())
        except KeyWrongLastSequenceError:  # another instance made it in between
            return await self._claim(token)
        self._last_seen[channel] = now
        return Claim(channel, True)

    async def owns(self, token: str) -> bool:
        return await self.check_token(channel_id(token), token)

    async def check_token(self, channel: str, token: str) -> bool:
        if not valid_channel(channel):
            return False
        with self._asking():
            record = await self._read(channel)
        return record is not None and hmac.compare_digest(
            str(record["token_sha256"]), hash_token(token)
        )

    def seen_within(self, channel: str, ttl: float) -> bool:
        seen = self._last_seen.get(channel)
        return seen is not None and time.time() - seen <= ttl

    async def channel_state(self, channel: str, ttl: float) -> ChannelState:
        if self.seen_within(channel, ttl):
            return "live"
        if not valid_channel(channel):
            return "unknown"
        with self._asking():
            record = await self._read(channel)
        if record is None:
            return "unknown"
        return "stale" if time.time() - float(record["last_seen"]) > ttl else "live"

    async def touch(self, channel: str) -> None:
        """A listener attached or left: its last-seen starts over, for every instance."""
        assert self.kv is not None
        record = await self._read(channel)
        if record is None:
            return
        now = time.time()
        record["last_seen"] = now
        await self.kv.put(channel, json.dumps(record).encode())
        self._last_seen[channel] = now
