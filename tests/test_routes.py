"""Routes and --events (listen/routes.py): what a pattern matches, which route a type takes,
and what `--forward` text means. Patterns are held to the store's own SQL for `type:` on a
real SQLite database, since a route and the filter that finds its deliveries must agree."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hooktap.filters import Filter
from hooktap.listen.routes import (
    Decision,
    Route,
    build_routing,
    parse_events,
    parse_route,
    shadowed_routes,
    type_matches,
    unknown_patterns,
)
from hooktap.listen.target import parse_target
from hooktap.pivotal.catalog import event_types
from hooktap.store.sql import filter_where

KNOWN = event_types()


# --- patterns mean what `type:` means ------------------------------------------------------


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE deliveries (seq INTEGER PRIMARY KEY, event_type TEXT)")
    yield conn
    conn.close()


def store_matches(conn: sqlite3.Connection, pattern: str, types: list[str | None]) -> list[bool]:
    """Which of `types` the history's `type:PATTERN` filter finds, with the store's SQL."""
    conn.execute("DELETE FROM deliveries")
    conn.executemany(
        "INSERT INTO deliveries (seq, event_type) VALUES (?, ?)", list(enumerate(types))
    )
    where, params = filter_where(Filter(types=(pattern,)), None)
    sql = f"SELECT seq FROM deliveries d WHERE {' AND '.join(where)}"
    found = {seq for (seq,) in conn.execute(sql, params)}
    return [i in found for i in range(len(types))]


def valid_pattern(text: str) -> bool:
    try:
        parse_events(text)
    except ValueError:
        return False
    return True


# Small alphabets, so that patterns and types share characters and sets and ranges hit.
patterns = st.text(alphabet="ab.*?[]^!-", min_size=1, max_size=9).filter(valid_pattern)
types = st.one_of(
    st.none(),
    st.sampled_from(KNOWN),
    st.text(alphabet="ab.[]^!-\x00\né", max_size=8),
)


@given(pattern=patterns, kinds=st.lists(types, min_size=1, max_size=8))
def test_a_pattern_matches_what_type_finds_in_history(
    db: sqlite3.Connection, pattern: str, kinds: list[str | None]
) -> None:
    assert [type_matches(pattern, k) for k in kinds] == store_matches(db, pattern, kinds)


@pytest.mark.parametrize(
    ("pattern", "event_type"),
    [
        ("[!a]b", "xb"),  # fnmatch: "not a"; GLOB: "! or a"
        ("[!a]b", "!b"),
        ("[^a]b", "xb"),  # GLOB's negation
        ("[^a]b", "ab"),
        ("a][b", "a][b"),  # a `[` never closed: GLOB matches nothing
        ("[]-a]b", "-b"),  # `]` first is a member, and `-` after it a plain character
        ("[c-a]", "c"),  # a reversed range is empty, its first end still a member
        ("[c-a]", "b"),
        ("*b", "a\x00b"),  # GLOB stops reading at a NUL
        ("a*", "a\x00b"),
        ("customer", "customer"),
        ("customer", "customer.updated"),
        ("customer", "customers.updated"),
        ("customer.*", "customer.at_risk"),
        ("task.*ed", "task.completed"),
        ("task.*ed", "task.overdue"),
    ],
)
def test_glob_corners_agree_with_the_store(
    db: sqlite3.Connection, pattern: str, event_type: str
) -> None:
    assert [type_matches(pattern, event_type)] == store_matches(db, pattern, [event_type])


def test_a_bare_name_is_that_type_and_its_sub_types() -> None:
    assert type_matches("customer", "customer")
    assert type_matches("customer", "customer.updated")
    assert not type_matches("customer", "customers.updated")
    assert not type_matches("customer", "customer_updated")
    assert not type_matches("customer.updated", "customer")
    assert not type_matches("customer", None)  # not a Pivotal envelope: matches nothing
    assert [t for t in KNOWN if type_matches("onboarding", t)] == [
        "onboarding.created",
        "onboarding.updated",
        "onboarding.delayed",
        "onboarding.completed",
        "onboarding.deleted",
    ]


# --- the first matching route takes it -----------------------------------------------------

route_patterns = st.sampled_from(
    ["customer", "customer.*", "task.*", "*.created", "task.completed", "*", "[ct]*", "*.?e*"]
)


@given(
    pats=st.lists(route_patterns, max_size=5),
    fallback_at=st.one_of(st.none(), st.integers(0, 5)),
    event_type=st.one_of(st.none(), st.sampled_from(KNOWN), st.text(max_size=12)),
)
def test_a_type_goes_to_exactly_the_first_route_that_takes_it(
    pats: list[str], fallback_at: int | None, event_type: str | None
) -> None:
    forwards = [f"{p}=localhost:{8001 + i}/r{i}" for i, p in enumerate(pats)]
    if fallback_at is not None:
        forwards.insert(min(fallback_at, len(forwards)), "localhost:8000/fallback")
    assume(forwards)
    routing = build_routing(forwards)
    # The patterned routes keep their order; the fallback, wherever it was given, is last.
    assert [r.pattern for r in routing.routes if r.pattern] == pats
    assert all(r.pattern is not None for r in routing.routes[:-1])
    decision = routing.decide(event_type)
    takers = [r for r in routing.routes if r.takes(event_type)]
    if not takers:
        assert decision == Decision("unrouted", None)
        assert fallback_at is None
        return
    assert decision.outcome == "forward"
    assert decision.route is takers[0] and decision.target == takers[0].target
    wanted = next(
        (f for f in forwards if "=" in f and type_matches(f.split("=")[0], event_type)),
        "localhost:8000/fallback",
    )
    assert decision.target == parse_target(wanted.split("=")[-1])


def test_routes_as_the_issue_writes_them() -> None:
    routing = build_routing(
        [
            "customer.*=localhost:8001/hooks",
            "task.*=localhost:8002/webhooks/pivotal",
            "localhost:8000/webhooks/pivotal",
        ]
    )
    where = {t: str(routing.decide(t).target) for t in KNOWN}
    assert where["customer.at_risk"] == "http://localhost:8001/hooks"
    assert where["task.completed"] == "http://localhost:8002/webhooks/pivotal"
    assert where["contact.created"] == "http://localhost:8000/webhooks/pivotal"
    assert routing.decide(None).target == routing.fallback  # a non-envelope body
    assert [str(t) for t in routing.targets] == [
        "http://localhost:8001/hooks",
        "http://localhost:8002/webhooks/pivotal",
        "http://localhost:8000/webhooks/pivotal",
    ]
    assert routing.primary == routing.fallback and not routing.simple
    assert routing.describe() == [
        "customer.*=http://localhost:8001/hooks",
        "task.*=http://localhost:8002/webhooks/pivotal",
        "http://localhost:8000/webhooks/pivotal",
    ]


def test_events_filter_before_routes_and_no_fallback_leaves_types_unrouted() -> None:
    routing = build_routing(["customer.*=8001", "task.*=8002"], "customer.*, task.completed")
    assert routing.events == ("customer.*", "task.completed")
    assert routing.decide("customer.updated").target == parse_target("8001")
    assert routing.decide("task.completed").target == parse_target("8002")
    filtered = routing.decide("task.created")
    assert filtered == Decision("filtered", None) and "not in --events" in filtered.reason
    assert routing.decide(None).outcome == "filtered"
    unrouted = build_routing(["customer.*=8001"]).decide("task.created")
    assert unrouted.outcome == "unrouted" and "no fallback route" in unrouted.reason
    assert Decision("forward", parse_target("8001")).reason == ""
    assert routing.primary == parse_target("8001")  # no fallback: the first route's


def test_one_target_is_simple_and_shared_targets_are_probed_once() -> None:
    assert build_routing(["8000"]).simple
    assert not build_routing(["8000"], "customer.*").simple
    assert not build_routing(["customer.*=8000"]).simple
    shared = build_routing(["customer.*=8000/h", "task.*=8001", "8000/h"])
    assert [str(t) for t in shared.targets] == ["http://localhost:8000/h", "http://localhost:8001/"]


# --- what `--forward` text means ----------------------------------------------------------

hosts = st.sampled_from(["localhost", "127.0.0.1", "example.com", "[::1]"])
segments = st.text(alphabet="abz09_.~=-", min_size=1, max_size=6)


@given(
    host=hosts,
    port=st.integers(1, 65535),
    path=st.lists(segments, min_size=1, max_size=3).filter(lambda p: "=" in "".join(p)),
    scheme=st.sampled_from(["", "http://", "https://"]),
)
def test_a_target_with_equals_in_its_path_stays_a_target(
    host: str, port: int, path: list[str], scheme: str
) -> None:
    text = f"{scheme}{host}:{port}/{'/'.join(path)}"
    route = parse_route(text)
    assert route.pattern is None
    assert route.target == parse_target(text) and "=" in route.target.path


@given(port=st.integers(1, 65535), path=st.lists(segments, min_size=1, max_size=3))
def test_a_port_first_target_with_equals_stays_a_target(port: int, path: list[str]) -> None:
    text = f"{port}/{'/'.join(path)}"
    route = parse_route(text)
    assert route.pattern is None and route.target == parse_target(text)


@given(pattern=st.one_of(route_patterns, patterns), port=st.integers(1, 65535))
def test_a_route_reads_back_from_what_it_prints(pattern: str, port: int) -> None:
    route = parse_route(f" {pattern} = localhost:{port}/a=b ")
    assert route == Route(pattern, parse_target(f"localhost:{port}/a=b"))
    assert parse_route(str(route)) == route
    fallback = parse_route(f"localhost:{port}/hooks")
    assert parse_route(str(fallback)) == fallback


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("=localhost:8001", "has no event-type pattern before '='"),
        ("customer.*=", "has no target after '='"),
        ("cust omer=8001", "route pattern 'cust omer' is not an event type or a glob"),
        ("customer.[a=8001", "has unbalanced [ ]"),
        ("customer.*=ftp://x", "must use http or https"),
        # A port with a query is a target, refused for it; never the pattern `8000?x`.
        ("8000?x=1", "must not have a query"),
    ],
)
def test_bad_routes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_route(text)
    assert message in str(caught.value)


def test_two_fallbacks_are_refused_and_no_route_is_an_error() -> None:
    with pytest.raises(ValueError) as caught:
        build_routing(["8000", "customer.*=8001", "8002"])
    assert "only one can be the fallback" in str(caught.value)
    assert "http://localhost:8000/ and http://localhost:8002/" in str(caught.value)
    with pytest.raises(ValueError, match="no --forward target"):
        build_routing([])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer.*,task.completed", ("customer.*", "task.completed")),
        ("customer.*, task.completed", ("customer.*", "task.completed")),
        ("  customer.*   task.completed ", ("customer.*", "task.completed")),
        ("task.[^c]*", ("task.[^c]*",)),
    ],
)
def test_events_are_separated_by_commas_or_spaces(text: str, expected: tuple[str, ...]) -> None:
    assert parse_events(text) == expected
    assert build_routing(["8000"], text).events == expected
    assert build_routing(["8000"], [text]).events == expected  # hooktap.toml's list


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has an empty pattern"),
        ("customer.*,", "has an empty pattern"),
        ("a,,b", "has an empty pattern"),
        ("a, ,b", "has an empty pattern"),
        ("customer/*", "is not an event type or a glob"),
        ("task.[c", "unbalanced [ ]"),
    ],
)
def test_bad_events_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_events(text)
    assert message in str(caught.value)


def test_unknown_patterns_are_the_ones_no_known_type_matches() -> None:
    routing = build_routing(
        ["custmer.*=8001", "customer=8002", "task.[^c]*=8003", "8000"], "tsk.*,task.*"
    )
    assert unknown_patterns(routing, KNOWN) == ["tsk.*", "custmer.*"]


def test_a_route_an_earlier_one_takes_every_type_of_is_shadowed() -> None:
    routing = build_routing(
        [
            "task.*=8001",
            "task.completed=8002",  # task.* took it: never used
            "customer.updated=8003",
            "customer=8004",  # customer.updated went before, the other customer types not
            "*.created=8005",  # customer.created and task.created went before; not the rest
            "8000",
        ]
    )
    assert [str(r) for r in shadowed_routes(routing, KNOWN)] == [
        "task.completed=http://localhost:8002/"
    ]
    assert (
        shadowed_routes(build_routing(["tsk.*=8001", "8000"]), KNOWN) == []
    )  # unknown, not shadowed
