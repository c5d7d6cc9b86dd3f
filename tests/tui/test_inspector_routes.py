"""The inspector with routes, --events and the handlers' health, in a live session: a real
relay, real handlers on several ports (one of them not listening), a real Listener routing by
event type and probing those ports for its handlers' health."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from rich.segment import Segment
from textual.color import Color
from textual.pilot import Pilot
from tui_helpers import Session, live_app, screen_text, settle, wait_until

from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.routes import build_routing
from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from support.servers import Handler, running_handler, running_relay

SMALL = (80, 24)
WIDE = (120, 40)


def closed_port() -> int:
    """A loopback port nothing listens on (yet): bound, read, released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Routed:
    session: Session
    customers: Handler  # customer.* goes here
    fallback: Handler  # everything else that passes --events
    task_port: int  # task.* goes to this port, where nothing listens at first


@contextlib.asynccontextmanager
async def routed_session(tmp_path: Path, secret: str) -> AsyncIterator[Routed]:
    task_port = closed_port()
    async with (
        running_relay(tmp_path / "relay") as relay_url,
        running_handler() as customers,
        running_handler() as fallback,
        aiohttp.ClientSession() as http,
    ):
        routing = build_routing(
            [
                f"customer.*={customers.url}/hooks",
                f"task.*=127.0.0.1:{task_port}/webhooks/pivotal",
                f"{fallback.url}/webhooks/pivotal",
            ],
            "customer.*,task.*,webhook.*",
        )
        store = Store(tmp_path / "history.db")
        # Its own health probes, every 0.1 s here (15 s in `hooktap listen`).
        config = ListenerConfig(
            routing=routing,
            relay_url=relay_url,
            secret=secret,
            healthcheck=True,
            health_interval=0.1,
        )
        listener = Listener(config, store)
        try:
            yield Routed(
                Session(relay_url, fallback, store, listener, secret, http),
                customers,
                fallback,
                task_port,
            )
        finally:
            await listener.stop()
            store.close()


@contextlib.asynccontextmanager
async def routed_app(
    tmp_path: Path, secret: str, size: tuple[int, int]
) -> AsyncIterator[tuple[Routed, Pilot[None], HooktapApp]]:
    """The inspector running the routed session's listener, once it is connected."""
    async with (
        routed_session(tmp_path, secret) as routed,
        live_app(routed.session, size=size) as pilot,
    ):
        assert isinstance(pilot.app, HooktapApp)
        yield routed, pilot, pilot.app


def header_lines(app: HooktapApp) -> list[str]:
    return screen_text(app).splitlines()[:2]


def row_segments(app: HooktapApp, marker: str) -> list[Segment]:
    """The segments of the list line whose text holds `marker`."""
    lst = app.deliveries
    for y in range(lst.scrollable_content_region.height):
        strip = lst.render_line(y)
        if marker in strip.text:
            return list(strip)
    raise AssertionError(f"no list line with {marker!r}")


@pytest.mark.parametrize("size", [SMALL, WIDE])
async def test_header_names_the_routes_and_a_target_that_is_down_until_it_is_back(
    tmp_path: Path, secret: str, size: tuple[int, int]
) -> None:
    async with routed_app(tmp_path, secret, size) as (routed, pilot, app):
        down = f"127.0.0.1:{routed.task_port}"
        await wait_until(
            pilot, lambda: f"✕ {down} down" in header_lines(app)[1], what="the down mark"
        )
        top, bottom = header_lines(app)
        assert routed.session.webhook_url in top  # the URL is never cut
        # Every route is named, its port at least, however narrow.
        for port in (routed.customers.url, routed.fallback.url, str(routed.task_port)):
            assert f":{port.rsplit(':', 1)[-1]}" in bottom, bottom
        assert "customer.*=" in bottom and "task.*=" in bottom
        health = app.header.query_one("#health")
        assert health.region.right <= size[0]  # whole, on screen
        assert health.rich_style.bold
        # In the theme's colour for errors, as the disconnected state is.
        error = Color.parse(app.theme_variables["text-error"])
        assert health.rich_style.color == error.rich_color
        # The task handler starts: the mark goes, and a notice says it is back.
        async with serve_on(routed.task_port):
            await wait_until(
                pilot, lambda: "down" not in header_lines(app)[1], what="the mark to clear"
            )
            assert not app.header.query_one("#health").display
            await wait_until(
                pilot,
                lambda: any(
                    f"{down} is accepting connections again" in n.message
                    for n in app._notifications
                ),
                what="the notice",
            )


@contextlib.asynccontextmanager
async def serve_on(port: int) -> AsyncIterator[None]:
    """A handler that starts late, on the port a route names."""
    runner = aiohttp.web.AppRunner(aiohttp.web.Application(), shutdown_timeout=0.5)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_a_filtered_delivery_is_dim_says_filtered_and_the_detail_says_why(
    tmp_path: Path, secret: str
) -> None:
    async with routed_app(tmp_path, secret, SMALL) as (routed, pilot, app):
        session = routed.session
        await session.send("customer.updated")
        await session.send("onboarding.delayed")  # outside --events
        await wait_until(
            pilot,
            lambda: [r.state for r in app.deliveries.rows] == ["filtered", "done"],
            what="a filtered row above a forwarded one",
        )
        await settle(pilot)
        filtered = row_segments(app, "onboarding.delayed")
        text = "".join(s.text for s in filtered)
        assert "filtered" in text and "valid" in text
        # The whole line is dim, the status cell included; a forwarded line is not.
        assert all(s.style is not None and s.style.dim for s in filtered), filtered
        forwarded = row_segments(app, "customer.updated")
        assert not any(s.style is not None and s.style.dim for s in forwarded)
        assert len(routed.fallback.seen) == 0  # nothing went to a handler for it
        assert (app.feed.counts.received, app.feed.counts.not_forwarded) == (2, 1)
        # The detail pane (the filtered one is the newest, so selected): why, and no target.
        await wait_until(pilot, lambda: app.detail_settled, what="the detail")
        detail = screen_text(app)
        assert "onboarding.delayed · → filtered" in detail
        assert "filtered: its event type is not in --events" in detail
        # Response tab: no handler was called.
        await pilot.press("2")
        await pilot.pause()
        assert "No handler was called" in screen_text(app)
        # The filter language finds them: status:filtered, typed into `/` as it is.
        await pilot.press("escape", "slash", *"status:filtered", "enter")
        await wait_until(
            pilot,
            lambda: [r.event_type for r in app.deliveries.rows] == ["onboarding.delayed"],
            what="only the filtered delivery",
        )
        assert app.filter.source == "status:filtered"


async def test_each_row_shows_the_route_it_went_to_in_a_column_and_the_detail(
    tmp_path: Path, secret: str
) -> None:
    async with routed_app(tmp_path, secret, WIDE) as (routed, pilot, app):
        session = routed.session
        await session.send("customer.at_risk")
        await session.send("webhook.ping")  # taken by no pattern: the fallback
        await routed.customers.wait_for(1)
        await routed.fallback.wait_for(1)
        await wait_until(
            pilot,
            lambda: [r.status for r in app.deliveries.rows] == [200, 200],
            what="two forwarded rows",
        )
        await settle(pilot)
        customers = routed.customers.url.removeprefix("http://")
        fallback = routed.fallback.url.removeprefix("http://")
        text = screen_text(app)
        titles = next(line for line in text.splitlines() if "event type" in line)
        assert "target" in titles
        row = next(line for line in text.splitlines() if "customer.at_risk" in line)
        assert customers in row
        row = next(line for line in text.splitlines() if "webhook.ping" in line)
        assert fallback in row
        # At 80 columns the column gives way, and the detail's title still says where.
        await pilot.resize_terminal(*SMALL)
        await wait_until(
            pilot, lambda: "target" not in screen_text(app).split("event type")[1][:60]
        )
        await pilot.press("down")
        await wait_until(
            pilot,
            lambda: app.detail_settled and app.deliveries.selected_id is not None,
            what="the detail",
        )
        assert f"customer.at_risk · → {customers}/hooks" in screen_text(app)


async def test_r_re_sends_to_the_route_in_force_and_says_why_not_for_a_filtered_one(
    tmp_path: Path, secret: str
) -> None:
    """As `hooktap replay` does: the listener's routes (today's) decide where a re-send goes,
    not one target for all; one they filter out is not sent, and a notice says why."""
    async with routed_app(tmp_path, secret, WIDE) as (routed, pilot, app):
        await routed.session.send("customer.at_risk")
        await routed.customers.wait_for(1)
        await routed.session.send("onboarding.delayed")
        await wait_until(
            pilot,
            lambda: [r.state for r in app.deliveries.rows] == ["filtered", "done"],
            what="the rows",
        )
        await wait_until(pilot, lambda: app.detail_settled, what="the detail")
        await pilot.press("r")  # the newest: the filtered one
        await wait_until(
            pilot,
            lambda: any(
                "onboarding.delayed is filtered out" in n.message for n in app._notifications
            ),
            what="the notice",
        )
        await pilot.press("down")
        await wait_until(
            pilot,
            lambda: app.detail_settled and app.deliveries.selected_id == app.deliveries.rows[1].id,
            what="the customer delivery's detail",
        )
        await pilot.press("r")
        first, again = await routed.customers.wait_for(2)
        assert again.path_qs == "/hooks" and again.body == first.body
        assert routed.fallback.seen == []  # the filtered one went nowhere
