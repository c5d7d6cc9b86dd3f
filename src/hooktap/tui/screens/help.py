"""`?`: every key, read from the bindings themselves so the help can never fall out of date."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from hooktap.tui.widgets.scroll import DetailScroll, PagerScroll

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


def palette_commands(app: App[object], bindings: Sequence[Binding]) -> Iterator[SystemCommand]:
    """The command palette's list: each action once, named as in the footer and in `?`.

    Textual's own entries are left out: its Quit and Theme duplicate ours under other words,
    and its Keys panel would be a second, different "Keys"."""
    seen: set[str] = set()
    for binding in bindings:
        if binding.action in seen:
            continue
        seen.add(binding.action)
        keys = " ".join(_keys(b) for b in bindings if b.action == binding.action)
        yield SystemCommand(
            binding.description,
            f"key: {keys}",
            lambda action=binding.action: app.run_action(action),  # type: ignore[misc]
        )


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def __init__(self, sections: Sequence[tuple[str, Sequence[Binding]]]) -> None:
        super().__init__()
        self.sections = sections

    @classmethod
    def of(cls, app_bindings: Sequence[Binding]) -> HelpScreen:
        """The inspector's keys, then each pane's, read from the bindings themselves."""
        from hooktap.tui.screens.editor import EditorScreen
        from hooktap.tui.widgets.delivery_list import DeliveryList

        detail = [*PagerScroll.BINDINGS, *DetailScroll.BINDINGS]
        return cls(
            [
                ("Inspector", app_bindings),
                ("Delivery list", DeliveryList.BINDINGS),  # type: ignore[list-item]
                ("Detail pane: tab or enter goes there, esc back to the list", detail),  # type: ignore[list-item]
                ("Editor (e)", EditorScreen.BINDINGS),  # type: ignore[list-item]
                ("Anywhere", [Binding("ctrl+p", "palette", "Command palette: every action")]),
            ]
        )

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
            with PagerScroll(id="help-scroll"):
                yield Static(Content("\n").join(parts), id="help-text")
            yield Label("esc, q or ? closes · up, down, space, b scroll", id="help-keys")

    def action_close(self) -> None:
        self.dismiss(None)
