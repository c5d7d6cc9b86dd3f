"""Snapshots of the inspector's main screens over a fixed history.

The history is tests/tui/history.py, pinned to the character. Update with
`pytest tests/tui/test_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

from history import TARGET, add, make_app, select
from textual.pilot import Pilot
from textual.widgets import Input, TextArea
from tui_helpers import wait_until

from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from hooktap.tui.feed import Counts
from hooktap.tui.widgets.header import route_forms

SIZE = (130, 40)


def test_list_with_request_tab(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=select("dlv_snap03"))


def test_response_tab_of_a_failed_forward(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(history), terminal_size=SIZE, run_before=select("dlv_snap03", "response")
    )


def test_attempts_tab_with_a_diff(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(history), terminal_size=SIZE, run_before=select("dlv_snap03", "attempts")
    )


def test_signature_tab_of_an_expired_delivery(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        make_app(history), terminal_size=SIZE, run_before=select("dlv_snap05", "signature")
    )


def test_binary_body_as_hex(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=select("dlv_snap07"))


def test_editor(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot: Pilot[None]) -> None:
        await select("dlv_snap01")(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: pilot.app.screen.id != "_default")
        for area in pilot.app.screen.query(TextArea):
            area.cursor_blink = False  # a blinking cursor is on or off by the clock
        await pilot.pause()

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run)


def test_help(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot: Pilot[None]) -> None:
        await select("dlv_snap08")(pilot)
        await pilot.press("question_mark")

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run)


def test_filter_box_flags_a_bad_token(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot: Pilot[None]) -> None:
        await select("dlv_snap08")(pilot)
        await pilot.press("slash")
        await wait_until(pilot, lambda: bool(pilot.app.screen.query(Input)))
        await pilot.press(*"type:customer.* status:5xy")

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run)


def test_filtered_list(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, HooktapApp)
        await select("dlv_snap08")(pilot)
        await pilot.press("slash", *"type:onboarding.* status:5xx", "enter")
        await wait_until(pilot, lambda: len(app.deliveries.rows) == 1 and app.total == 1)
        await wait_until(pilot, lambda: app.detail_settled)
        await pilot.pause()

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run)


def test_live_header_paused_and_reconnecting(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    """The header as a live session shows it (states set directly: no clock, no real URL)."""

    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, HooktapApp)
        await select("dlv_snap08")(pilot)
        header = app.header
        header.show_url("https://relay.hooktap.example/c/Xq4Lm9TzR2")
        header.show_routes(route_forms([(None, TARGET)]))
        header.show_state("disconnected", "relay not reachable (connection refused)", 4.0)
        header.show_counts(Counts(8, 5, 3, 2), "this session")
        header.show_paused(True)
        await pilot.pause()

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run)


# --- 80x24 and 200x50 -----------------------------------------------------------------------

SMALL = (80, 24)
LARGE = (200, 50)
LOOPBACK_URL = "http://127.0.0.1:8787/c/ks5jc2j4bvowutghlzfzqzvabe4awner"  # a real one's length


def test_80x24_list_and_request_tab(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    """Titles on one line; time, type, verdict, status, took and flags in every row."""
    assert snap_compare(make_app(history), terminal_size=SMALL, run_before=select("dlv_snap03"))


def test_80x24_live_header_paused(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    """A 56-character webhook URL, the whole target, paused with a count, counts that fit."""

    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, HooktapApp)
        await select("dlv_snap03", "attempts")(pilot)
        header = app.header
        header.show_url(LOOPBACK_URL)
        header.show_routes(route_forms([(None, TARGET)]))
        header.show_state("connected")
        header.show_counts(Counts(8, 4, 3, 1, 1), "this session")
        header.show_paused(True, 3)
        await pilot.pause()

    assert snap_compare(make_app(history), terminal_size=SMALL, run_before=run)


def test_80x24_full_detail(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    """z: the detail on the whole screen, headers and body, scrolled a page."""

    async def run(pilot: Pilot[None]) -> None:
        await select("dlv_snap03")(pilot)
        await pilot.press("z", "pagedown")
        await pilot.pause()

    assert snap_compare(make_app(history), terminal_size=SMALL, run_before=run)


def test_200x50_wide_columns(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    """Whole svix-ids, the date, and the request path: the room is used."""
    assert snap_compare(make_app(history), terminal_size=LARGE, run_before=select("dlv_snap03"))


# --- routes, --events and a handler down --------------------------------------------------

ROUTES = [
    ("customer.*", "http://localhost:8001/hooks"),
    ("task.*", "http://localhost:8002/webhooks/pivotal"),
    (None, TARGET),
]


def routed_history(store: Store) -> Store:
    """The fixed history and two more: one --events filtered, one the customer route took."""
    add(store, 9, "onboarding.delayed", status=None, state="filtered", target="")
    add(store, 10, "customer.updated", target="http://localhost:8001/hooks", path="")
    return store


def routes_scene(pilot_app: HooktapApp) -> None:
    header = pilot_app.header
    header.show_url(LOOPBACK_URL)
    header.show_state("connected")
    header.show_routes(route_forms(ROUTES, ["customer.*", "task.*", "webhook.*"]))
    header.show_health(["localhost:8002"])
    header.show_counts(Counts(10, 6, 3, 1, 1), "this session")
    pilot_app.deliveries.show_targets(True)


def test_80x24_routes_a_handler_down_and_a_filtered_row(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    """The down mark whole, the routes as short as it takes; the filtered row dim, the detail
    saying why it went to no handler."""

    async def run(pilot: Pilot[None]) -> None:
        assert isinstance(pilot.app, HooktapApp)
        await select("dlv_snap09", rows=10)(pilot)
        routes_scene(pilot.app)
        await pilot.pause()

    assert snap_compare(make_app(routed_history(history)), terminal_size=SMALL, run_before=run)


def test_200x50_routes_with_the_target_column(snap_compare, history: Store) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot: Pilot[None]) -> None:
        assert isinstance(pilot.app, HooktapApp)
        await select("dlv_snap10", rows=10)(pilot)
        routes_scene(pilot.app)
        await pilot.pause()

    assert snap_compare(make_app(routed_history(history)), terminal_size=LARGE, run_before=run)
