"""What each column of a delivery list line says: text and colour class per cell. Pure.

The list widget (widgets/delivery_list.py) turns these into segments; keeping the words here
lets a row be checked as data, and keeps the widget about drawing and moving.
"""

from __future__ import annotations

from dataclasses import dataclass

from hooktap.records import Attempt
from hooktap.store import Summary
from hooktap.tui import present

# (text, component class) pieces of one cell; flags has several.
Cells = dict[str, list[tuple[str, str | None]]]

# In a re-send line, "└ re-sent" runs on over these (the row's own values, not the re-send's).
REPLAY_SPANS = frozenset({"svix", "path", "sig"})
# A delivery that went to no handler has no duration: "filtered" runs on over the took column.
NOT_FORWARDED_SPANS = frozenset({"took"})


@dataclass(frozen=True)
class ReplayLine:
    """One re-send shown under its delivery; no bodies, just what a glance needs."""

    started_at: float
    status: int | None
    duration_ms: float
    error: str | None
    note: str

    @classmethod
    def of(cls, attempt: Attempt) -> ReplayLine:
        return cls(
            attempt.started_at, attempt.status, attempt.duration_ms, attempt.error, attempt.note
        )


def not_forwarded(row: Summary) -> bool:
    """Stored and answered, but sent to no handler (filtered, unrouted): drawn dim."""
    return row.state in present.NOT_FORWARDED


def row_cells(row: Summary, when: str) -> Cells:
    """A delivery's line; `when` is its time as the time column has room for."""
    marks = present.Marks.of(row)
    flags: list[tuple[str, str | None]] = []
    if marks.retry:
        flags.append(("retry ", "fail"))
    if marks.duplicate:
        flags.append(("dup ", "flag"))
    if marks.held:
        flags.append(("held ", "flag"))
    if marks.replays:
        flags.append((f"+{marks.replays} re-sent", "replay"))
    status = present.status_text(row.status, row.error, row.state)
    query = f"?{row.query}" if row.query else ""
    return {
        "time": [(when, "time")],
        "type": [(row.event_type or "-", None)],
        "target": [(present.target_text(row.target) or "-", "time")],
        "svix": [(row.svix_id or "-", "time")],
        "path": [(f"{row.method} {row.path or '/'}{query}", "time")],
        "sig": [(row.signature, present.signature_kind(row.signature))],
        "status": [(status, present.status_kind(row.status, row.error, row.state))],
        "took": [(present.duration_text(row.duration_ms), None)],
        "flags": flags,
    }


def replay_cells(line: ReplayLine, when: str) -> Cells:
    """A re-send under its delivery, in the same columns: when, status, took, then how."""
    kind = present.status_kind(line.status, line.error, "done")
    return {
        "time": [(when, "time")],
        "type": [("└ re-sent", "replay")],
        "status": [(present.status_text(line.status, line.error, "done"), kind)],
        "took": [(present.duration_text(line.duration_ms), None)],
        "flags": [(line.note or line.error or "", "replay")],
    }
