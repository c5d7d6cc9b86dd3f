"""Snapshots of the inspector's main screens over a fixed history.

Everything on screen is pinned: delivery ids, times (rendered in UTC), event ids, signatures
(fixed svix ids and timestamps), and the clock the Signature tab measures ages with. Update
with `pytest tests/tui/test_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from tui_helpers import wait_until

from hooktap.pivotal import catalog
from hooktap.pivotal.signing import signed_headers
from hooktap.records import Attempt, Delivery
from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from hooktap.tui.feed import Counts

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
NOW = T0 + 3 * 86400
SIZE = (130, 40)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TARGET = "http://localhost:8000/webhooks/pivotal"


def body_of(event_type: str, n: int) -> bytes:
    when = f"2025-06-15T15:0{n}:00Z"
    doc = catalog.sample(
        event_type, {"id": f"evt_snap{n:02d}", "created_at": when, "data.updated_at": when}
    )
    return catalog.encode(doc)


def add(
    store: Store,
    n: int,
    event_type: str | None,
    *,
    body: bytes | None = None,
    verdict: tuple[str, str] = ("valid", "signature matches the secret"),
    msg_id: str | None = None,
    signed: bool = True,
    status: int | None = 200,
    duration_ms: float = 42.0,
    response: bytes = b'{"received":true}',
    path: str = "/webhooks/pivotal",
) -> Delivery:
    received = T0 + n * 7.25
    body = body_of(event_type, n) if body is None and event_type else body or b""
    headers = [("Host", "relay.hooktap.example"), ("Content-Length", str(len(body)))]
    svix_id = msg_id or f"msg_2snap{n:02d}Qx7NkP4mRt8WbZ"
    if signed:
        headers += signed_headers(SECRET, body, msg_id=svix_id, timestamp=int(received) - 1)
    d = Delivery(
        id=f"dlv_snap{n:02d}",
        received_at=received,
        method="POST",
        path=path,
        query="",
        headers=headers,
        body=body,
        channel="snapchannel",
        target=TARGET,
        signature=verdict[0],
        signature_reason=verdict[1],
        svix_id=svix_id if signed else None,
        event_id=f"evt_snap{n:02d}" if event_type else None,
        event_type=event_type,
        state="dispatched",
    )
    store.add_delivery(d)
    if status is not None:
        store.finish(
            d.id,
            Attempt(
                d.id,
                "forward",
                received + 0.01,
                TARGET + path.removeprefix("/webhooks/pivotal"),
                status=status,
                response_headers=[("Content-Type", "application/json"), ("Server", "uvicorn")],
                response_body=response,
                duration_ms=duration_ms,
            ),
        )
    return d


def fixed_history(path: Path) -> Store:
    store = Store(path)
    add(store, 1, "customer.at_risk")
    add(
        store,
        2,
        "task.completed",
        verdict=("invalid", "no signature matches the secret"),
        status=401,
        duration_ms=3.0,
        response=b"invalid signature",
    )
    retried = add(
        store, 3, "onboarding.delayed", status=500, duration_ms=18.0, response=b"Internal Error"
    )
    edited = retried.body.replace(b'"delayed"', b'"on_track"')
    store.add_attempt(
        Attempt(
            retried.id,
            "replay",
            T0 + 600,
            TARGET,
            status=200,
            request_body=edited,
            response_body=b'{"received":true}',
            duration_ms=21.0,
            note="edited body, re-signed",
        )
    )
    add(store, 4, "onboarding.delayed", body=retried.body, msg_id=retried.svix_id)
    add(
        store,
        5,
        "customer.updated",
        verdict=(
            "expired",
            "timestamp 7 min old, tolerance 5 min; the signature itself matches the secret",
        ),
        duration_ms=12_300.0,
    )
    add(store, 6, None, body=b"ping\n", signed=False, status=204, response=b"", path="/health")
    add(
        store,
        7,
        None,
        body=bytes(range(256))[:48],
        verdict=("no-secret", "signed, but no secret given (--secret or PIVOTAL_WEBHOOK_SECRET)"),
        status=415,
        duration_ms=2.0,
        response=b"unsupported media type",
    )
    add(store, 8, "webhook.ping", status=None)
    return store


@pytest.fixture
def history(tmp_path: Path) -> Store:
    store = fixed_history(tmp_path / "history.db")
    yield store
    store.close()


def make_app(store: Store) -> HooktapApp:
    return HooktapApp(store, utc=True, clock=lambda: NOW)


def select(delivery_id: str, tab: str = "request") -> Callable[[Pilot[None]], Awaitable[None]]:
    """run_before: move the cursor to a delivery and wait until its detail is on screen."""

    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, HooktapApp)
        await wait_until(pilot, lambda: len(app.deliveries.rows) == 8 and app.total == 8)
        while app.deliveries.selected_id != delivery_id:
            await pilot.press("down")
        await pilot.press({"request": "1", "response": "2", "attempts": "3", "signature": "4"}[tab])
        await wait_until(
            pilot,
            lambda: app._detail_data is not None and app._detail_data.delivery.id == delivery_id,
        )
        await wait_until(pilot, lambda: app.deliveries.replays and app.detail_settled)
        await pilot.pause()

    return run


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
        header.show_urls("https://relay.hooktap.example/c/Xq4Lm9TzR2", TARGET)
        header.show_state("disconnected", "relay not reachable (connection refused)", 4.0)
        header.show_counts(Counts(8, 5, 3, 2), "this session")
        header.show_paused(True)
        await pilot.pause()

    assert snap_compare(make_app(history), terminal_size=SIZE, run_before=run)
