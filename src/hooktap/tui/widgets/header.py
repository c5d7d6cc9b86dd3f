"""The header: the truth about the connection, where deliveries go, and what happened so far.

ngrok's inspector hides the tunnel's state behind a page reload; here the state is whatever
the listener last reported (connected, disconnected with the reason, reconnecting, paused),
never a guess, because the first question when a webhook does not show up is "am I connected?".
The second is "is my server up?": a handler that stops accepting connections is named in red
("✕ localhost:8000 down") from the listener's health probes, before a webhook fails on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import Click
from textual.message import Message
from textual.widgets import Label

from hooktap.tui import present
from hooktap.tui.feed import Counts

NARROW = 100  # columns: below this the header speaks in its shorter words
COUNTS_ROOM = 18  # columns the routes leave the counts, when a shorter form of them fits
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")

_STATES = {
    "connecting": "◌ connecting",
    "connected": "● connected",
    "reconnecting": "◌ reconnecting",
    "disconnected": "✕ disconnected",
    "stopped": "✕ listener stopped",
    "inspect": "■ history only",
}


class UrlLabel(Label):
    """The webhook URL; a click copies it, like `u` (mouse users should not have to select)."""

    class Clicked(Message):
        pass

    def on_click(self, event: Click) -> None:
        event.stop()
        self.post_message(self.Clicked())


def set_text(label: Label, text: str, *, layout: bool = False) -> None:
    """Update a label only when its text changes, and (unless `layout`) without a layout pass.

    The header and status line change ten times a second under load; a full-screen layout
    each time (tens of ms with a big body in the detail pane) is what made keys lag.
    """
    if getattr(label, "_hooktap_text", None) != text:
        label._hooktap_text = text  # type: ignore[attr-defined]
        label.update(text, layout=layout)


def counts_forms(counts: Counts, scope: str) -> list[str]:
    """The counts in ever shorter words, for the width there is. The signature counts use the
    filter's words, so `sig:invalid` lists exactly the deliveries counted as invalid."""
    c = counts
    # Filtered and unrouted ones, when there are any, so that received adds up.
    skipped = f"not forwarded {c.not_forwarded:,} · " if c.not_forwarded else ""
    return [
        f"{scope}: received {c.received:,} · forwarded {c.forwarded:,} · failed {c.failed:,} · "
        f"{skipped}sig:invalid {c.invalid:,} · sig:expired {c.expired:,}",
        f"received {c.received:,} · forwarded {c.forwarded:,} · failed {c.failed:,} · "
        f"{skipped}invalid {c.invalid:,} · expired {c.expired:,}",
        f"{c.received:,} in · {c.forwarded:,} ok · {c.failed:,} failed · "
        f"{c.invalid:,} invalid · {c.expired:,} expired",
        f"{c.received:,} in · {c.failed:,} failed",
    ]


def fit_info(forms: list[str], detail: str, width: int) -> str:
    """The longest counts that fit beside `detail` (the connection's news, which matters more
    than counts: it is kept, cut if it must be, and the counts give way)."""
    sep = "   "
    for form in forms:
        line = f"{form}{sep}{detail}" if detail else form
        if len(line) <= width:
            return line
    return detail


def route_forms(routes: Sequence[tuple[str | None, str]], events: Sequence[str] = ()) -> list[str]:
    """Where deliveries go, `(pattern or None for the fallback, target URL)` in route order,
    in ever shorter words: whole targets, then host:port, then only the port of one on this
    machine, then a count. `--events` is said while there is room."""

    def target(url: str, level: int) -> str:
        if level == 0:
            return present.target_text(url)
        netloc = urlsplit(url).netloc
        host, colon, port = netloc.rpartition(":")
        return f":{port}" if level == 2 and colon and host in _LOOPBACK else netloc

    def line(level: int, only: bool) -> str:
        shown = [f"{p}={target(u, level)}" if p else target(u, level) for p, u in routes]
        tail = f" · only {','.join(events)}" if only and events else ""
        return "→ " + " · ".join(shown) + tail

    forms = [line(level, True) for level in range(3)] + [line(2, False)]
    if len(routes) > 1:
        forms.append(f"→ {len(routes)} routes")
    return list(dict.fromkeys(forms))


def health_text(down: Sequence[str]) -> str:
    return f"✕ {', '.join(down)} down" if down else ""


def paused_text(paused: bool, queued: int | None, narrow: bool) -> str:
    if not paused:
        return ""
    if queued is None:
        return "‖ paused" if narrow else "‖ paused: deliveries wait at the relay"
    waiting = f"{queued:,} waiting"
    return f"‖ paused · {waiting}" if narrow else f"‖ paused · {waiting} at the relay"


class StatusHeader(Vertical):
    """Two lines: where deliveries come from (state, webhook URL), then where they go (paused,
    target) and what happened so far. What does not fit gives way from the right: the
    counts shorten, then go, before the target or the state is ever cut."""

    _counts: Counts | None = None
    _scope = ""
    _detail = ""
    _paused = False
    _queued: int | None = None
    _routes: tuple[str, ...] = ()  # route_forms(), longest first
    _down: tuple[str, ...] = ()  # host:port of each handler not accepting connections

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-top"):
            yield Label("hooktap", id="brand")
            yield Label("", id="conn-state", markup=False)
            yield UrlLabel("", id="webhook-url", markup=False)
        with Horizontal(id="header-bottom"):
            yield Label("", id="paused")
            yield Label("", id="health", markup=False)
            yield Label("", id="target", markup=False)
            yield Label("", id="counts", markup=False)

    def on_resize(self) -> None:
        self._show_paused()
        self._show_routes()

    def show_state(self, state: str, detail: str = "", retry_in: float | None = None) -> None:
        label = self.query_one("#conn-state", Label)
        set_text(label, _STATES.get(state, state), layout=True)  # rare, and its width changes
        label.set_classes(f"state-{state}")
        if state == "disconnected" and retry_in:
            detail = f"{detail}; next try in ~{retry_in:.0f} s" if detail else ""
        elif state == "connected":
            detail = ""
        self._detail = detail
        self._show_info()

    def show_url(self, webhook_url: str | None) -> None:
        url = self.query_one("#webhook-url", UrlLabel)
        url.update(webhook_url or "")
        url.tooltip = "click or press u to copy the webhook URL" if webhook_url else None

    def show_routes(self, forms: Sequence[str]) -> None:
        """Where deliveries go, as route_forms() words it (empty: nowhere known)."""
        self._routes = tuple(forms)
        self._show_routes()

    def show_health(self, down: Sequence[str]) -> None:
        """The handlers (host:port) that do not accept connections now; empty: all do."""
        self._down = tuple(down)
        label = self.query_one("#health", Label)
        set_text(label, health_text(self._down), layout=True)  # rare, and its width changes
        label.display = bool(self._down)
        self._show_routes()

    def _show_routes(self) -> None:
        """The longest form of the routes that leaves the counts some room beside the paused
        and health marks (which are never cut); else the longest that fits at all, since the
        counts give way before where deliveries go; else the shortest."""
        label = self.query_one("#target", Label)
        label.display = bool(self._routes)
        forms = self._routes
        if forms:
            width = self.content_size.width
            marks = paused_text(self._paused, self._queued, narrow=width < NARROW)
            room = width - 2 - sum(len(t) + 2 for t in (marks, health_text(self._down)) if t)
            with_counts = (f for f in forms[:-1] if len(f) <= room - COUNTS_ROOM)
            alone = (f for f in forms if len(f) <= room)
            text = next(with_counts, None) or next(alone, forms[-1]) if width else forms[0]
            set_text(label, text, layout=True)
        self.call_after_refresh(self._show_info)  # the counts get what the routes leave

    def show_counts(self, counts: Counts, scope: str) -> None:
        self._counts, self._scope = counts, scope
        self._show_info()

    def _show_info(self) -> None:
        label = self.query_one("#counts", Label)
        forms = counts_forms(self._counts, self._scope) if self._counts is not None else []
        width = label.size.width or 1_000  # before the first layout: the longest
        set_text(label, fit_info(forms, self._detail, width))

    def show_paused(self, paused: bool, queued: int | None = None) -> None:
        """Paused or not, and how many deliveries wait at the relay (None: not known)."""
        changed = paused != self._paused
        self._paused, self._queued = paused, queued
        self._show_paused()
        if changed:
            self._show_routes()

    def _show_paused(self) -> None:
        label = self.query_one("#paused", Label)
        text = paused_text(self._paused, self._queued, narrow=self.size.width < NARROW)
        set_text(label, text, layout=True)  # rare (pausing, a count), and its width changes
        label.display = self._paused
