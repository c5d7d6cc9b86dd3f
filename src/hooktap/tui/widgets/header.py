"""The header: the truth about the connection, where deliveries go, and what happened so far.

ngrok's inspector hides the tunnel's state behind a page reload; here the state is whatever
the listener last reported (connected, disconnected with the reason, reconnecting, paused),
never a guess, because the first question when a webhook does not show up is "am I connected?".
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import Click
from textual.message import Message
from textual.widgets import Label

from hooktap.tui.feed import Counts

NARROW = 100  # columns: below this the header speaks in its shorter words

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
    return [
        f"{scope}: received {c.received:,} · forwarded {c.forwarded:,} · failed {c.failed:,} · "
        f"sig:invalid {c.invalid:,} · sig:expired {c.expired:,}",
        f"received {c.received:,} · forwarded {c.forwarded:,} · failed {c.failed:,} · "
        f"invalid {c.invalid:,} · expired {c.expired:,}",
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

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-top"):
            yield Label("hooktap", id="brand")
            yield Label("", id="conn-state")
            yield UrlLabel("", id="webhook-url")
        with Horizontal(id="header-bottom"):
            yield Label("", id="paused")
            yield Label("", id="target")
            yield Label("", id="counts")

    def on_resize(self) -> None:
        self._show_paused()
        self.call_after_refresh(self._show_info)

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

    def show_urls(self, webhook_url: str | None, target: str | None) -> None:
        url = self.query_one("#webhook-url", UrlLabel)
        url.update(webhook_url or "")
        url.tooltip = "click or press u to copy the webhook URL" if webhook_url else None
        label = self.query_one("#target", Label)
        label.update(f"→ {target}" if target else "")
        label.display = bool(target)
        self.call_after_refresh(self._show_info)  # the counts get what the target leaves

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
            self.call_after_refresh(self._show_info)

    def _show_paused(self) -> None:
        label = self.query_one("#paused", Label)
        text = paused_text(self._paused, self._queued, narrow=self.size.width < NARROW)
        set_text(label, text, layout=True)  # rare (pausing, a count), and its width changes
        label.display = self._paused
