"""The inspector's pure parts: wording, body views, curl, diffs, the row window, the feed."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest

from hooktap.listen.events import (
    ConnectionChanged,
    DeliveryForwarded,
    DeliveryNotForwarded,
    DeliveryReceived,
    Paused,
    TargetHealth,
)
from hooktap.listen.routes import not_forwarded_reason
from hooktap.records import Attempt, Delivery
from hooktap.store import Summary
from hooktap.tui import present
from hooktap.tui.cells import not_forwarded, row_cells
from hooktap.tui.feed import Feed
from hooktap.tui.screens.editor import headers_to_text, json_problem, parse_headers
from hooktap.tui.window import MAX_ROWS, PAGE, RowWindow


def summary(seq: int, **changes: object) -> Summary:
    base = Summary(
        seq=seq,
        id=f"dlv_{seq:06d}",
        received_at=1_700_000_000.0 + seq,
        method="POST",
        path="",
        query="",
        channel="ch",
        target="http://localhost:8000",
        signature="valid",
        signature_reason="",
        svix_id=f"msg_{seq}",
        event_id=None,
        event_type="task.completed",
        event_created_at=None,
        state="done",
        body_size=2,
        status=200,
        duration_ms=5.0,
        error=None,
        attempts=1,
        duplicate=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def delivery(body: bytes = b'{"a":1}', **changes: object) -> Delivery:
    d = Delivery(
        id="dlv_1",
        received_at=1_700_000_000.5,
        method="POST",
        path="/hooks",
        query="x=1",
        headers=[("Host", "relay"), ("svix-id", "msg_1"), ("svix-timestamp", "1700000000")],
        body=body,
    )
    return dataclasses.replace(d, **changes)  # type: ignore[arg-type]


# --- wording --------------------------------------------------------------------------------


def test_times_are_utc_when_asked_and_durations_read_naturally() -> None:
    assert present.clock_text(1_700_000_000.0, utc=True) == "11-14 22:13:20"
    assert present.full_time(1_700_000_000.25, utc=True) == "2023-11-14 22:13:20.250 UTC"
    assert present.duration_text(12.4) == "12 ms"
    assert present.duration_text(12_400) == "12.4 s"
    assert present.duration_text(None) == ""


def test_marks_flag_non_2xx_slow_and_duplicates() -> None:
    assert present.Marks.of(summary(1)) == present.Marks(False, False, 0)
    assert present.Marks.of(summary(1, status=500)).retry
    assert present.Marks.of(summary(1, duration_ms=10_500.0)).retry  # 2xx but too slow
    assert present.Marks.of(summary(1, status=None, error="timed out")).retry
    assert not present.Marks.of(summary(1, status=None, state="dispatched")).retry  # pending
    assert present.Marks.of(summary(1, duplicate=True, attempts=3)) == present.Marks(False, True, 2)


def test_rules_use_pivotals_words_and_skip_pending() -> None:
    d = delivery(signature="expired", signature_reason="timestamp 7 min old, tolerance 5 min")
    slow = Attempt("dlv_1", "forward", 0, "u", status=200, duration_ms=12_000)
    found = present.rules(d, slow, duplicate=True)
    assert found[0].startswith("Pivotal would retry: next attempt in ~5 min")
    assert "took 12.0 s, limit 10 s" in found[0]
    assert found[1].startswith("duplicate svix-id")
    assert found[2] == "signature expired: timestamp 7 min old, tolerance 5 min"
    pending = dataclasses.replace(d, state="dispatched", signature="valid")
    assert present.rules(pending, None, duplicate=False) == []


def test_a_successful_resend_settles_the_rules_about_the_answer() -> None:
    d = delivery(signature="expired", signature_reason="timestamp 7 min old, tolerance 5 min")
    failed = Attempt("dlv_1", "forward", 0, "u", status=500, duration_ms=3)
    fixed = Attempt("dlv_1", "replay", 9, "u", status=200, duration_ms=4)
    still_broken = Attempt("dlv_1", "replay", 8, "u", error="connection refused")
    assert present.settled_by([failed]) is None
    assert present.settled_by([failed, fixed, still_broken]) is None  # the newest one counts
    assert present.settled_by([failed, still_broken, fixed]) is fixed
    assert present.rules(d, failed, False)[0].startswith("Pivotal would retry")
    assert present.rules(d, failed, True, settled=True) == [
        "duplicate svix-id: this message arrived before (a retry or a replay); "
        "the handler must treat it idempotently",
        "signature expired: timestamp 7 min old, tolerance 5 min",
    ]


def test_bodies_show_as_pretty_json_text_or_hex() -> None:
    view = present.body_view(b'{"b":[1,2],"a":"\\u003c"}')
    assert view.kind == "json" and view.text == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "<"\n}'
    assert present.body_view(b"plain\r\ntext").text == "plain\ntext"
    assert present.body_view(b"{not json").kind == "text"
    binary = present.body_view(bytes(range(20)) + b"\xff")
    assert binary.kind == "hex"
    assert binary.text.startswith("00000000  00 01 02 03")
    assert present.body_view(b"").kind == "empty"
    big = present.body_view(b"x" * (present.SHOW_LIMIT + 10))
    assert big.kind == "text" and len(big.text) == present.SHOW_LIMIT and "first" in big.note


def test_attempt_diff_shows_status_and_body_changes() -> None:
    d = delivery(b'{"a":1}')
    first = Attempt("dlv_1", "forward", 0, "u", status=500, response_body=b"boom")
    same = Attempt("dlv_1", "replay", 1, "u", status=500, response_body=b"boom")
    assert present.attempt_diff(d, first, same) == []
    edited = Attempt(
        "dlv_1", "replay", 2, "u", status=200, request_body=b'{"a":2}', response_body=b"ok"
    )
    diff = present.attempt_diff(d, first, edited)
    assert diff[:3] == ["status", "-500", "+200"]
    assert "request body" in diff and '-  "a": 1' in diff and '+  "a": 2' in diff
    assert "response body" in diff and "-boom" in diff and "+ok" in diff


def test_signature_facts_say_when_it_was_signed() -> None:
    facts = dict(present.signature_facts(delivery(signature="valid", signature_reason="ok")))
    assert facts["svix-id"] == "msg_1"
    assert facts["svix-signature"] == "(absent)"
    assert facts["signed"] == "0.5 s before the relay received it"


def test_curl_command_round_trips_through_a_shell() -> None:
    body = b'{"name":"O\'Brien & <co>"}'
    headers = [("Host", "x"), ("Content-Length", "9"), ("svix-id", "msg_'1"), ("X-A", "b")]
    command = present.curl_command("http://localhost:8000/hooks?x=1", "POST", headers, body)
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:6] == [
        "curl",
        "-sS",
        "--globoff",
        "-X",
        "POST",
        "http://localhost:8000/hooks?x=1",
    ]
    assert words[6:8] == ["-H", "svix-id: msg_'1"]
    assert "Host: x" not in words and "Content-Length: 9" not in words
    assert words[-1] == body.decode()


def test_curl_command_carries_binary_bodies_as_base64() -> None:
    command = present.curl_command("http://h/", "POST", [], b"\x00\xff")
    assert command.startswith("printf %s AP8= | base64 -d |")
    assert command.endswith("--data-binary @-")


def test_clipboard_body_is_text_or_base64() -> None:
    assert present.body_for_clipboard(b"hi")[0] == "hi"
    assert present.body_for_clipboard(b"\xff") == ("/w==", "binary body, copied as base64")


# --- the editor's parsing -------------------------------------------------------------------


def test_headers_text_round_trips_and_bad_lines_are_named() -> None:
    headers = [("Content-Type", "application/json"), ("svix-id", "msg_1")]
    assert parse_headers(headers_to_text(headers) + "\n\n") == headers
    with pytest.raises(ValueError, match="line 2"):
        parse_headers("A: b\nno colon here")
    with pytest.raises(ValueError, match="Latin-1"):
        parse_headers("A: ☃")


def test_json_problem_points_at_the_error() -> None:
    assert json_problem('{"a": 1}') is None
    assert json_problem('{\n"a": 1,\n}') == (
        "invalid JSON at line 3, column 1: Expecting property name enclosed in double quotes"
    )


# --- the window -----------------------------------------------------------------------------


def test_window_pages_older_and_drops_rows_far_above() -> None:
    window = RowWindow()
    total = 2000
    window.reset([summary(total - i) for i in range(PAGE)], PAGE)
    assert window.at_head and not window.at_tail
    assert window.wants_older(10) is None
    while len(window.rows) < MAX_ROWS + PAGE:
        cursor = window.wants_older(len(window.rows) - 1)
        assert cursor == window.rows[-1].cursor
        last = window.rows[-1].seq
        dropped = window.add_older(cursor, [summary(last - 1 - i) for i in range(PAGE)], PAGE)
        if dropped:
            break
    assert len(window.rows) == MAX_ROWS and not window.at_head
    assert window.wants_newer(0) == window.rows[0].cursor
    # A page asked for before the window moved is ignored, not spliced in the wrong place.
    assert window.add_older((0.0, 0), [summary(1)], PAGE) == 0


def test_window_pages_newer_and_knows_the_head() -> None:
    window = RowWindow()
    window.reset([summary(i) for i in range(50, 0, -1)], PAGE, at_head=False)
    assert window.at_tail and window.at_head  # fewer than a page: the whole history
    window.reset([summary(i) for i in range(200, 100, -1)], PAGE, at_head=False)
    cursor = window.wants_newer(0)
    assert cursor is not None
    added = window.add_newer(cursor, [summary(201), summary(202)], PAGE)
    assert added == 2 and window.rows[0].seq == 202 and window.at_head


def test_window_patch_fills_in_forward_results_only() -> None:
    window = RowWindow()
    window.reset([summary(2, status=None, state="dispatched", attempts=0), summary(1)], PAGE)
    changed = window.patch(
        [
            Attempt("dlv_000002", "forward", 0, "u", status=502, duration_ms=3.0),
            Attempt("dlv_000001", "forward", 0, "u", status=500),
        ]
    )
    assert changed == {"dlv_000002"}
    assert (window.rows[0].status, window.rows[0].state, window.rows[0].attempts) == (
        502,
        "done",
        1,
    )
    assert window.rows[1].status == 200
    assert window.bump_attempts("dlv_000001") and window.rows[1].attempts == 2


# --- the feed -------------------------------------------------------------------------------


def test_window_refresh_takes_what_history_says_now() -> None:
    window = RowWindow()
    window.reset([summary(3), summary(2), summary(1)], PAGE)
    fresh = [summary(2, attempts=6), summary(1), summary(99)]  # 99: not in the window
    assert window.refresh(fresh) == {"dlv_000002"}
    assert [r.attempts for r in window.rows] == [1, 6, 1]


def test_feed_counts_like_store_stats_and_batches() -> None:
    feed = Feed()
    ok = delivery(signature="valid")
    bad = dataclasses.replace(ok, id="dlv_2", signature="expired")
    feed(DeliveryReceived(ok))
    feed(DeliveryReceived(bad))
    feed(DeliveryForwarded(ok, Attempt("dlv_1", "forward", 0, "u", status=204)))
    feed(DeliveryForwarded(bad, Attempt("dlv_2", "forward", 0, "u", error="refused")))
    feed(ConnectionChanged("disconnected", "gone"))
    feed(ConnectionChanged("connected"))
    feed(Paused(True))
    batch = feed.drain()
    assert batch.received == 2 and len(batch.forwarded) == 2
    assert batch.connection is not None and batch.connection.state == "connected"
    assert batch.paused is True
    assert dataclasses.astuple(feed.counts) == (2, 1, 1, 0, 1, 0)  # one expired, none invalid
    assert feed.drain().empty
    assert json.dumps(dataclasses.asdict(feed.counts))


# --- routes and --events ----------------------------------------------------------------------


def test_a_delivery_that_went_to_no_handler_says_why_and_breaks_no_handler_rule() -> None:
    for state in ("filtered", "unrouted"):
        row = summary(1, state=state, status=None, duration_ms=None, target="")
        assert present.status_text(row.status, row.error, row.state) == state
        assert present.status_kind(row.status, row.error, row.state) == "not-forwarded"
        assert present.Marks.of(row) == present.Marks(False, False, 0)  # no retry: it got 200
        assert (not_forwarded_reason(state) or "").startswith(f"{state}: ")
        # No "Pivotal would retry: no response": the listener answered it 200 itself.
        d = delivery(state=state, signature="invalid", signature_reason="no match")
        assert present.rules(d, None, duplicate=False) == ["signature invalid: no match"]
    assert "--events" in (not_forwarded_reason("filtered") or "")
    assert "no fallback" in (not_forwarded_reason("unrouted") or "")
    assert not_forwarded_reason("done") is None
    assert present.target_text("http://localhost:8001/hooks") == "localhost:8001/hooks"
    assert present.target_text("https://hooks.example") == "https://hooks.example"


def test_row_cells_put_the_state_in_the_status_and_the_target_in_its_column() -> None:
    filtered = row_cells(summary(1, state="filtered", status=None, target=""), "12:00:00")
    assert filtered["status"] == [("filtered", "not-forwarded")]
    assert filtered["target"] == [("-", "time")]
    routed = row_cells(summary(2, target="http://127.0.0.1:8001/hooks"), "12:00:00")
    assert routed["target"] == [("127.0.0.1:8001/hooks", "time")]
    assert not not_forwarded(summary(2)) and not_forwarded(summary(3, state="unrouted"))


def test_window_patch_states_marks_rows_shown_already() -> None:
    window = RowWindow()
    window.reset([summary(2, status=None, state="received", attempts=0), summary(1)], PAGE)
    changed = window.patch_states({"dlv_000002": "filtered", "dlv_000099": "unrouted"})
    assert changed == {"dlv_000002"}
    assert [r.state for r in window.rows] == ["filtered", "done"]
    assert window.patch_states({"dlv_000002": "filtered"}) == set()  # no news, no redraw


def test_feed_keeps_not_forwarded_states_and_health_with_what_it_was_before() -> None:
    feed = Feed()
    d = delivery(state="filtered")
    feed(DeliveryReceived(d))
    feed(DeliveryNotForwarded(d, not_forwarded_reason("filtered") or ""))
    feed(TargetHealth("localhost:8000", "up", "localhost:8000 is accepting connections"))
    batch = feed.drain()
    assert batch.not_forwarded == {"dlv_1": "filtered"}
    assert [(h.state, before) for h, before in batch.health] == [("up", None)]
    assert dataclasses.astuple(feed.counts) == (1, 0, 0, 0, 0, 1)  # neither forwarded nor failed
    feed(TargetHealth("localhost:8000", "down", "refused"))
    batch = feed.drain()
    assert not batch.empty
    assert [(h.state, before) for h, before in batch.health] == [("down", "up")]
    assert feed.health == {"localhost:8000": "down"}
