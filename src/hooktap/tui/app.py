"""The inspector app: composes the widgets, binds the keys, and browses the stored history
(list paging, counts, the detail pane), running all work in workers.

It owns no rendering (widgets), no wording (present), no SQL (loader), no sending
(hooktap.replay) and no listener (live.py runs it for `hooktap listen` and hands new rows
here): it routes messages from widgets to workers and results back to widgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

from hooktap.filters import Filter
from hooktap.listen import state as listener_state
from hooktap.listen.listener import Listener
from hooktap.records import Attempt
from hooktap.store import BodyMissing, Store, StoreError
from hooktap.tui.feed import Counts, Feed
from hooktap.tui.live import LiveListener
from hooktap.tui.loader import Loader
from hooktap.tui.screens.editor import EditorScreen
from hooktap.tui.screens.filter import FilterScreen
from hooktap.tui.screens.help import HelpScreen, palette_commands
from hooktap.tui.sending import Sender
from hooktap.tui.widgets.delivery_list import DeliveryList
from hooktap.tui.widgets.detail import DetailData, DetailPane
from hooktap.tui.widgets.header import NARROW, StatusHeader, UrlLabel, route_forms
from hooktap.tui.widgets.list_panel import ListPanel, NewBanner
from hooktap.tui.window import PAGE

# A detail update re-lays out the screen (~40 ms with a big body), so it must not run per
# key: while a key is held the detail waits for the cursor to rest (debounce), and while rows
# stream in at the top it shows the newest at most every DETAIL_FOLLOWING s (throttle).
DETAIL_QUIET = 0.12
DETAIL_FOLLOWING = 1.0


class HooktapApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "hooktap"
    # Classes the screen gets by its size: app.tcss lays out 80x24 as tightly as it must.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (NARROW, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (32, "-tall")]
    # The footer shows these in order as far as the width goes: `?` comes early, so an
    # 80-column footer still says where the rest is.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Keys"),
        Binding("r", "replay", "Re-send"),
        Binding("e", "edit", "Edit+send"),
        Binding("ctrl+e", "edit(True)", "Edit in $EDITOR, then send", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter / back to list", show=False),
        Binding("z", "full_detail", "Full detail"),
        Binding("tab,shift+tab", "focus_detail", "Switch list/detail", show=False),
        Binding("c", "copy_curl", "Copy curl"),
        Binding("y", "copy_body", "Copy body"),
        Binding("u", "copy_url", "Copy URL", show=False),  # a click on the URL copies it too
        Binding("p", "pause", "Pause forwarding"),
        Binding("f", "follow", "Follow"),
        Binding("1", "tab('request')", "Request tab", show=False),
        Binding("2", "tab('response')", "Response tab", show=False),
        Binding("3", "tab('attempts')", "Attempts tab", show=False),
        Binding("4", "tab('signature')", "Signature tab", show=False),
        Binding("t", "change_theme", "Theme", show=False),
    ]

    # The keys of the main screen: on the editor, help or filter screens they mean nothing.
    _main_only = frozenset(b.action.split("(")[0] for b in BINDINGS if isinstance(b, Binding)) - {
        "quit",
        "change_theme",
    }

    def __init__(
        self,
        store: Store,
        listener: Listener | None = None,
        *,
        secret: str | None = None,
        replay_target: str | None = None,
        utc: bool = False,
        initial_filter: Filter | None = None,
        clock: Callable[[], float] = time.time,
        handle_signals: bool = False,
    ) -> None:
        super().__init__()
        self.store = store
        self.secret = (
            secret if secret is not None else (listener.config.secret if listener else None)
        )
        self.utc = utc
        self.filter = initial_filter or Filter()
        self.feed = Feed()  # the listener's events, between two flushes (feed.py)
        # The live part, for `hooktap listen`; None for `hooktap inspect`.
        self.live = LiveListener(self, listener, self.feed) if listener is not None else None
        self.loader = Loader(
            store.path, secret=self.secret, clock=clock, on_failure=self._history_failed
        )
        # A re-send's store calls run off the loop: on the listener's history thread when one
        # runs here, in turn with its commits.
        call = listener.pipeline.commits.call if listener is not None else asyncio.to_thread
        routing = listener.routing if listener is not None else None
        self.sender = Sender(
            self, store, secret=self.secret, target=replay_target, call=call, routing=routing
        )
        self.ended_by: BaseException | None = None
        self.webhook_url: str | None = None
        self.total: int | None = None
        self.new_count = 0
        self._anchor: tuple[float, int] | None = None
        self._detail_wanted: str | None = None
        self._detail_timer: Timer | None = None
        self._detail_loaded_at = 0.0
        self._detail_data: DetailData | None = None
        self._history_count: int | None = None
        self._handle_signals = handle_signals

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield ListPanel(utc=self.utc, id="list-panel")
        yield DetailPane(id="detail")
        yield Footer()

    @property
    def deliveries(self) -> DeliveryList:
        return self.query_one(DeliveryList)

    @property
    def detail(self) -> DetailPane:
        return self.query_one(DetailPane)

    @property
    def header(self) -> StatusHeader:
        return self.query_one(StatusHeader)

    def on_mount(self) -> None:
        header = self.header
        if self.live is not None:
            self.live.start()
        else:
            elsewhere = listener_state.current()
            self.webhook_url = listener_state.current_webhook_url()
            header.show_state(
                "inspect", "a listener runs in another terminal" if elsewhere else "no listener"
            )
            header.show_url(self.webhook_url)
            target = self.sender.target
            header.show_routes(route_forms([(None, target)]) if target else [])
            header.show_counts(Counts(), "stored")
        header.show_paused(False)
        self._reload_head()
        self._refresh_counts()
        if self._handle_signals:
            # In a real terminal, SIGTERM (and SIGHUP: the window closed) quit like `q` does.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, lambda: self.call_later(self.action_quit))
        self._fit_footer()
        self.set_interval(1.0, self._every_second)
        self.deliveries.focus()

    def on_resize(self) -> None:
        self._fit_footer()

    def _fit_footer(self) -> None:
        # Compact spacing fits every key at 160 columns, and two more at 80.
        self.query_one(Footer).compact = self.size.width < 160

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._main_only and len(self.screen_stack) > 1:
            return False
        if action == "quit" and isinstance(self.screen, EditorScreen):
            return False  # ctrl+c copies in the editor; esc leaves it first
        if action == "pause" and self.live is None:
            return None
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every key's action in the palette, once, under the name the footer and `?` use."""
        return palette_commands(self, self.BINDINGS)  # type: ignore[arg-type]

    async def action_quit(self) -> None:
        """Stop the listener first, so in-flight deliveries finish and the relay port frees."""
        if self.live is not None:
            await self.live.stop()
        self.exit()

    def _history_failed(self, exc: StoreError) -> None:
        """History cannot be read (damaged under us): end, and let the CLI say why."""
        if self.ended_by is None:
            self.ended_by = exc
        self.exit(return_code=2)

    def on_unmount(self) -> None:
        self.loader.close()

    # --- list paging (workers) -------------------------------------------------------------

    @work(exclusive=True, group="head")
    async def _reload_head(self) -> None:
        rows = await self.loader.head(self.filter, PAGE)
        lst = self.deliveries
        if lst.following:
            lst.show_rows(rows, PAGE)
            self._load_replays()
            self._show_status()

    @work(exclusive=True, group="page")
    async def _load_page(self, direction: str, cursor: tuple[float, int]) -> None:
        lst = self.deliveries
        if direction == "older":
            lst.show_older(cursor, await self.loader.older(self.filter, cursor), PAGE)
        else:
            lst.show_newer(cursor, await self.loader.newer(self.filter, cursor), PAGE)
        self._load_replays()

    @work(exclusive=True, group="head")
    async def _load_tail(self) -> None:
        rows = await self.loader.tail(self.filter)
        self.deliveries.show_rows(rows, PAGE, at_head=False, cursor_last=True)
        self._load_replays()

    @work(group="replays")
    async def _load_replays(self) -> None:
        lst = self.deliveries
        for delivery_id in lst.replays_missing()[:50]:
            lst.show_replays(delivery_id, await self.loader.attempts(delivery_id))

    @work(exclusive=True, group="new")
    async def _count_new(self, anchor: tuple[float, int]) -> None:
        self.new_count = await self.loader.new_since(self.filter, anchor)
        self._show_status()

    @work(exclusive=True, group="counts")
    async def _refresh_counts(self) -> None:
        """The total that matches; in inspect mode, also notice rows another process wrote."""
        total = await self.loader.count(self.filter)
        changed = total != self.total
        self.total = total
        self._show_status()
        if self.live is None:
            history = await self.loader.count(Filter()) if not self.filter.empty else total
            if history != self._history_count:
                self._history_count = history
                self.header.show_counts(await self.loader.counts(), "stored")
                if changed and self.deliveries.following:
                    self._reload_head()

    def _every_second(self) -> None:
        self._refresh_counts()
        self._reread_visible()
        if self.live is not None:
            self.live.show_paused()

    def show_arrivals(
        self, received: int, forwarded: list[Attempt], not_forwarded: dict[str, str]
    ) -> None:
        """New deliveries, finished forwards and deliveries that went to no handler (id:
        state) from the listener (live.py), since the last flush: rows at the head while
        following, else patched in place and counted."""
        lst = self.deliveries
        if lst.following:
            self._reload_head()
        else:
            lst.patch(forwarded, not_forwarded)
            if received and self._anchor is not None:
                self._count_new(self._anchor)
        news = [a.delivery_id for a in forwarded] + list(not_forwarded)
        if lst.selected_id in news:
            self._want_detail(lst.selected_id, force=True)
        if received and self.total is not None and self.filter.empty:
            self.total += received
            self._show_status()

    @work(exclusive=True, group="reread")
    async def _reread_visible(self) -> None:
        """When anyone else wrote history (another terminal's `hooktap replay`, say), read the
        rows on screen again, so they count the attempts history counts."""
        if not await self.loader.changed():
            return
        lst = self.deliveries
        changed = lst.refresh_rows(await self.loader.again(self.filter, lst.visible_rows()))
        if changed:
            self._load_replays()
            if lst.selected_id in changed:
                self._want_detail(lst.selected_id, force=True)

    def _show_status(self) -> None:
        lst = self.deliveries
        self.query_one(ListPanel).show_status(
            new=self.new_count,
            total=self.total,
            filter_text=self.filter.source,
            following=lst.following,
        )

    def on_delivery_list_want_rows(self, message: DeliveryList.WantRows) -> None:
        self._load_page(message.direction, message.cursor)

    def on_delivery_list_want_end(self, message: DeliveryList.WantEnd) -> None:
        if message.end == "head":
            self._reload_head()
        else:
            self._load_tail()

    def on_delivery_list_follow_changed(self, message: DeliveryList.FollowChanged) -> None:
        if message.following:
            self.new_count, self._anchor = 0, None
        else:
            rows = self.deliveries.rows
            self._anchor = rows[0].cursor if rows and self.deliveries.window.at_head else None
        self._show_status()

    def on_new_banner_clicked(self, message: NewBanner.Clicked) -> None:
        self.deliveries.follow()

    def on_url_label_clicked(self, message: UrlLabel.Clicked) -> None:
        self.action_copy_url()

    # --- the detail pane -------------------------------------------------------------------

    def on_delivery_list_highlighted(self, message: DeliveryList.Highlighted) -> None:
        self._want_detail(message.delivery_id)

    def on_delivery_list_chosen(self, message: DeliveryList.Chosen) -> None:
        if message.tab:
            self.detail.show_tab(message.tab)
        self.detail.focus_content()

    def _want_detail(self, delivery_id: str | None, force: bool = False) -> None:
        if delivery_id is None:
            self._detail_data = None
            self.detail.clear()
            return
        self._detail_wanted = delivery_id
        if self._detail_data is None or force:
            delay = 0.0  # the first one, or news about the row on screen: show it now
        elif self.deliveries.following:
            if self._detail_timer is not None:
                return  # throttle: the pending load will pick up the newest row
            since = time.monotonic() - self._detail_loaded_at
            delay = max(0.0, DETAIL_FOLLOWING - since)  # a quiet feed shows each at once
        else:
            delay = DETAIL_QUIET  # debounce: restart the wait on every move
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(max(delay, 0.001), self._load_detail)

    @work(exclusive=True, group="detail")
    async def _load_detail(self) -> None:
        self._detail_timer = None
        self._detail_loaded_at = time.monotonic()
        wanted = self._detail_wanted
        if wanted is None:
            return
        data = await self._detail_or_notify(wanted)
        if data is not None and self.deliveries.selected_id == wanted:
            self._detail_data = data
            self.detail.show(data, utc=self.utc)

    @property
    def detail_settled(self) -> bool:
        """The detail pane shows the selected row and nothing is pending (tests, scripts)."""
        data = self._detail_data
        loading = any(w.group == "detail" and w.is_running for w in self.workers)
        return (
            self._detail_timer is None
            and not loading
            and data is not None
            and data.delivery.id == self.deliveries.selected_id
        )

    async def selected_detail(self) -> DetailData | None:
        """The selected delivery in full, from the pane when it is loaded, else the store."""
        delivery_id = self.deliveries.selected_id
        if delivery_id is None:
            self.notify("No delivery selected.", severity="warning")
            return None
        if self._detail_data is not None and self._detail_data.delivery.id == delivery_id:
            return self._detail_data
        return await self._detail_or_notify(delivery_id)

    async def _detail_or_notify(self, delivery_id: str) -> DetailData | None:
        try:
            return await self.loader.detail(delivery_id)
        except BodyMissing as exc:  # a big body's file deleted by hand: say so, keep running
            self.notify(
                str(exc),
                title="Cannot show this delivery",
                severity="error",
                timeout=10,
                markup=False,
            )
            return None

    def after_replay(self, delivery_id: str) -> None:
        """A re-send finished: show it under its row and in the Attempts tab."""
        self.deliveries.bump_attempts(delivery_id)
        self._load_replays()
        if self.deliveries.selected_id == delivery_id:
            self.detail.show_tab("attempts")
            self._want_detail(delivery_id, force=True)

    # --- actions ---------------------------------------------------------------------------

    async def action_replay(self) -> None:
        data = await self.selected_detail()
        if data is not None:
            self.sender.resend_confirmed(data.delivery)

    async def action_edit(self, external: bool = False) -> None:
        data = await self.selected_detail()
        if data is not None:
            self.sender.edit_then_send(data.delivery, external=external)

    def action_filter(self) -> None:
        def apply(chosen: Filter | None) -> None:
            if chosen is not None:
                self._apply_filter(chosen)

        self.push_screen(FilterScreen(self.filter.source), apply)

    def _apply_filter(self, chosen: Filter) -> None:
        self.filter = chosen
        self.total = None
        self.deliveries.follow()
        self._refresh_counts()

    def action_clear_filter(self) -> None:
        """esc steps back: out of the full-screen detail, to the list, then clears the filter."""
        if self.screen.has_class("-full-detail"):
            self.action_full_detail()
        elif self.detail.has_focus_within:
            self.deliveries.focus()
        elif not self.filter.empty:
            self._apply_filter(Filter())

    def action_focus_detail(self) -> None:
        if self.detail.has_focus_within and not self.screen.has_class("-full-detail"):
            self.deliveries.focus()
        else:
            self.detail.focus_content()

    def action_full_detail(self) -> None:
        """z: the detail takes the list's place too (an 80x24 body needs it); z again, or
        esc, brings the list back."""
        full = not self.screen.has_class("-full-detail")
        self.screen.set_class(full, "-full-detail")
        if full:
            self.detail.focus_content()
        else:
            self.deliveries.focus()

    async def action_copy_curl(self) -> None:
        data = await self.selected_detail()
        if data is not None:
            self.sender.copy_curl(data.delivery)

    async def action_copy_body(self) -> None:
        data = await self.selected_detail()
        if data is not None:
            self.sender.copy_body(data.delivery)

    def action_copy_url(self) -> None:
        if not self.webhook_url:
            self.notify("No webhook URL: no listener is connected.", severity="warning")
            return
        self.copy_to_clipboard(self.webhook_url)
        self.notify(self.webhook_url, title="Copied the webhook URL", markup=False)

    async def action_pause(self) -> None:
        if self.live is None:
            self.notify("No listener here to pause (this is hooktap inspect).", severity="warning")
            return
        await self.live.toggle_pause()

    def action_follow(self) -> None:
        self.deliveries.follow()
        self.deliveries.focus()

    def action_tab(self, tab: str) -> None:
        self.detail.show_tab(tab)

    def action_help(self) -> None:
        self.push_screen(HelpScreen.of(self.BINDINGS))  # type: ignore[arg-type]
