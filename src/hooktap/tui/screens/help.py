"""`?`: every key, read from the bindings themselves so the help can never fall out of date."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static

MOUSE = (
    "Click a row to select it, double-click to open it; click a re-send line for its "
    "attempts; click tabs, footer keys and the webhook URL (copies it); the wheel scrolls."
)


def _keys(binding: Binding) -> str:
    shown = []
    for key in binding.key.split(","):
        key = key.strip()
        names = {"question_mark": "?", "slash": "/", "escape": "esc"}
        shown.append(names.get(key, key))
    return " ".join(shown)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def __init__(self, sections: Sequence[tuple[str, Sequence[Binding]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        parts: list[Content] = []
        for title, bindings in self.sections:
            parts.append(Content.styled(title, "bold $text-accent"))
            keys: dict[str, list[str]] = {}
            described: dict[str, str] = {}
            for binding in bindings:  # one line per action, every key that triggers it
                keys.setdefault(binding.action, []).append(_keys(binding))
                if binding.description and binding.action not in described:
                    described[binding.action] = binding.description
            for action, description in described.items():
                shown = " ".join(keys[action])
                parts.append(Content.assemble((f"  {shown:<20}", "$text-primary"), description))
            parts.append(Content(""))
        parts.append(Content.styled("Mouse", "bold $text-accent"))
        parts.append(Content("  " + MOUSE))
        with Vertical(id="help-box"):
            yield Label("Keys — ctrl+p lists every action too", id="help-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(Content("\n").join(parts), id="help-text")
            yield Label("esc, q or ? closes", id="help-keys")

    def action_close(self) -> None:
        self.dismiss(None)
