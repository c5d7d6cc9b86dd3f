"""Reading a request body on a relay that anyone may send to: bounded memory, bounded time.

Every body is read through `read_body`. Its bytes are counted against one budget shared by
all requests (`max_inflight_bytes`), taken before they are read and held until the sender is
answered. A body that finds no room waits without reading from its socket, so TCP pushes back
on the sender instead of the relay buffering it; one that cannot get room within
`body_timeout` seconds is refused 503 with Retry-After. A body must also keep coming: no byte
for `body_timeout` seconds, or fewer than `min_body_rate` bytes a second on average once
`body_timeout` has passed, is refused 408.

Copies: aiohttp buffers at most about 128 KiB of a body before it stops reading the socket;
the chunks are gathered in one bytearray (grown in place), and made into the `bytes` the
Delivery carries with one copy at the end, after which the bytearray is freed. That is the
only copy this module makes; `RelayDB.write` streams large bodies into SQLite without any.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hooktap.relay.config import RelayConfig, problem
from hooktap.relay.keys import RELAY

# A body without Content-Length (chunked) takes room this much at a time, ahead of reading:
# more than aiohttp ever hands over in one piece, so what is read always fits what is held.
STEP = 1024 * 1024
# What a sender refused for want of room is told to wait before trying again (seconds).
BUSY_RETRY_AFTER = 5


class Budget:
    """Bytes of request bodies in the relay's memory at once. Waiters are served in arrival
    order, so a large body is not starved by a stream of small ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, size: int, patience: float) -> int | None:
        """Hold `size` bytes (at most the whole budget), waiting up to `patience` seconds for
        them; the bytes held, or None if there was no room in time."""
        size = min(size, self.limit)
        if not self._waiters and self.used + size <= self.limit:
            self.used += size
            return size
        entry = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        granted = False
        try:
            await asyncio.wait((entry[1],), timeout=patience)
            granted = entry[1].done()
        finally:
            if not entry[1].done():
                entry[1].cancel()
                self._waiters.remove(entry)
                self._wake()  # it may have been the one the others queued behind
            elif not granted:  # given room just as its request was cancelled
                self.give(size)
        return size if granted else None

    def give(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            size, fut = self._waiters.popleft()
            self.used += size
            fut.set_result(None)


def budget(app: web.Application) -> Budget:
    """The relay's one budget, held by its service object: the door `listen --public` opens
    shares that object, so what comes in through either door draws on one memory."""
    return app[RELAY].budget


@dataclass
class BodyRefused(Exception):
    """Why a body was not read; `label` is its reason in the relay's rejected counter."""

    status: int
    reason: str
    label: str
    retry_after: int | None = None

    def response(self) -> web.Response:
        resp = problem(self.status, self.reason)
        if self.retry_after is not None:
            resp.headers["Retry-After"] = str(self.retry_after)
        # Some of the body is still unsent or unread, and it is not wanted: the connection
        # ends after this answer instead of reading it for the next request.
        resp.force_close()
        return resp


def too_large(config: RelayConfig) -> BodyRefused:
    return BodyRefused(
        413, f"body larger than this relay's limit of {config.max_body} bytes", "too-large"
    )


class _Lease:
    """The room one request holds; all of it goes back when the request is done."""

    def __init__(self, room: Budget, config: RelayConfig) -> None:
        self.room, self.config, self.held = room, config, 0

    async def take(self, size: int) -> None:
        got = await self.room.take(size, self.config.body_timeout)
        if got is None:
            raise BodyRefused(
                503,
                "the relay is reading as many request bodies as its memory allows "
                f"({self.config.max_inflight_bytes // (1024 * 1024)} MiB, --max-inflight-mb) "
                f"and no room came free within {self.config.body_timeout:g} s; retry later",
                "busy",
                BUSY_RETRY_AFTER,
            )
        self.held += got

    def keep(self, size: int) -> None:
        """Hold only `size` bytes from now on (what a chunked body turned out to need)."""
        if size < self.held:
            self.room.give(self.held - size)
            self.held = size

    def close(self) -> None:
        self.keep(0)


@contextlib.asynccontextmanager
async def read_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request's body, its bytes held in the budget until the `async with` ends (the
    sender has been answered); raises BodyRefused, before yielding, when it is not read."""
    config = request.app[RELAY].config
    length = request.content_length
    if length is not None and length > config.max_body:
        raise too_large(config)
    if not request.body_exists:
        yield b""
        return
    lease = _Lease(budget(request.app), config)
    try:
        if length is not None:
            await lease.take(length)
        body = await _read(request, lease, stepwise=length is None)
        lease.keep(len(body))
        yield body
    finally:
        lease.close()


async def _read(request: web.Request, lease: _Lease, stepwise: bool) -> bytes:
    """Read to the end under the body timeout; with `stepwise` (no Content-Length), take
    room in STEPs ahead of what is read."""
    config = lease.config
    loop = asyncio.get_running_loop()
    content = request.content
    buf = bytearray()
    start = last = loop.time()
    while True:
        if stepwise and len(buf) + STEP > lease.held:
            waited = loop.time()
            await lease.take(STEP)
            # Waiting for room is the relay's doing, not the sender's: that time is not counted.
            pause = loop.time() - waited
            start, last = start + pause, last + pause
        try:
            async with asyncio.timeout_at(_deadline(len(buf), start, last, config)):
                chunk = await content.readany()
        except TimeoutError:
            raise _slow(len(buf), loop.time() - start, config) from None
        except (ConnectionError, HttpProcessingError) as exc:
            # The sender is gone or broke its framing: nobody is likely to read this answer.
            raise BodyRefused(
                400, f"the request body could not be read: {exc}", "bad-body"
            ) from None
        if not chunk:
            return bytes(buf)
        if len(buf) + len(chunk) > config.max_body:
            raise too_large(config)
        buf += chunk
        last = loop.time()
        elapsed = last - start
        if elapsed >= config.body_timeout and _too_slow(len(buf), elapsed, config):
            raise _slow(len(buf), elapsed, config)


def _too_slow(got: int, elapsed: float, config: RelayConfig) -> bool:
    return config.min_body_rate > 0 and got < config.min_body_rate * elapsed


def _deadline(got: int, start: float, last: float, config: RelayConfig) -> float:
    """When to give up if no more bytes come: `body_timeout` after the last byte, or when the
    average rate so far would fall under `min_body_rate` (never before `body_timeout`)."""
    stall = last + config.body_timeout
    if config.min_body_rate <= 0:
        return stall
    return min(stall, start + max(config.body_timeout, got / config.min_body_rate))


def _slow(got: int, elapsed: float, config: RelayConfig) -> BodyRefused:
    return BodyRefused(
        408,
        f"the request body came too slowly: {got} bytes in {elapsed:.1f} s; this relay wants "
        f"a byte at least every {config.body_timeout:g} s and {config.min_body_rate} bytes a "
        f"second on average after the first {config.body_timeout:g} s (--body-timeout)",
        "slow-body",
    )
