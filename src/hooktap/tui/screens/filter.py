"""The `/` box: the same filter language as `hooktap deliveries --filter`, checked as you type.

An error names the token at fault before Enter, so a typo never silently empties the list.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from hooktap.filters import Filter, parse_filter

SYNTAX = (
    "type:customer.*   status:5xx | 4xx | 401 | err | filtered | unrouted\n"
    "sig:valid | invalid | expired | unsigned | no-secret   since:1h | 2024-05-01\n"
    'words or "a phrase" must appear in the body\n'
    "Values of one key are alternatives (status:4xx,5xx); different keys must all hold."
)


class FilterScreen(ModalScreen[Filter | None]):
    """Dismisses with the new Filter (an empty one clears), or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: str = "") -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="filter-box"):
            yield Label("Filter deliveries", id="filter-title")
            yield Input(
                self.current,
                placeholder="type:customer.* status:5xx sig:invalid acme",
                id="filter-input",
            )
            yield Label("", id="filter-error", markup=False)
            yield Label(SYNTAX, id="filter-help")
            yield Label("enter applies · empty clears · esc cancels", id="filter-keys")

    def on_input_changed(self, event: Input.Changed) -> None:
        error = self.query_one("#filter-error", Label)
        try:
            parse_filter(event.value)
        except ValueError as exc:
            error.update(f"✕ {exc}")
            error.display = True
        else:
            error.update("")
            error.display = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            chosen = parse_filter(event.value)
        except ValueError:
            self.app.bell()
            return
        self.dismiss(chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)
