"""Which columns the delivery list shows at a given width, and how wide each is. Pure.

An 80-column terminal and a 200-column one both deserve a full table: the narrow one keeps
what tells a failure apart (event type, status, verdict, how long, and the flags: retry, dup,
held, re-sent) and gives way on the rest; the wide one shows whole svix-ids and event types
and the request path. Columns give way in a fixed order of priority (`_GROWTH`): the first
steps are the last to go. The last column, flags, takes whatever is left, since the re-send
lines under a row put their note there. With routes, a target column (where each delivery
went) comes early in the growth, since it is then what tells rows apart.
"""

from __future__ import annotations

from dataclasses import dataclass

# The columns that are always there (name, title, width, right-aligned), in display order
# with the optional ones: time, svix-id and path are added by _GROWTH when there is room.
_ORDER = ("time", "type", "target", "svix", "path", "sig", "status", "took", "flags")
_TITLES = {
    "time": "time",
    "type": "event type",
    "target": "target",
    "svix": "svix-id",
    "path": "path",
    "sig": "signature",
    "status": "st",
    "took": "took",
    "flags": "flags",
}
_CORE = {"type": 20, "sig": 9, "status": 3, "took": 7, "flags": 20}  # 20: every catalog type
_RIGHT = {"status", "took"}
# Narrower than the core's needs: these give way first, in this order, down to these widths.
_SHRINK = (("flags", 10), ("type", 12), ("took", 0), ("sig", 0))
# Room beyond the core goes to these steps, in order, each as far as it fits (a step marked
# whole is taken whole or not at all); the first step that does not fit ends the growth, so a
# lower step never takes room a higher one wanted.
_GROWTH: tuple[tuple[str, int, bool], ...] = (
    ("time", 8, True),  # HH:MM:SS
    ("svix", 16, True),
    ("time", 14, True),  # with the date: a long history spans days
    ("svix", 32, False),  # whole svix-ids (msg_ and 27 characters)
    ("path", 16, True),
    ("path", 32, False),
    ("type", 32, False),  # senders other than Pivotal have longer event types
)
# With routes: the target column (host:port, then its path) right after the time.
_ROUTED_GROWTH = (
    ("time", 8, True),
    ("target", 16, True),  # localhost:40001
    *_GROWTH[1:4],
    ("target", 26, False),  # localhost:8001/webhooks/pi…
    *_GROWTH[4:],
)
GAP = 1  # between columns; flags gets one more, so it does not read as the duration's unit
SHORT_TIME = 14  # narrower than this, the time column leaves the date out


@dataclass(frozen=True)
class Column:
    name: str
    width: int
    right: bool = False

    def cell(self, text: str) -> str:
        return fit(text, self.width, self.right)


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` cut or padded to `width` (an id cut mid-way ends in …)."""
    if len(text) > width:
        text = text[: width - 1] + "…" if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


@dataclass(frozen=True)
class Layout:
    columns: tuple[Column, ...]

    def __contains__(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    def width_of(self, name: str) -> int:
        return next((c.width for c in self.columns if c.name == name), 0)

    def header(self, utc: bool) -> str:
        cells = []
        for column in self.columns:
            title = _TITLES[column.name]
            if column.name == "time" and utc:
                title += " UTC"
            cells.append(column.cell(title))
        return join(self, cells)


def join(layout: Layout, cells: list[str]) -> str:
    """The cells of one line, with the gaps the layout puts between columns."""
    out = ""
    for column, cell in zip(layout.columns, cells, strict=True):
        if out:
            out += " " * (GAP + (column.name == "flags"))
        out += cell
    return out


def _used(widths: dict[str, int]) -> int:
    shown = [name for name, width in widths.items() if width > 0]
    gaps = GAP * (len(shown) - 1) + ("flags" in shown and len(shown) > 1)
    return sum(widths.values()) + max(0, gaps)


def layout(width: int, *, targets: bool = False) -> Layout:
    """The columns for a list `width` characters wide; `targets`: with the target column."""
    widths = dict(_CORE)
    for name, least in _SHRINK:
        over = _used(widths) - width
        if over <= 0:
            break
        widths[name] = max(least, widths[name] - over) if least else 0
    for name, target, whole in _ROUTED_GROWTH if targets else _GROWTH:
        have = widths.get(name, 0)
        trial = dict(widths, **{name: target})
        room = width - _used(trial)
        if room >= 0:
            widths = trial
            continue
        if not whole and have:
            widths[name] = target + room  # as far as it fits (room is negative here)
        break
    if widths.get("flags"):
        widths["flags"] += max(0, width - _used(widths))
    columns = tuple(
        Column(name, widths[name], name in _RIGHT) for name in _ORDER if widths.get(name, 0) > 0
    )
    return Layout(columns)
