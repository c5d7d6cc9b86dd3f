"""Rate limits: deliveries per channel (--rate), channels made and failed listener logins
per source address. Past any of them the caller gets 429 with Retry-After and a reason.

All three are moving windows of the `limits` library in one in-memory store per relay. A
moving window allows at most N in any span of its length: a channel at --rate 5 takes a burst
of 5 at once (one second's worth), then one more each time the oldest of those leaves the
window, and Retry-After says when that is.

Memory: the store keeps one list of timestamps per key (a channel, or a source address). A
hit starts a sweep unless one is running (limits.aio.storage.MemoryStorage.__expire_events),
and the sweep drops each key whose entries are all older than the window, its lock with it.
So a flood of fresh source addresses is forgotten by the first sweep after its window, and
the store holds only what the last window (plus one sweep) brought, about 0.5 KB a key; a
sweep costs about 0.2 ms a key, less than the request that made the key. The sync
MemoryStorage would keep an empty list for every key ever seen, which is why this is the
async one (tests/internet/test_rates.py checks the sweep).

IPv6 senders are counted per /64, the block one subscriber usually gets, or a single host
could take a fresh key for every request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time

from aiohttp import web
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from hooktap.relay.config import CONFIG, RelayConfig, problem, source_address
from hooktap.relay.keys import RELAY

# The longest a source key may be: X-Forwarded-For from a trusted proxy is still a header.
_MAX_SOURCE = 64


def delivery_window(rate: float) -> RateLimitItem | None:
    """`rate` a second as whole deliveries in a whole-second window, never more than asked:
    5 -> 5 a second, 0.5 -> 1 per 2 s, 2.5 -> 2 a second. None: no limit."""
    if rate <= 0:
        return None
    seconds = max(1, math.ceil(1 / rate - 1e-9))
    return RateLimitItemPerSecond(max(1, math.floor(rate * seconds + 1e-9)), seconds)


def _per_minute(amount: int) -> RateLimitItem | None:
    return RateLimitItemPerMinute(amount) if amount > 0 else None


def source_key(address: str) -> str:
    """An IPv4 address as is, an IPv6 one as its /64; anything else (a proxy's odd entry)
    as written, cut short."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:_MAX_SOURCE]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Rates:
    """The relay's limiters; one per relay (held by its service object), shared by every
    door it has, so a channel's rate counts both."""

    def __init__(self, config: RelayConfig) -> None:
        self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.rate = config.rate
        self.delivery = delivery_window(config.rate)
        self.create = _per_minute(config.create_per_minute)
        self.wrong_token = _per_minute(config.wrong_tokens_per_minute)
        self.logins = asyncio.Lock()  # see LoginGate

    async def too_many(
        self, request: web.Request, label: str, item: RateLimitItem, kind: str, key: str, why: str
    ) -> web.Response:
        """429, counted under `label`, with Retry-After: whole seconds (at least 1) until the
        window of `kind` for `key` has room again."""
        request.app[RELAY].metrics.rejected.labels(label).inc()
        stats = await self.limiter.get_window_stats(item, kind, key)
        seconds = max(1, math.ceil(stats.reset_time - time.time()))
        resp = problem(429, f"{why}; retry after {seconds} s", retry_after=seconds)
        resp.headers["Retry-After"] = str(seconds)
        return resp


def rates_of(app: web.Application) -> Rates:
    return app[RELAY].rates


def _sender(request: web.Request) -> str:
    return source_key(source_address(request, request.app[CONFIG].trusted_proxies))


async def channel_rate(request: web.Request, channel: str) -> web.Response | None:
    """429 when `channel` has taken its --rate of deliveries; None lets this one in (and
    counts it)."""
    rates = rates_of(request.app)
    item = rates.delivery
    if item is None or await rates.limiter.hit(item, "delivery", channel):
        return None
    why = f"channel {channel!r} takes at most {rates.rate:g} deliveries a second (--rate)"
    return await rates.too_many(request, "rate-limited", item, "delivery", channel, why)


async def creation_rate(request: web.Request) -> web.Response | None:
    """429 when this source has made its channels for the minute; None counts this one."""
    rates, source = rates_of(request.app), _sender(request)
    item = rates.create
    if item is None or await rates.limiter.hit(item, "create", source):
        return None
    why = (
        f"this address has made {item.amount} channels in the last minute, this relay's limit "
        '(re-claiming yours with {"token": ...} is not limited)'
    )
    return await rates.too_many(request, "create-rate-limited", item, "create", source, why)


class LoginGate:
    """Failed listener logins (an unknown channel or a wrong token) from one source.

    Checked before the token is: once a source has failed its quota for the minute, every
    websocket attempt from it is refused, whatever it carries, or the guessing would go on.

        async with LoginGate(request) as gate:
            if gate.limited is not None:
                return gate.limited
            ...check the token; on a failure: await gate.failed()

    Checking the count and adding a failure to it are two steps, and the store may make the
    second wait (its sweep holds a key's lock across a thread hop): without one lock around
    both, attempts arriving meanwhile would all pass the check, and a source would get more
    guesses than its quota."""

    def __init__(self, request: web.Request) -> None:
        self.rates = rates_of(request.app)
        self.request = request
        self.source = _sender(request)
        self.limited: web.Response | None = None

    async def __aenter__(self) -> LoginGate:
        await self.rates.logins.acquire()
        try:
            self.limited = await self._refused()
        except BaseException:
            self.rates.logins.release()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.rates.logins.release()

    async def _refused(self) -> web.Response | None:
        item = self.rates.wrong_token
        if item is None or await self.rates.limiter.test(item, "wrong-token", self.source):
            return None
        why = (
            f"too many unknown channels or wrong tokens from this address ({item.amount} a "
            "minute is this relay's limit)"
        )
        label = "wrong-token-rate-limited"
        return await self.rates.too_many(self.request, label, item, "wrong-token", self.source, why)

    async def failed(self) -> None:
        self.request.app[RELAY].metrics.rejected.labels("wrong-token").inc()
        if self.rates.wrong_token is not None:
            await self.rates.limiter.hit(self.rates.wrong_token, "wrong-token", self.source)
