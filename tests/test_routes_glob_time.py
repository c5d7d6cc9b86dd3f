"""A route's glob against a sender's event type takes time linear in the type, whatever the
type: the listener runs it on its event loop for every delivery, and a backtracking regular
expression took seconds on a crafted type of a few KB. A guard against exponential time,
not a benchmark: the bound is generous."""

from __future__ import annotations

import sqlite3
import time

import pytest

from hooktap.listen.routes import Routing, build_routing, type_matches


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*.*ed", "a." * 30_000, False),  # 60 KB: 1.9 s with the regex
        ("*.*.*ed", "a." * 2_000, False),  # 4 KB: 14.5 s with the regex
        ("*.*.*ed", "a." * 2_000 + "ed", True),
        ("*a*a*a*a*a*b", "a" * 60_000, False),
        ("*[a-c]*?*[^x]ed", "b." * 30_000, False),
    ],
    ids=["60KB-2stars", "4KB-3stars", "4KB-3stars-match", "60KB-6stars", "60KB-sets"],
)
def test_pathological_types_finish_quickly_and_right(
    pattern: str, event_type: str, expected: bool
) -> None:
    started = time.perf_counter()
    assert type_matches(pattern, event_type) is expected
    assert time.perf_counter() - started < 1.0


def test_a_routing_decides_a_crafted_type_quickly() -> None:
    routing: Routing = build_routing(["*.*.*ed=localhost:8001", "localhost:8000"], "*.*.*ed,task.*")
    started = time.perf_counter()
    assert routing.decide("a." * 2_000).outcome == "filtered"
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "event_type"),
    [("*.*ed", "a.b.completed"), ("*.*.*ed", "a.b.c.ed"), ("*.*.*ed", "a.b.c"), ("*ed", "ed")],
)
def test_short_cases_agree_with_sqlite(pattern: str, event_type: str) -> None:
    with sqlite3.connect(":memory:") as db:
        (store,) = db.execute("SELECT ? GLOB ?", (event_type, pattern)).fetchone()
    assert type_matches(pattern, event_type) is bool(store)
