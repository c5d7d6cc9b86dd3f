"""The live list of deliveries: a Line API widget over a bounded window of store rows.

Why not a DataTable: it keeps every row it was given and can only append, while this list
must insert at the top 10 times a second, drop rows it scrolled past, and show replays as
lines under their delivery. Rendering only the lines on screen keeps a 500/s feed cheap.

Following: while the cursor sits on the newest row, new deliveries push in above it and the
cursor stays on the newest (the app re-reads the head). Any move away stops that, so the row
being read never jumps; the panel then counts what arrived, and `f` (or Home) follows again.
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from hooktap.records import Attempt
from hooktap.store import Summary
from hooktap.tui import present
from hooktap.tui.cells import (
    NOT_FORWARDED_SPANS,
    REPLAY_SPANS,
    Cells,
    ReplayLine,
    not_forwarded,
    replay_cells,
    row_cells,
)
from hooktap.tui.columns import GAP, SHORT_TIME, Layout, fit, layout
from hooktap.tui.window import RowWindow


class DeliveryList(ScrollView, can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "delivery-list--cursor",
        "delivery-list--time",
        "delivery-list--ok",
        "delivery-list--fail",
        "delivery-list--pending",
        "delivery-list--other",
        "delivery-list--flag",
        "delivery-list--replay",
        "delivery-list--not-forwarded",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("pagedown,ctrl+d", "page_down", "Page down", show=False),
        Binding("pageup,ctrl+u", "page_up", "Page up", show=False),
        Binding("home,g", "newest", "Newest (follow)", show=False),
        Binding("end,G", "oldest", "Oldest", show=False),
        Binding("enter", "choose", "Open detail", show=False),
    ]

    class Highlighted(Message):
        """The cursor is on another delivery (None: the list is empty)."""

        def __init__(self, delivery_id: str | None) -> None:
            super().__init__()
            self.delivery_id = delivery_id

    class WantRows(Message):
        """Page `direction` ("older"/"newer") from this keyset cursor, please."""

        def __init__(self, direction: str, cursor: tuple[float, int]) -> None:
            super().__init__()
            self.direction = direction
            self.cursor = cursor

    class WantEnd(Message):
        """Start over from the newest ("head", following) or the oldest ("tail") page."""

        def __init__(self, end: str) -> None:
            super().__init__()
            self.end = end

    class FollowChanged(Message):
        def __init__(self, following: bool) -> None:
            super().__init__()
            self.following = following

    class ColumnsChanged(Message):
        """The width changed and so did the columns (the panel redraws their titles)."""

        def __init__(self, columns: Layout) -> None:
            super().__init__()
            self.columns = columns

    class Chosen(Message):
        """Enter or a double click: look closer (optionally at one tab)."""

        def __init__(self, delivery_id: str, tab: str | None = None) -> None:
            super().__init__()
            self.delivery_id = delivery_id
            self.tab = tab

    def __init__(self, *, utc: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.utc = utc
        self.window = RowWindow()
        self.cursor = 0
        self.following = True
        self.replays: dict[str, tuple[int, list[ReplayLine]]] = {}
        self._lines: list[tuple[int, int]] = []  # (row index, replay index or -1)
        self._row_line: list[int] = []
        self._cache: LRUCache[tuple[object, ...], Strip] = LRUCache(2048)
        self._last_highlight: str | None = None
        self._columns: tuple[int, Layout] | None = None  # (width, its layout)
        self._paints: dict[tuple[str | None, bool, bool], Style] = {}
        self._targets = False  # a target column, when routes send deliveries to several

    # --- what the app reads ----------------------------------------------------------------

    @property
    def rows(self) -> list[Summary]:
        return self.window.rows

    @property
    def selected(self) -> Summary | None:
        rows = self.window.rows
        return rows[self.cursor] if 0 <= self.cursor < len(rows) else None

    @property
    def selected_id(self) -> str | None:
        row = self.selected
        return row.id if row else None

    # --- what the app gives ----------------------------------------------------------------

    def show_rows(
        self, rows: list[Summary], limit: int, *, at_head: bool = True, cursor_last: bool = False
    ) -> None:
        """Replace the window; the cursor keeps its delivery if it is still there."""
        keep = None if self.following else self.selected_id
        self.window.reset(rows, limit, at_head=at_head)
        if cursor_last:
            self.cursor = max(0, len(rows) - 1)
        elif keep is not None and (i := self.window.index_of(keep)) is not None:
            self.cursor = i
        else:
            self.cursor = 0
        self._rebuild()
        if self.following:
            self.scroll_to(y=0, animate=False, immediate=True)
        else:
            self._scroll_to_cursor()
        self._announce()

    def show_older(self, cursor: tuple[float, int], page: list[Summary], limit: int) -> None:
        if self.following:
            return  # a page asked for before `f`/Home; the head reload replaces the window
        before = len(self._lines)
        dropped = self.window.add_older(cursor, page, limit)
        if dropped:
            lost_lines = self._row_line[dropped] if dropped < len(self._row_line) else before
            self.cursor = max(0, self.cursor - dropped)
            self._rebuild()
            self.scroll_to(y=max(0, self.scroll_y - lost_lines), animate=False, immediate=True)
        else:
            self._rebuild()

    def show_newer(self, cursor: tuple[float, int], page: list[Summary], limit: int) -> None:
        if self.following:
            return
        added = self.window.add_newer(cursor, page, limit)
        if not added:
            return
        self.cursor = min(self.cursor + added, len(self.window.rows) - 1)
        before = len(self._lines)
        self._rebuild()
        grown = len(self._lines) - before
        self.scroll_to(y=self.scroll_y + max(0, grown), animate=False, immediate=True)

    def patch(self, forwarded: list[Attempt], states: dict[str, str]) -> None:
        """Finished forwards, and deliveries that went to no handler (id: its state)."""
        changed = self.window.patch(forwarded) | self.window.patch_states(states)
        if changed:
            self.refresh()

    def show_targets(self, shown: bool) -> None:
        """With routes, where each delivery went is worth a column when there is room."""
        if shown != self._targets:
            self._targets = shown
            self._columns = None
            self.refresh()

    def show_replays(self, delivery_id: str, attempts: list[Attempt]) -> None:
        lines = [ReplayLine.of(a) for a in attempts if a.kind != "forward"]
        row = self.window.index_of(delivery_id)
        count = self.window.rows[row].attempts if row is not None else len(attempts)
        self.replays[delivery_id] = (count, lines)
        self._cache.clear()
        self._rebuild()

    def replays_missing(self) -> list[str]:
        """Rows with re-sends whose lines are not loaded (or are out of date)."""
        return [
            row.id
            for row in self.window.rows
            if row.attempts > 1 and self.replays.get(row.id, (0, []))[0] != row.attempts
        ]

    def visible_rows(self) -> list[Summary]:
        """The rows on screen, newest first (re-send lines count as their delivery)."""
        top = int(self.scroll_y)
        seen = self._lines[top : top + self.scrollable_content_region.height]
        return self.window.rows[seen[0][0] : seen[-1][0] + 1] if seen else []

    def refresh_rows(self, fresh: list[Summary]) -> set[str]:
        """Rows read again from the store; the ids whose row changed are redrawn."""
        changed = self.window.refresh(fresh)
        if changed:
            self._rebuild()
        return changed

    def bump_attempts(self, delivery_id: str) -> None:
        if self.window.bump_attempts(delivery_id):
            self.refresh()

    def follow(self) -> None:
        """Back to the newest row and keep following; the app reloads the head."""
        changed = not self.following
        self.following = True
        self.cursor = 0
        self.scroll_to(y=0, animate=False, immediate=True)
        if changed:
            self.post_message(self.FollowChanged(True))
        self.post_message(self.WantEnd("head"))

    # --- lines -----------------------------------------------------------------------------

    def _rebuild(self) -> None:
        lines: list[tuple[int, int]] = []
        row_line: list[int] = []
        for i, row in enumerate(self.window.rows):
            row_line.append(len(lines))
            lines.append((i, -1))
            if row.attempts > 1 and row.id in self.replays:
                lines.extend((i, j) for j in range(len(self.replays[row.id][1])))
        self._lines, self._row_line = lines, row_line
        self.virtual_size = Size(0, len(lines))  # no horizontal scrolling: rows are cut to fit
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()
        self._paints.clear()

    def _layout(self) -> Layout:
        """The columns for the width the list has now; the panel's titles follow them."""
        width = self.scrollable_content_region.width
        if self._columns is None or self._columns[0] != width:
            self._columns = (width, layout(width, targets=self._targets))
            self._cache.clear()
            self.post_message(self.ColumnsChanged(self._columns[1]))
        return self._columns[1]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        index = y + self.scroll_offset.y
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        columns = self._layout()
        row_index, replay_index = self._lines[index]
        row = self.window.rows[row_index]
        key = (row, replay_index, row_index == self.cursor, width, self.utc)
        strip = self._cache.get(key)
        if strip is None:
            cursor = row_index == self.cursor
            date = columns.width_of("time") >= SHORT_TIME
            dim = False
            if replay_index >= 0:
                line = self.replays[row.id][1][replay_index]
                cells = replay_cells(line, self._time(line.started_at, date))
                spans = REPLAY_SPANS
            else:
                cells = row_cells(row, self._time(row.received_at, date))
                dim = not_forwarded(row)
                spans = NOT_FORWARDED_SPANS if dim else frozenset()
            segments = self._segments(columns, cells, cursor, spans=spans, dim=dim)
            strip = Strip(segments).crop_extend(0, width, self._paint(None, cursor, dim))
            self._cache[key] = strip
        return strip

    def _paint(self, name: str | None, cursor: bool, dim: bool = False) -> Style:
        """The style of a cell: the list's, the cursor's, the column's, then dim for a row
        that went to no handler (cached: asking Textual for a component style costs more
        than drawing the cell)."""
        style = self._paints.get((name, cursor, dim))
        if style is None:
            style = self.rich_style
            if cursor:
                style += self.get_component_rich_style("delivery-list--cursor", partial=True)
            if name:
                style += self.get_component_rich_style(f"delivery-list--{name}", partial=True)
            if dim:
                style += self.get_component_rich_style("delivery-list--not-forwarded", partial=True)
            self._paints[(name, cursor, dim)] = style
        return style

    def _time(self, ts: float, date: bool) -> str:
        return present.clock_text(ts, self.utc, date=date)

    def _segments(
        self,
        columns: Layout,
        cells: Cells,
        cursor: bool,
        *,
        spans: frozenset[str],
        dim: bool,
    ) -> list[Segment]:
        """Segments straight from the cells: Text.render() costs ~10x more per row, and at
        500 deliveries a second every visible row is new on every flush.

        A cell runs on over the columns in `spans` that follow it (the "└ re-sent" of a
        re-send line over the row's own svix-id and verdict; "filtered" over took)."""
        segments: list[Segment] = []
        pending_gap = ""
        shown = columns.columns
        i = 0
        while i < len(shown):
            column = shown[i]
            width = column.width
            while i + 1 < len(shown) and shown[i + 1].name in spans:
                i += 1
                width += GAP + shown[i].width
            i += 1
            if pending_gap:
                segments.append(Segment(pending_gap, self._paint(None, cursor, dim)))
            pending_gap = " " * (GAP + (i < len(shown) and shown[i].name == "flags"))
            pieces = cells.get(column.name, [])
            if len(pieces) == 1:
                text, name = pieces[0]
                paint = self._paint(name, cursor, dim)
                segments.append(Segment(fit(text, width, column.right), paint))
                continue
            room = width
            for text, name in pieces:
                text = text[:room]
                room -= len(text)
                segments.append(Segment(text, self._paint(name, cursor, dim)))
            segments.append(Segment(" " * room, self._paint(None, cursor, dim)))
        return segments

    # --- moving ----------------------------------------------------------------------------

    def _announce(self) -> None:
        selected = self.selected_id
        if selected != self._last_highlight:
            self._last_highlight = selected
            self.post_message(self.Highlighted(selected))

    def _unfollow(self) -> None:
        if self.following:
            self.following = False
            self.post_message(self.FollowChanged(False))

    def _scroll_to_cursor(self) -> None:
        if not self._row_line:
            return
        top = self._row_line[self.cursor]
        bottom = (
            self._row_line[self.cursor + 1] - 1
            if self.cursor + 1 < len(self._row_line)
            else len(self._lines) - 1
        )
        height = max(1, self.scrollable_content_region.height)
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False, immediate=True)
        elif bottom >= self.scroll_y + height:
            self.scroll_to(y=bottom - height + 1, animate=False, immediate=True)

    def move_to(self, index: int) -> None:
        rows = self.window.rows
        if not rows:
            return
        index = max(0, min(index, len(rows) - 1))
        if index != 0 or not self.window.at_head:
            self._unfollow()
        old, self.cursor = self.cursor, index
        self._scroll_to_cursor()
        if old != index:
            self.refresh()
        self._announce()
        self._want_more()

    def _want_more(self) -> None:
        older = self.window.wants_older(self.cursor)
        if older is not None:
            self.post_message(self.WantRows("older", older))
        newer = self.window.wants_newer(self.cursor)
        if newer is not None:
            self.post_message(self.WantRows("newer", newer))

    def action_cursor_down(self) -> None:
        self.move_to(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self.move_to(self.cursor - 1)

    def action_page_down(self) -> None:
        self.move_to(self.cursor + max(1, self.scrollable_content_region.height - 1))

    def action_page_up(self) -> None:
        self.move_to(self.cursor - max(1, self.scrollable_content_region.height - 1))

    def action_newest(self) -> None:
        self.follow()

    def action_oldest(self) -> None:
        self._unfollow()
        if self.window.at_tail:
            self.move_to(len(self.window.rows) - 1)
        else:
            self.post_message(self.WantEnd("tail"))

    def action_choose(self) -> None:
        if self.selected_id:
            self.post_message(self.Chosen(self.selected_id))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value > 0 and self.following and self.window.rows:
            # Scrolling away (wheel, scrollbar) is a move too: stop pulling the view to the top.
            self._unfollow()
        if self._lines and not self.following:
            last = min(len(self._lines) - 1, int(new_value) + self.size.height)
            older = self.window.wants_older(self._lines[last][0])
            if older is not None:
                self.post_message(self.WantRows("older", older))
            newer = self.window.wants_newer(self._lines[min(int(new_value), last)][0])
            if newer is not None:
                self.post_message(self.WantRows("newer", newer))

    def on_click(self, event: Click) -> None:
        index = event.y + self.scroll_offset.y
        if not 0 <= index < len(self._lines):
            return
        row_index, replay_index = self._lines[index]
        self.focus()
        self.move_to(row_index)
        if (event.chain >= 2 or replay_index >= 0) and self.selected_id:
            self.post_message(
                self.Chosen(self.selected_id, "attempts" if replay_index >= 0 else None)
            )
