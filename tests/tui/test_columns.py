"""The delivery list's columns and the header's words, by width: pure functions."""

from __future__ import annotations

from hooktap.tui.columns import layout
from hooktap.tui.feed import Counts
from hooktap.tui.widgets.header import counts_forms, fit_info, health_text, paused_text, route_forms


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
    # Filtered and unrouted ones are counted apart, when there are any, so received adds up.
    skipped = counts_forms(Counts(5, 2, 1, 0, 0, not_forwarded=2), "this session")
    assert skipped[0] == (
        "this session: received 5 · forwarded 2 · failed 1 · not forwarded 2 · "
        "sig:invalid 0 · sig:expired 0"
    )
    assert "not forwarded 2" in skipped[1] and "not forwarded" not in skipped[2]
    assert paused_text(True, 3, narrow=True) == "‖ paused · 3 waiting"
    assert paused_text(True, None, narrow=False) == "‖ paused: deliveries wait at the relay"
    assert paused_text(False, 3, narrow=False) == ""


def test_with_routes_the_target_column_comes_early_and_the_header_names_every_route() -> None:
    def routed(width: int) -> list[str]:
        return [c.name for c in layout(width, targets=True).columns]

    assert "target" not in routed(77)  # 80 columns: the detail's title says where instead
    assert routed(97) == ["time", "type", "target", "sig", "status", "took", "flags"]
    assert layout(97, targets=True).width_of("target") >= len("localhost:40001")
    assert "target" in routed(117) and "svix" in routed(117)
    for width in range(30, 260):
        assert len(layout(width, targets=True).header(utc=False)) == width, width
    forms = route_forms(
        [
            ("customer.*", "http://localhost:8001/hooks"),
            ("task.*", "http://127.0.0.1:8002/webhooks/pivotal"),
            (None, "https://handler.example/pivotal"),
        ],
        ["customer.*", "task.*"],
    )
    assert forms == [
        "→ customer.*=localhost:8001/hooks · task.*=127.0.0.1:8002/webhooks/pivotal · "
        "https://handler.example/pivotal · only customer.*,task.*",
        "→ customer.*=localhost:8001 · task.*=127.0.0.1:8002 · handler.example "
        "· only customer.*,task.*",
        "→ customer.*=:8001 · task.*=:8002 · handler.example · only customer.*,task.*",
        "→ customer.*=:8001 · task.*=:8002 · handler.example",
        "→ 3 routes",
    ]
    assert route_forms([(None, "http://localhost:8000/webhooks/pivotal")]) == [
        "→ localhost:8000/webhooks/pivotal",
        "→ localhost:8000",
        "→ :8000",
    ]
    assert health_text(["localhost:8000", "127.0.0.1:8002"]) == (
        "✕ localhost:8000, 127.0.0.1:8002 down"
    )
    assert health_text([]) == ""
