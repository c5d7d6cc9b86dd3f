"""Scrolling text panes read from the keyboard as a pager reads: the detail's tabs and the help.

Textual's VerticalScroll binds the arrows and Page keys; readers of `less` also reach for
space, b, j/k, g/G and ctrl+d/u, and an 80x24 terminal leaves a pane too few lines to read
a body without them.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message


class PagerScroll(VerticalScroll, inherit_bindings=False):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,j", "scroll_down", "Scroll down a line", show=False),
        Binding("up,k", "scroll_up", "Scroll up a line", show=False),
        Binding("pagedown,space,ctrl+d", "page_down", "Page down", show=False),
        Binding("pageup,b,ctrl+u", "page_up", "Page up", show=False),
        Binding("home,g", "scroll_home", "Top", show=False),
        Binding("end,G", "scroll_end", "Bottom", show=False),
    ]


class DetailScroll(PagerScroll):
    """One tab of the detail pane; left and right step through the tabs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "step_tab(-1)", "Previous tab", show=False),
        Binding("right,l", "step_tab(1)", "Next tab", show=False),
    ]

    class StepTab(Message):
        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    def action_step_tab(self, step: int) -> None:
        self.post_message(self.StepTab(step))
