"""Every pane reachable and scrollable from the keyboard, at 80x24, and `?` says how."""

from __future__ import annotations

from history import opened
from textual.pilot import Pilot
from textual.widget import Widget
from tui_helpers import wait_until

from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from hooktap.tui.screens.help import HelpScreen

SMALL = (80, 24)


def scroll_of(app: HooktapApp, tab: str) -> Widget:
    return app.query_one(f"#{tab}-scroll")


async def press(pilot: Pilot[None], *keys: str) -> None:
    await pilot.press(*keys)
    await pilot.pause()


async def test_tab_reaches_the_detail_and_its_keys_scroll_it(history: Store) -> None:
    async with opened(history, SMALL) as (app, pilot):
        await press(pilot, "tab")
        request = scroll_of(app, "request")
        assert app.focused is request  # the text itself, not the tab strip
        page = request.scrollable_content_region.height
        assert request.max_scroll_y > 2 * page  # there is something to scroll
        await press(pilot, "down")
        assert request.scroll_y == 1
        await press(pilot, "j", "j")
        assert request.scroll_y == 3
        await press(pilot, "k")
        assert request.scroll_y == 2
        await press(pilot, "pagedown")
        assert request.scroll_y == 2 + page
        await press(pilot, "space")
        assert request.scroll_y == min(request.max_scroll_y, 2 + 2 * page)
        await press(pilot, "b")
        assert request.scroll_y == min(request.max_scroll_y, 2 + 2 * page) - page
        await press(pilot, "end")
        assert request.scroll_y == request.max_scroll_y
        await press(pilot, "g")
        assert request.scroll_y == 0
        # Left and right step through the tabs, and the keys go on working in the new one.
        await press(pilot, "right")
        assert app.detail.active_tab == "response"
        assert app.focused is scroll_of(app, "response")
        await press(pilot, "left", "left")
        assert app.detail.active_tab == "signature"
        await press(pilot, "3")  # number keys too
        assert app.focused is scroll_of(app, "attempts")
        # shift+tab (or tab) again: back to the list, where down moves the cursor, not the text.
        await press(pilot, "shift+tab")
        assert app.focused is app.deliveries
        cursor = app.deliveries.cursor
        await press(pilot, "down")
        assert app.deliveries.cursor == cursor + 1


async def test_enter_on_a_row_opens_its_text_and_esc_comes_back(history: Store) -> None:
    async with opened(history, SMALL) as (app, pilot):
        await press(pilot, "enter")
        request = scroll_of(app, "request")
        assert app.focused is request
        await press(pilot, "pagedown")
        assert request.scroll_y > 0
        await press(pilot, "escape")
        assert app.focused is app.deliveries


async def test_question_mark_says_how_and_the_help_scrolls_too(history: Store) -> None:
    async with opened(history, SMALL) as (app, pilot):
        await press(pilot, "question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = str(app.screen.query_one("#help-text").render())
        assert "Detail pane: tab or enter goes there" in text
        for words in ("tab shift+tab", "Full detail", "Page down", "Next tab", "pagedown space"):
            assert words in text, words
        scroll = app.screen.query_one("#help-scroll")
        assert app.screen.focused is scroll
        assert scroll.max_scroll_y > 0  # 80x24 cannot show every key at once
        await press(pilot, "space")
        assert scroll.scroll_y > 0
        await press(pilot, "escape")
        assert not isinstance(app.screen, HelpScreen)
