"""Keeps a provider's tunnel up: the user hears at once when its URL goes or changes, and
it is started again, with backoff, until it has a URL again.

        tunnel = Tunnel(provider, ingress.url, on_change=show, verify=check)
        base = await tunnel.start()     # PublicUnavailable: say it, exit 2
        ...
        await tunnel.stop()

`verify` (the probe, in practice) runs on every new URL before it is reported, so a URL the
user is shown is one a request has just travelled through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hooktap.public.base import AsyncScoped, Provider, PublicUnavailable, Session, TunnelLost

log = logging.getLogger("hooktap.public")


@dataclass(frozen=True)
class TunnelChange:
    """What the user is told: the public base URL now (None while there is none), why, and
    when the next attempt comes while it is down."""

    url: str | None
    reason: str
    retry_in: float | None = None


OnChange = Callable[[TunnelChange], None]
Verify = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Backoff:
    """How long to wait before starting a provider again: doubling from `first` to `cap`."""

    first: float = 1.0
    cap: float = 60.0
    # A session that lived this long was not part of a crash loop: the doubling starts over.
    stable_after: float = 30.0
    # A rate limit is not lifted by trying again sooner, only by waiting.
    rate_limited: float = 60.0

    def delay(self, failures: int, rate_limited: bool) -> float:
        delay = min(self.cap, self.first * 2**failures)
        return max(delay, self.rate_limited) if rate_limited else delay


class Tunnel(AsyncScoped):
    def __init__(
        self,
        provider: Provider,
        local_url: str,
        *,
        on_change: OnChange | None = None,
        verify: Verify | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.provider = provider
        self.local_url = local_url
        self.url: str | None = None
        self.session: Session | None = None
        self.backoff = backoff or Backoff()
        self._on_change = on_change
        self._verify = verify
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """The first URL, verified; PublicUnavailable if there is none to be had.

        No retry here: what fails at start (no binary, no token, refused, rate-limited) is
        for the user to fix, and they should hear it now rather than watch retries."""
        self.provider.check()
        session = await self._open()
        self.session, self.url = session, session.url
        self._watch = asyncio.get_running_loop().create_task(self._keep_up(session))
        return session.url

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _open(self) -> Session:
        session = await self.provider.open(self.local_url)
        try:
            if self._verify is not None:
                await self._verify(session.url)
        except BaseException:
            await session.close()
            raise
        return session

    def _tell(self, change: TunnelChange) -> None:
        self.url = change.url
        if self._on_change is None:
            return
        try:
            self._on_change(change)
        except Exception:  # a display's bug must not stop the supervision
            log.exception("tunnel change subscriber failed on %r", change)

    async def _keep_up(self, session: Session) -> None:
        try:
            await self._restarting(session)
        except Exception:  # a bug here must at least be seen, not end supervision silently
            log.exception("tunnel supervision failed")
            self._tell(TunnelChange(None, "hooktap stopped watching the tunnel (a bug: see log)"))

    async def _restarting(self, session: Session) -> None:
        failures = 0
        name = self.provider.name
        while True:
            began = time.monotonic()
            reason = await self._follow(session)
            before = self.url
            await session.close()
            self.session = None
            if time.monotonic() - began >= self.backoff.stable_after:
                failures = 0
            rate_limited = False
            while True:
                delay = self.backoff.delay(failures, rate_limited)
                failures += 1
                self._tell(TunnelChange(None, reason, retry_in=delay))
                await asyncio.sleep(delay)
                try:
                    session = await self._open()
                except PublicUnavailable as exc:
                    reason, rate_limited = str(exc), exc.kind == "rate-limited"
                    continue
                break
            self.session = session
            news = "the same URL" if session.url == before else "a new URL"
            self._tell(TunnelChange(session.url, f"{name} is up again, with {news}"))

    async def _follow(self, session: Session) -> str:
        """Report each URL the session moves to; return why it ended."""
        while True:
            try:
                url = await session.changed()
            except TunnelLost as exc:
                return str(exc)
            if url == self.url:
                continue
            try:
                if self._verify is not None:
                    await self._verify(url)
            except PublicUnavailable as exc:
                return f"{self.provider.name} moved to {url}, which does not work: {exc}"
            self._tell(TunnelChange(url, f"{self.provider.name} moved to a new URL"))
