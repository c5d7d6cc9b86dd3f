"""`status:filtered` and `status:unrouted` in the filter language, over a real history: the
deliveries routes and --events left out are found by their state, and only they; a status
code or `err` never matches them, since no handler answered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hooktap.cli.history_view import status_text
from hooktap.filters import build_filter, parse_filter
from hooktap.records import Attempt, Delivery
from hooktap.store import Store
from support.history import finish, record


def delivery(id: str, state: str, target: str = "http://localhost:8000/") -> Delivery:
    return Delivery(
        id=id,
        received_at=time.time(),
        method="POST",
        path="",
        query="",
        headers=[("Content-Type", "application/json")],
        body=b'{"type": "task.completed"}',
        target=target if state not in ("filtered", "unrouted") else "",
        event_type="task.completed",
        state=state,
    )


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Store(tmp_path / "history.db") as s:
        for id, state in [
            ("ok", "dispatched"),
            ("boom", "dispatched"),
            ("refused", "dispatched"),
            ("gone", "interrupted"),
            ("left-out", "filtered"),
            ("no-route", "unrouted"),
        ]:
            assert record(s, delivery(id, state))
        for id, status, error in [
            ("ok", 200, None),
            ("boom", 500, None),
            ("refused", None, "connection refused"),
        ]:
            attempt = Attempt(id, "forward", time.time(), "http://localhost:8000/", status=status)
            attempt.error = error
            finish(s, id, attempt)
        yield s


def ids(store: Store, text: str) -> set[str]:
    f = parse_filter(text)
    found = {r.id for r in store.query(f, limit=None)}
    assert store.count(f) == len(found)
    return found


def test_status_filtered_and_unrouted_find_exactly_those(store: Store) -> None:
    assert ids(store, "status:filtered") == {"left-out"}
    assert ids(store, "status:unrouted") == {"no-route"}
    assert ids(store, "status:filtered,unrouted") == {"left-out", "no-route"}
    assert ids(store, "status:filtered status:5xx") == {"left-out", "boom"}
    assert ids(store, "status:FILTERED type:task.*") == {"left-out"}


def test_status_codes_and_err_never_match_what_no_handler_saw(store: Store) -> None:
    assert ids(store, "status:2xx") == {"ok"}
    assert ids(store, "status:err") == {"gone", "refused"}
    assert ids(store, "status:200,4xx,5xx,err") == {"ok", "boom", "gone", "refused"}


def test_left_out_deliveries_are_neither_pending_nor_failed(store: Store) -> None:
    stats = store.stats()
    assert stats["received"] == 6
    assert stats["pending"] == 0
    assert stats["failed"] == 3  # boom, refused, gone


def test_the_options_take_the_states_too_and_a_typo_names_them() -> None:
    assert build_filter(statuses=["filtered,5xx"]).statuses == ("filtered", "5xx")
    with pytest.raises(ValueError) as info:
        parse_filter("status:filterd")
    assert "bad status 'filterd'" in str(info.value)
    assert "filtered or unrouted" in str(info.value)


def test_the_listing_shows_the_state_where_a_status_would_be() -> None:
    assert status_text(None, None, "filtered") == "filtered"
    assert status_text(None, None, "unrouted") == "unrouted"
    assert status_text(None, None, "dispatched") == "pending"
