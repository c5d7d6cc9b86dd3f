"""The slice of history the list holds: a bounded window of rows paged through the store.

A list over 100,000 deliveries must never hold 100,000 rows (toolong and harlequin learned
that widget-per-row and table-of-everything both stall), so the list keeps at most MAX_ROWS
around the cursor. It pages with keyset cursors (received_at, seq), which stay correct while
new deliveries arrive at the head, where an OFFSET would shift under the reader. Pure: the
app asks the store for the pages this class says it needs, and hands them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from hooktap.records import Attempt
from hooktap.store import Summary

PAGE = 100
MAX_ROWS = 600


@dataclass
class RowWindow:
    rows: list[Summary] = field(default_factory=list)
    at_head: bool = True  # rows[0] is the newest delivery that matches
    at_tail: bool = True  # rows[-1] is the oldest one

    def index_of(self, delivery_id: str) -> int | None:
        for i, row in enumerate(self.rows):
            if row.id == delivery_id:
                return i
        return None

    # --- what to fetch ---------------------------------------------------------------------

    def wants_older(self, last_visible: int) -> tuple[float, int] | None:
        """The keyset cursor to page older from, when the view nears the window's end."""
        if self.at_tail or not self.rows or last_visible < len(self.rows) - PAGE // 2:
            return None
        return self.rows[-1].cursor

    def wants_newer(self, first_visible: int) -> tuple[float, int] | None:
        if self.at_head or not self.rows or first_visible > PAGE // 2:
            return None
        return self.rows[0].cursor

    # --- taking pages ----------------------------------------------------------------------

    def reset(self, rows: list[Summary], limit: int, *, at_head: bool = True) -> None:
        """A fresh window: the newest page (at_head) or the oldest page (at_head False)."""
        self.rows = list(rows)
        if at_head:
            self.at_head, self.at_tail = True, len(rows) < limit
        else:
            self.at_head, self.at_tail = len(rows) < limit, True

    def add_older(self, cursor: tuple[float, int], page: list[Summary], limit: int) -> int:
        """Append a page fetched with before=cursor; returns how many rows fell off the top."""
        if not self.rows or self.rows[-1].cursor != cursor:
            return 0  # the window moved on since this page was asked for
        self.rows.extend(page)
        self.at_tail = len(page) < limit
        dropped = max(0, len(self.rows) - MAX_ROWS)
        if dropped:
            del self.rows[:dropped]
            self.at_head = False
        return dropped

    def add_newer(self, cursor: tuple[float, int], page: list[Summary], limit: int) -> int:
        """Prepend a page fetched oldest-first after cursor; returns how many rows it added."""
        if not self.rows or self.rows[0].cursor != cursor:
            return 0
        self.rows[:0] = reversed(page)
        self.at_head = len(page) < limit
        extra = len(self.rows) - MAX_ROWS
        if extra > 0:
            del self.rows[-extra:]
            self.at_tail = False
        return len(page)

    # --- live updates ----------------------------------------------------------------------

    def patch(self, forwarded: Iterable[Attempt]) -> set[str]:
        """Fold forward results into rows already shown; the ids that changed.

        Used while the user reads an older part of the list: the rows stay where they are,
        only their status fills in, so nothing jumps under the cursor.
        """
        by_id = {a.delivery_id: a for a in forwarded}
        changed: set[str] = set()
        for i, row in enumerate(self.rows):
            attempt = by_id.get(row.id)
            if attempt is None or row.status is not None or row.error is not None:
                continue
            self.rows[i] = replace(
                row,
                status=attempt.status,
                duration_ms=attempt.duration_ms,
                error=attempt.error,
                state="done",
                attempts=max(row.attempts, 1),
            )
            changed.add(row.id)
        return changed

    def patch_states(self, states: dict[str, str]) -> set[str]:
        """Give rows the state the listener reported (filtered, unrouted); the ids changed."""
        changed: set[str] = set()
        for i, row in enumerate(self.rows):
            state = states.get(row.id)
            if state is not None and row.state != state:
                self.rows[i] = replace(row, state=state)
                changed.add(row.id)
        return changed

    def refresh(self, fresh: Iterable[Summary]) -> set[str]:
        """Take rows read again from the store in place of the held ones; the ids that changed.

        Another process writes history too (a `hooktap replay` in another terminal adds an
        attempt): the list shows what history says, not what this process last saw."""
        by_id = {row.id: row for row in fresh}
        changed: set[str] = set()
        for i, row in enumerate(self.rows):
            new = by_id.get(row.id)
            if new is not None and new != row:
                self.rows[i] = new
                changed.add(row.id)
        return changed

    def bump_attempts(self, delivery_id: str) -> bool:
        """One more attempt (a replay) on a row, without asking the store for the row again."""
        i = self.index_of(delivery_id)
        if i is None:
            return False
        self.rows[i] = replace(self.rows[i], attempts=self.rows[i].attempts + 1)
        return True
