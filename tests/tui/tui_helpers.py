"""Helpers for the inspector's tests, which run a real session: the relay (make_app), a
recording aiohttp handler and a real Listener, all on 127.0.0.1 port 0 in the test's loop,
with the app driving the listener exactly as `hooktap listen` does. Nothing is mocked; waits
are on conditions, never on sleeps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from textual.pilot import Pilot

from hooktap.listen.listener import Listener
from hooktap.pivotal import catalog
from hooktap.pivotal.signing import signed_headers
from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from support.servers import Handler

SIZE = (140, 44)


async def wait_until(
    pilot: Pilot[None], condition: Callable[[], object], timeout: float = 10, what: str = ""
) -> None:
    """Let the app run until `condition()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


def screen_text(app: HooktapApp) -> str:
    """What the terminal shows, as plain text (for asserting on words, not layout)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@dataclass
class Session:
    relay_url: str
    handler: Handler
    store: Store
    listener: Listener
    secret: str
    http: aiohttp.ClientSession

    @property
    def webhook_url(self) -> str:
        assert self.listener.creds is not None
        return self.listener.creds.webhook_url

    async def send(
        self,
        event_type: str = "customer.updated",
        *,
        body: bytes | None = None,
        msg_id: str | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST a Pivotal delivery to the webhook URL, signed as Svix signs it."""
        if body is None:
            body = catalog.encode(catalog.sample(event_type))
        if headers is None:
            headers = signed_headers(
                secret or self.secret, body, msg_id=msg_id, timestamp=timestamp
            )
        async with self.http.post(self.webhook_url, data=body, headers=headers) as resp:
            await resp.read()
            return resp


@contextlib.asynccontextmanager
async def live_app(
    session: Session, *, size: tuple[int, int] = SIZE, **options: object
) -> AsyncIterator[Pilot[None]]:
    """The inspector running the session's listener, yielded once it is connected."""
    app = HooktapApp(session.store, session.listener, utc=True, **options)  # type: ignore[arg-type]
    async with app.run_test(size=size) as pilot:
        await wait_until(
            pilot,
            lambda: app.webhook_url and "● connected" in screen_text(app),
            what="the listener to connect",
        )
        try:
            yield pilot
        finally:
            if app.is_running:
                await app.action_quit()


async def rows(pilot: Pilot[None], count: int) -> None:
    app = pilot.app
    assert isinstance(app, HooktapApp)
    await wait_until(
        pilot,
        lambda: (
            len(app.deliveries.rows) >= count
            and all(r.status is not None for r in app.deliveries.rows[:count])
        ),
        what=f"{count} forwarded rows",
    )


async def settle(pilot: Pilot[None]) -> None:
    """Wait until the flush timer and workers have nothing left to apply."""
    app = pilot.app
    await pilot.pause(0.15)
    await wait_until(
        pilot,
        lambda: not any(w.is_running for w in app.workers if w.group not in ("listener", "replay")),
        what="workers to finish",
    )
