"""The question asked before re-signing a delivery whose original signature did not match.

Re-signing vouches for a payload; one that did not match could have been posted by anyone to
the public URL, so `r` and `e` send it re-signed only after an explicit `y`.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


def question(reason: str) -> str:
    return (
        f"Its original signature did not match your secret: {reason}. Re-signing would make it "
        "look genuine to your handler. Send anyway? y/n"
    )


class ForceScreen(ModalScreen[bool]):
    """Dismisses with True only for `y`; `n` and esc answer no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Send re-signed anyway"),
        Binding("n,escape", "answer(False)", "Do not send"),
    ]

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical(id="force-box"):
            yield Label("Re-sign a delivery that did not match?", id="force-title")
            yield Label(question(self.reason), id="force-text", markup=False)
            yield Label("y sends it re-signed · n or esc sends nothing", id="force-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
