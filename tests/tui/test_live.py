"""The inspector in a live session: header truth, the list, following, tabs, quitting; with
its listener over the websocket and linked in process to the relay."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from tui_helpers import Session, live_app, rows, screen_text, settle, wait_until

from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.listen.transport.inprocess import InProcessTransport
from hooktap.listen.transport.websocket import WebSocketTransport
from hooktap.replay import replay
from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from hooktap.tui.widgets.list_panel import NewBanner
from support.servers import TRANSPORTS, running_handler


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def app_of(pilot) -> HooktapApp:  # type: ignore[no-untyped-def]
    assert isinstance(pilot.app, HooktapApp)
    return pilot.app


async def test_header_tells_the_truth_about_the_connection(
    session: Session, transport: str
) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        kind = WebSocketTransport if transport == "websocket" else InProcessTransport
        assert isinstance(session.listener.connection, kind)
        text = screen_text(app)
        assert "● connected" in text
        assert session.webhook_url in text
        # The target as typed, without the http:// every local handler has.
        where = session.handler.url.removeprefix("http://")
        assert f"→ {where}/webhooks/pivotal" in text
        await session.send("customer.at_risk")
        await session.send("task.completed", secret="whsec_" + "A" * 32)  # wrong secret
        session.handler.status = 500
        await session.send("customer.churned")
        await rows(pilot, 3)
        await settle(pilot)
        text = screen_text(app)
        assert (
            "this session: received 3 · forwarded 2 · failed 1 · sig:invalid 1 · sig:expired 0"
            in text
        )


@pytest.mark.parametrize("transport", ["websocket"])  # an in-process link has no socket to lose
async def test_header_shows_disconnected_then_connected_again(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        # The socket drops (as on a relay restart); the listener reconnects.
        connection = session.listener.connection
        assert isinstance(connection, WebSocketTransport)
        connection.abort()
        await wait_until(
            pilot, lambda: "✕ disconnected" in screen_text(app), what="disconnected state"
        )
        await wait_until(pilot, lambda: "● connected" in screen_text(app), what="connected again")


async def test_rows_show_type_svix_id_verdict_status_and_rule_flags(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("customer.updated", msg_id="msg_first")
        session.handler.status = 503
        await session.send("task.overdue", msg_id="msg_first")  # same svix-id: a retry
        await rows(pilot, 2)
        await settle(pilot)
        newest, oldest = app.deliveries.rows[:2]
        assert (newest.event_type, newest.status, newest.duplicate) == ("task.overdue", 503, True)
        assert (oldest.event_type, oldest.status, oldest.duplicate) == (
            "customer.updated",
            200,
            False,
        )
        lines = [line for line in screen_text(app).splitlines() if "msg_first" in line]
        assert "task.overdue" in lines[0] and "valid" in lines[0] and "503" in lines[0]
        assert "retry" in lines[0] and "dup" in lines[0]
        assert "retry" not in lines[1] and "dup" not in lines[1]
        # The detail says which rules broke, in the log lines' words.
        await wait_until(pilot, lambda: "Pivotal would retry" in screen_text(app))
        text = screen_text(app)
        assert "duplicate svix-id" in text


async def test_new_rows_follow_until_the_user_moves_then_count(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        for _ in range(3):
            await session.send("task.created")
        await rows(pilot, 3)
        lst = app.deliveries
        assert lst.following and lst.cursor == 0
        await pilot.press("down")
        assert not lst.following
        # Not "paused": that word is p's, which holds deliveries at the relay.
        await wait_until(pilot, lambda: "staying on this row" in screen_text(app))
        assert "paused" not in screen_text(app)
        selected = lst.selected_id
        await session.send("task.completed")
        await session.send("task.completed")
        banner = app.query_one(NewBanner)
        await wait_until(pilot, lambda: banner.display and "2 new" in str(banner.render()))
        assert lst.selected_id == selected and len(lst.rows) == 3
        await pilot.press("f")
        await wait_until(pilot, lambda: len(lst.rows) == 5 and lst.following)
        assert lst.cursor == 0 and lst.rows[0].event_type == "task.completed"
        assert not banner.display


async def test_number_keys_switch_detail_tabs(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        session.handler.reply = b'{"ok":true}'
        await session.send("contact.created")
        await rows(pilot, 1)
        await wait_until(pilot, lambda: app._detail_data is not None)
        await pilot.press("2")
        assert app.detail.active_tab == "response"
        await wait_until(pilot, lambda: "200 OK" in screen_text(app))
        assert "X-Handler" in screen_text(app)
        await pilot.press("3")
        assert app.detail.active_tab == "attempts"
        assert "#1  original forward" in screen_text(app)
        await pilot.press("4")
        assert "signature matches the secret" in screen_text(app)
        await pilot.press("1")
        assert '"type": "contact.created"' in screen_text(app)


async def test_q_quits_and_stops_the_listener(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, what="the app to exit")
    assert session.listener._stopping.is_set()
    assert session.listener.connection is None


async def test_ctrl_c_quits_too(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: not app.is_running, what="the app to exit")
    assert session.listener._stopping.is_set()


async def test_resends_from_another_terminal_show_up_as_history_has_them(session: Session) -> None:
    """`hooktap replay` in another terminal writes the same history file: the live list
    counts those attempts too, under the row and in the open Attempts tab."""
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("customer.churned")
        await session.send("task.completed")
        await rows(pilot, 2)
        await settle(pilot)
        await pilot.press("down", "3")  # the older row, its Attempts tab
        lst = app.deliveries
        chosen = lst.rows[1].id
        await wait_until(pilot, lambda: lst.selected_id == chosen and app.detail_settled)
        other = Store(session.store.path)  # another process's connection to the same file
        try:
            for _ in range(5):
                attempt = await replay(other, chosen, secret=session.secret)
                assert attempt.status == 200
        finally:
            other.close()
        await session.handler.wait_for(7)
        await wait_until(
            pilot, lambda: "+5 re-sent" in screen_text(app), what="the re-sends from elsewhere"
        )
        assert lst.rows[1].attempts == 6 and lst.rows[0].attempts == 1
        await wait_until(pilot, lambda: screen_text(app).count("└ re-sent") == 5)
        await wait_until(pilot, lambda: "#6  replay" in screen_text(app))


async def test_paused_header_counts_what_waits_at_the_embedded_relay(
    tmp_path: Path, secret: str
) -> None:
    """`hooktap listen` without --relay: the relay is this process's own, so the header says
    how many deliveries wait while paused, and they all arrive on resume."""
    async with running_handler() as handler, aiohttp.ClientSession() as http:
        store = Store(tmp_path / "history.db")
        target = parse_target(handler.url + "/webhooks/pivotal")
        listener = Listener(ListenerConfig(target=target, port=0, secret=secret), store)
        session = Session("", handler, store, listener, secret, http)
        try:
            async with live_app(session) as pilot:
                app = app_of(pilot)
                await pilot.press("p")
                await wait_until(pilot, lambda: "‖ paused · 0 waiting" in screen_text(app))
                for kind in ("task.created", "task.updated", "task.completed"):
                    assert (await session.send(kind)).status == 202  # queued at the relay
                await wait_until(
                    pilot, lambda: "‖ paused · 3 waiting at the relay" in screen_text(app)
                )
                assert handler.seen == []
                await pilot.press("p")
                await handler.wait_for(3)
                await rows(pilot, 3)
                await wait_until(pilot, lambda: "‖ paused" not in screen_text(app))
        finally:
            await listener.stop()
            store.close()
