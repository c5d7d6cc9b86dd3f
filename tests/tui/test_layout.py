"""The inspector at 80x24 and at 200x50: the columns follow the width, z fills the screen.

The real app over the fixed history (tests/tui/history.py), resized as a user resizes a
terminal. The layout's rules themselves are tested in test_columns.py.
"""

from __future__ import annotations

from history import opened
from tui_helpers import screen_text, wait_until

from hooktap.store import Store
from hooktap.tui.app import HooktapApp

SVIX_ID = "msg_2snap03Qx7NkP4mRt8WbZ"  # dlv_snap03's, 25 characters


def titles_of(app: HooktapApp) -> str:
    return next(line for line in screen_text(app).splitlines() if "event type" in line)


def row_line(text: str, marker: str) -> str:
    return next(line for line in text.splitlines() if marker in line and "15:07:01" in line)


async def test_columns_follow_the_terminal_from_80_to_200_columns(history: Store) -> None:
    async with opened(history, (80, 24)) as (app, pilot):
        text = screen_text(app)
        lines = text.splitlines()
        titles = next(i for i, line in enumerate(lines) if "event type" in line)
        # One line of titles, then the rows: the titles do not wrap.
        assert "flags" in lines[titles] and "took" in lines[titles]
        assert "15:07:38" in lines[titles + 1]
        assert "svix-id" not in lines[titles]
        row = row_line(text, "onboarding.delayed")
        for cell in ("15:07:01", "valid", "500", "18 ms", "retry", "+1 re-sent"):
            assert cell in row, (cell, row)
        assert "06-15" not in row  # no room for the date
        # The header: the target whole, on its own line.
        assert "history only" in text

        await pilot.resize_terminal(200, 50)
        await wait_until(pilot, lambda: "svix-id" in titles_of(app), what="wide columns")
        await pilot.pause()
        text = screen_text(app)
        row = row_line(text, "onboarding.delayed")
        assert SVIX_ID in row  # whole, not cut at 16 characters
        assert "06-15 15:07:01" in row and "POST /webhooks/pivotal" in row
        assert "path" in titles_of(app)


async def test_z_gives_the_detail_the_whole_screen_and_esc_gives_it_back(history: Store) -> None:
    async with opened(history, (80, 24)) as (app, pilot):
        panel = app.query_one("#list-panel")
        body = app.query_one("#request-scroll")
        small = body.size.height
        assert "Body" not in screen_text(app)  # headers fill the few lines there are
        await pilot.press("z")
        await pilot.pause()
        assert not panel.display and app.focused is body
        assert body.size.height >= small + 9
        assert "Body" in screen_text(app)
        assert "367 bytes, JSON" in screen_text(app)
        await pilot.press("down")  # the keys scroll the detail now
        await pilot.pause()
        assert body.scroll_y == 1
        await pilot.press("escape")
        await pilot.pause()
        assert panel.display and app.focused is app.deliveries
        await pilot.press("z", "z")
        await pilot.pause()
        assert panel.display and app.focused is app.deliveries
