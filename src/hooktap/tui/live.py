"""The inspector's live part, for `hooktap listen`: the listener runs as a worker in the app's
own loop, its events reach the screen in one batch every FLUSH seconds, `p` pauses it and
quitting stops it first. Browsing the stored history (app.py) is the same with or without it.
The header names the routes from the listener's Routing (fixed for the session) and the
handlers that are down from its health probes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from hooktap.listen.channel import RelayRefused
from hooktap.listen.home_guard import HomeUnusable
from hooktap.listen.listener import Listener
from hooktap.tui import notices
from hooktap.tui.feed import Feed
from hooktap.tui.widgets.header import route_forms

if TYPE_CHECKING:
    from hooktap.tui.app import HooktapApp

FLUSH = 0.1  # seconds between applying listener events to the screen
_WORKER = "listener"  # the worker group the listener runs in


class LiveListener:
    """Runs `listener` for `app` and shows what it does: connection state, URLs, counts,
    notices and paused in the header; new and finished deliveries through the app's list."""

    def __init__(self, app: HooktapApp, listener: Listener, feed: Feed) -> None:
        self.app = app
        self.listener = listener
        self.feed = feed  # collects the listener's events between flushes
        listener.subscribe(feed)

    def start(self) -> None:
        """On mount: show where it connects, start it, and flush its events from now on."""
        app, listener = self.app, self.listener
        header = app.header
        header.show_state("connecting", f"relay {listener.relay_url}")
        routing = listener.routing
        header.show_routes(
            route_forms([(r.pattern, str(r.target)) for r in routing.routes], routing.events)
        )
        app.deliveries.show_targets(len(routing.targets) > 1)
        header.show_counts(self.feed.counts, "this session")
        app.run_worker(self._run(), group=_WORKER, exit_on_error=False)
        app.set_interval(FLUSH, self.flush)

    async def _run(self) -> None:
        app, listener = self.app, self.listener
        try:
            creds = await listener.prepare()
        except (RelayRefused, ConnectionError, OSError) as exc:
            app.ended_by = exc  # run_listen_tui reports it once the screen is gone
            app.exit(return_code=2)
            return
        app.webhook_url = creds.webhook_url
        app.header.show_url(creds.webhook_url)
        try:
            await listener.run()
        except (RelayRefused, HomeUnusable) as exc:
            # Another listener holds the channel, or history has nowhere to go: nothing this
            # screen can fix. The message is printed once the terminal is back.
            app.ended_by = exc
            app.exit(return_code=2 if isinstance(exc, RelayRefused) else 1)
        except (ConnectionError, OSError) as exc:
            app.ended_by = exc
            app.header.show_state("stopped", str(exc))
            app.notify(
                str(exc), title="Listener stopped", severity="error", timeout=15, markup=False
            )

    async def stop(self) -> None:
        """Before the app quits: in-flight deliveries finish and the relay port frees."""
        await self.listener.stop()
        for worker in self.app.workers:
            if worker.group == _WORKER:
                # Timed out or failed: exiting cancels it anyway.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.wait(), 5)

    def flush(self) -> None:
        """Everything the listener did since the last flush, applied in one go."""
        batch = self.feed.drain()
        if batch.empty:
            return
        app = self.app
        header = app.header
        if batch.ready is not None:
            ready = batch.ready
            # With --public the URL to paste into Pivotal is the public one: shown and copied.
            app.webhook_url = ready.public_url or ready.webhook_url
            header.show_url(app.webhook_url)
        if batch.public is not None and batch.public.url is not None:
            app.webhook_url = batch.public.url
            header.show_url(app.webhook_url)
        if batch.health:
            header.show_health([t for t, state in self.feed.health.items() if state == "down"])
        for notice in notices.of(batch):
            app.notify(
                notice.message,
                title=notice.title,
                severity=notice.severity,
                timeout=notice.timeout,
                markup=False,
            )
        if batch.connection is not None:
            c = batch.connection
            header.show_state(c.state, c.detail, c.retry_in)
        if batch.paused is not None:
            self.show_paused()
            app.refresh_bindings()
        header.show_counts(self.feed.counts, "this session")
        if batch.received or batch.forwarded or batch.not_forwarded:
            app.show_arrivals(batch.received, batch.forwarded, batch.not_forwarded)

    def show_paused(self) -> None:
        """Paused or not, and while paused how many deliveries wait (every second)."""
        listener = self.listener
        queued = listener.queued_at_relay() if listener.paused else None
        self.app.header.show_paused(listener.paused, queued)

    async def toggle_pause(self) -> None:
        """Hold deliveries at the relay (the sender gets 202) or let them flow again."""
        paused = not self.listener.paused
        await self.listener.set_paused(paused)
        self.app.notify(
            "Deliveries now wait at the relay; p resumes." if paused else "Forwarding again.",
            title="Paused" if paused else "Resumed",
        )
