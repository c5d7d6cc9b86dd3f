"""A fixed history for the inspector's snapshot and layout tests.

Everything on screen is pinned: delivery ids, times (rendered in UTC), event ids, signatures
(fixed svix ids and timestamps), and the clock the Signature tab measures ages with.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot
from tui_helpers import wait_until

from hooktap.pivotal.signing import signed_headers
from hooktap.records import Attempt, Delivery
from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from support.history import finish, record

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
NOW = T0 + 3 * 86400
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TARGET = "http://localhost:8000/webhooks/pivotal"


# Fixed bodies in Pivotal's envelope, not catalog samples: a snapshot must not change when
# the catalog's sample data does.
_OBJECTS: dict[str, dict[str, object]] = {
    "customer": {
        "id": "cus_2gT8kP4mQx7N",
        "object": "customer",
        "name": "Northwind Logistics",
        "health_score": 38,
        "lifecycle_stage": "at_risk",
    },
    "task": {
        "id": "tsk_8Qm2Zr5K",
        "object": "task",
        "title": "Schedule the kickoff call",
        "status": "completed",
    },
    "onboarding": {
        "id": "onb_9Ve3xC6tHn4F",
        "object": "onboarding",
        "customer_id": "cus_2gT8kP4mQx7N",
        "name": "Enterprise onboarding",
        "status": "delayed",
        "progress_percent": 35,
        "delay_reason": "Customer's data export blocked on their IT security review.",
    },
    "webhook": {"id": "wh_4Jd9", "object": "webhook", "status": "enabled"},
}


def body_of(event_type: str, n: int) -> bytes:
    when = f"2025-06-15T15:{n:02d}:00Z"
    obj = dict(_OBJECTS[event_type.split(".")[0]], updated_at=when)
    doc = {"id": f"evt_snap{n:02d}", "type": event_type, "created_at": when}
    doc["data"] = {"object": obj}
    return json.dumps(doc, separators=(",", ":")).encode()


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
    state: str = "dispatched",
    target: str = TARGET,
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
        target=target,
        signature=verdict[0],
        signature_reason=verdict[1],
        svix_id=svix_id if signed else None,
        event_id=f"evt_snap{n:02d}" if event_type else None,
        event_type=event_type,
        state=state,
    )
    record(store, d)
    if status is not None:
        finish(
            store,
            d.id,
            Attempt(
                d.id,
                "forward",
                received + 0.01,
                target + path.removeprefix("/webhooks/pivotal"),
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


def make_app(store: Store) -> HooktapApp:
    return HooktapApp(store, utc=True, clock=lambda: NOW)


def select(
    delivery_id: str, tab: str = "request", rows: int = 8
) -> Callable[[Pilot[None]], Awaitable[None]]:
    """run_before: move the cursor to a delivery and wait until its detail is on screen."""

    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, HooktapApp)
        await wait_until(pilot, lambda: len(app.deliveries.rows) == rows and app.total == rows)
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


@contextlib.asynccontextmanager
async def opened(
    store: Store, size: tuple[int, int], delivery_id: str = "dlv_snap03"
) -> AsyncIterator[tuple[HooktapApp, Pilot[None]]]:
    """The inspector over `store` at `size`, with `delivery_id` selected and shown."""
    app = make_app(store)
    async with app.run_test(size=size) as pilot:
        await select(delivery_id)(pilot)
        yield app, pilot
