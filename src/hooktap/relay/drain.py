"""Stopping without losing a delivery: what the relay does between SIGTERM and its exit.

aiohttp's AppRunner.cleanup() orders a graceful stop: the sites stop accepting connections,
every connection is marked closing (from then on aiohttp drops whatever bytes arrive on it,
websocket frames included), the app's on_shutdown hooks run, and the handlers still running
get `shutdown_timeout` before they are cancelled. A listener's Result arriving after that
mark would be lost, so `stop()` drains in between: the sites stop first, senders waiting on
a listener's answer get up to `drain_timeout` to have it, and only then does cleanup() run.
Senders still waiting are kept (202, written to the queue) and listeners are told "going
away" (1001), so they reconnect at once to whatever serves this address next, which hands
the queue over to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from aiohttp import web

from hooktap.relay.keys import RELAY
from hooktap.relay.logs import note

GOING_AWAY = 1001  # RFC 6455: "an endpoint is going away, such as a server going down"
CLOSE_WAIT = 2.0  # seconds for listeners to answer the closing handshake


class Drain:
    """Whether the relay is stopping, and how many senders wait on a listener's answer."""

    def __init__(self) -> None:
        self.draining = False
        self.waiting = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.hurry = asyncio.Event()  # a second SIGTERM: stop waiting for answers

    @contextlib.contextmanager
    def passthrough(self) -> Iterator[None]:
        """Held while a sender waits for a listener's answer."""
        self.waiting += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.waiting -= 1
            if self.waiting == 0:
                self._idle.set()

    async def settle(self, timeout: float) -> bool:
        """Wait until no sender waits on a listener, at most `timeout` s; True if none does."""
        idle = asyncio.ensure_future(self._idle.wait())
        hurry = asyncio.ensure_future(self.hurry.wait())
        try:
            await asyncio.wait({idle, hurry}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            idle.cancel()
            hurry.cancel()
        return self.waiting == 0


async def stop(runner: web.AppRunner) -> None:
    """Stop serving `runner` gracefully: see the module's docstring."""
    for site in list(runner.sites):
        await site.stop()  # no new connections; the open ones still carry frames
    await drain(runner.app)
    await runner.cleanup()


async def drain(app: web.Application) -> None:
    """Give senders waiting on a listener up to drain_timeout, then keep the rest and send
    the listeners away. /readyz answers 503 from the start."""
    relay = app[RELAY]
    state, timeout = relay.drain, relay.config.drain_timeout
    state.draining = True
    started = time.monotonic()
    if state.waiting:
        note(
            logging.INFO,
            "draining",
            f"stopping: {state.waiting} sender(s) waiting on a listener get up to {timeout:g} s",
            waiting=state.waiting,
            drain_timeout=timeout,
        )
    await state.settle(timeout)
    await release(app, started)


async def release(app: web.Application, started: float | None = None) -> None:
    """Close every listener link: senders still waiting on one are answered 202 and their
    deliveries kept (ingress does it when their wait resolves to None); each websocket is
    closed with 1001. Also the app's on_shutdown, for runners stopped without `stop()`."""
    relay = app[RELAY]
    state, hub = relay.drain, relay.hub
    state.draining = True
    links = list(hub.links.values())
    if not links:
        return
    # Senders whose answer has not come: closing the link resolves their wait to None, and
    # ingress keeps each one (202). Not `state.waiting`: a sender whose Result arrived in this
    # very loop turn still counts there, but gets the handler's answer.
    kept = sum(1 for link in links for fut in link.waiting.values() if not fut.done())
    for link in links:
        link.close()
    closing = [
        link.ws.close(code=GOING_AWAY, message=b"relay going away; reconnect")
        for link in links
        if link.ws is not None and not link.ws.closed
    ]
    # Bounded: after cleanup() has marked the connections closing, a listener's closing
    # frame is never read, and aiohttp would wait its whole close timeout for it.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT):
            await asyncio.gather(*closing, return_exceptions=True)
    note(
        logging.INFO,
        "drained",
        "stopped: every waiting sender was answered"
        if not kept
        else f"stopped: {kept} sender(s) still waiting were answered 202 and their "
        "deliveries kept for the next listener",
        kept=kept,
        listeners=len(links),
        seconds=round(time.monotonic() - (started or time.monotonic()), 3),
    )
