"""The list's panel: column titles above the list, the "N new" banner and a status line below."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Click
from textual.message import Message
from textual.widgets import Label

from hooktap.tui.widgets.delivery_list import DeliveryList
from hooktap.tui.widgets.header import set_text


class NewBanner(Label):
    """The "▲ N new" line: a click follows again, like `f`."""

    class Clicked(Message):
        pass

    def on_click(self, event: Click) -> None:
        event.stop()
        self.post_message(self.Clicked())


class ListPanel(Vertical):
    """The list with its column titles above and one status line below."""

    def __init__(self, *, utc: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.utc = utc

    def compose(self) -> ComposeResult:
        yield Label("", id="columns", markup=False)
        yield DeliveryList(utc=self.utc, id="deliveries")
        with Vertical(id="list-footer"):
            yield NewBanner("", id="new-banner")
            yield Label("", id="list-status", markup=False)

    def on_delivery_list_columns_changed(self, message: DeliveryList.ColumnsChanged) -> None:
        self.query_one("#columns", Label).update(message.columns.header(self.utc))

    def show_status(
        self, *, new: int, total: int | None, filter_text: str, following: bool
    ) -> None:
        banner = self.query_one(NewBanner)
        shown = new > 0 and not following
        if banner.display != shown:
            banner.display = shown
        more = "+" if new >= 1000 else ""
        set_text(banner, f"▲ {min(new, 1000):,}{more} new — press f to follow")
        parts = []
        if total is not None:
            noun = "delivery" if total == 1 else "deliveries"
            parts.append(f"{total:,} {noun}" + (" match" if filter_text else " stored"))
        if filter_text:
            parts.append(f"filter: {filter_text}  (/ to change, esc to clear)")
        # Not "paused": that word belongs to p, which holds deliveries at the relay.
        parts.append("following newest" if following else "staying on this row · f follows newest")
        set_text(self.query_one("#list-status", Label), "  ·  ".join(parts))
