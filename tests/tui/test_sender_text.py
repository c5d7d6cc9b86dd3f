"""Text a sender controls (the event type, the path, header values, the svix-id) and route
patterns reach the inspector's labels and notices as plain text: `[/]` or `[bold]` in a
delivery must show as typed, never be read as Textual markup (a MarkupError there took a live
`hooktap listen` session down, for anyone who can post to the webhook URL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from textual.pilot import Pilot
from tui_helpers import Session, live_app, screen_text, settle, wait_until
from yarl import URL

from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.routes import build_routing
from hooktap.pivotal import catalog
from hooktap.pivotal.signing import signed_headers
from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from support.servers import running_handler, running_relay

HOSTILE = ["[/]", "[bold]x", "[link=javascript:x]y[/]"]
SIZE = (200, 50)


@contextlib.asynccontextmanager
async def routed_session(tmp_path: Path, secret: str) -> AsyncIterator[Session]:
    """A live session whose first route's pattern is a glob with a set, `[a-c]ustomer.*`."""
    async with (
        running_relay(tmp_path / "relay") as relay_url,
        running_handler() as handler,
        aiohttp.ClientSession() as http,
    ):
        routing = build_routing(
            [f"[a-c]ustomer.*={handler.url}/hooks", f"{handler.url}/webhooks/pivotal"]
        )
        store = Store(tmp_path / "history.db")
        listener = Listener(
            ListenerConfig(routing=routing, relay_url=relay_url, secret=secret), store
        )
        try:
            yield Session(relay_url, handler, store, listener, secret, http)
        finally:
            await listener.stop()
            store.close()


async def post(session: Session, text: str) -> None:
    """A signed delivery with `text` as its event type, in its path, a header and its svix-id."""
    doc = catalog.sample("customer.updated")
    doc["type"] = text
    body = catalog.encode(doc)
    headers = dict(signed_headers(session.secret, body, msg_id=f"msg_{text}"))
    headers["X-Note"] = text
    # The path as raw bytes on the wire, `[` and `]` unquoted as a sender may send them.
    url = URL(f"{session.webhook_url}/{text}", encoded=True)
    async with session.http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def test_sender_text_and_route_patterns_show_literally(tmp_path: Path, secret: str) -> None:
    async with (
        routed_session(tmp_path, secret) as session,
        live_app(session, size=SIZE) as pilot,
    ):
        app = pilot.app
        assert isinstance(app, HooktapApp)
        # The route's set shows as typed in the header, not read as a style named a-c.
        assert "[a-c]ustomer.*=" in screen_text(app).splitlines()[1]
        for text in HOSTILE:
            await post(session, text)
            await wait_until(
                pilot,
                lambda t=text: any(r.event_type == t for r in app.deliveries.rows),
                what=f"the delivery typed {text!r}",
            )
            await settle(pilot)
            await wait_until(pilot, lambda: app.detail_settled, what="the detail")
            title = screen_text(app)
            assert app.is_running
            assert f"{text} · " in title, title  # the detail title names the type as sent
            await show_request(pilot)
            request = screen_text(app)
            assert "X-Note" in request and text in request.split("X-Note", 1)[1], request
        assert app.is_running
        assert len(session.handler.seen) == len(HOSTILE)


async def show_request(pilot: Pilot[None]) -> None:
    await pilot.press("1")
    await pilot.pause()
