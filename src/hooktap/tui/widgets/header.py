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


def set_text(label: Label, text: str) -> None:
    """Update a fixed-size label without a layout pass, and only when its text changes.

    The header and status line change ten times a second under load; a full-screen layout
    each time (tens of ms with a big body in the detail pane) is what made keys lag.
    """
    if getattr(label, "_hooktap_text", None) != text:
        label._hooktap_text = text  # type: ignore[attr-defined]
        label.update(text, layout=False)


class StatusHeader(Vertical):
    _counts = ""
    _detail = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-top"):
            yield Label("hooktap", id="brand")
            yield Label("", id="conn-state")
            yield Label("", id="paused")
            yield UrlLabel("", id="webhook-url")
            yield Label("", id="target")
        with Horizontal(id="header-bottom"):
            yield Label("", id="counts")

    def show_state(self, state: str, detail: str = "", retry_in: float | None = None) -> None:
        label = self.query_one("#conn-state", Label)
        set_text(label, _STATES.get(state, state))
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
        self.query_one("#target", Label).update(f"→ {target}" if target else "")

    def show_counts(self, counts: Counts, scope: str) -> None:
        self._counts = (
            f"{scope}: received {counts.received:,} · forwarded {counts.forwarded:,} · "
            f"failed {counts.failed:,} · invalid signatures {counts.invalid:,}"
        )
        self._show_info()

    def _show_info(self) -> None:
        info = self._counts + (f"   {self._detail}" if self._detail else "")
        set_text(self.query_one("#counts", Label), info)

    def show_paused(self, paused: bool) -> None:
        label = self.query_one("#paused", Label)
        label.update("‖ paused: deliveries wait at the relay" if paused else "")
        label.display = paused
