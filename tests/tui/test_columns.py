"""The delivery list's columns and the header's words, by width: pure functions."""

from __future__ import annotations

from hooktap.tui.columns import layout
from hooktap.tui.feed import Counts
from hooktap.tui.widgets.header import counts_forms, fit_info, paused_text


def names(width: int) -> list[str]:
    return [c.name for c in layout(width).columns]


def test_columns_give_way_by_priority_and_always_fill_the_width() -> None:
    # 80 columns less padding and scrollbar: what tells a failure apart stays, svix-id goes.
    assert names(77) == ["time", "type", "sig", "status", "took", "flags"]
    assert layout(77).width_of("time") == 8  # no date
    assert layout(77).width_of("flags") >= len("retry dup held +1 re-sent") - 1
    # Wider: svix-id comes back, then the date, then whole svix-ids, then the path.
    assert names(100) == ["time", "type", "svix", "sig", "status", "took", "flags"]
    assert layout(100).width_of("time") == 14
    assert layout(127).width_of("svix") == 32
    assert names(197) == ["time", "type", "svix", "path", "sig", "status", "took", "flags"]
    assert layout(197).width_of("type") == 32
    # Very narrow: the flags and type shrink first, then took and signature go.
    assert names(40) == ["type", "sig", "status", "flags"]
    for width in range(30, 260):
        assert len(layout(width).header(utc=True)) == width, width


def test_header_counts_use_the_filters_words_and_give_way_to_the_news() -> None:
    forms = counts_forms(Counts(1200, 1100, 100, 2, 1), "this session")
    assert forms[0] == (
        "this session: received 1,200 · forwarded 1,100 · failed 100 · "
        "sig:invalid 2 · sig:expired 1"
    )
    assert fit_info(forms, "", 200) == forms[0]
    assert fit_info(forms, "", 60) == forms[2]
    assert fit_info(forms, "", 60).endswith("2 invalid · 1 expired")
    # The connection's news is never dropped for counts.
    news = "relay not reachable (connection refused); next try in ~4 s"
    assert fit_info(forms, news, 70) == news
    assert fit_info(forms, news, 90) == f"{forms[3]}   {news}"
    assert paused_text(True, 3, narrow=True) == "‖ paused · 3 waiting"
    assert paused_text(True, None, narrow=False) == "‖ paused: deliveries wait at the relay"
    assert paused_text(False, 3, narrow=False) == ""
