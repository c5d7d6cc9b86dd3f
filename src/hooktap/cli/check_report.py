"""What `hooktap check` sends to each route's handler, and how it shows what came back.

With routes, each handler is checked with an event type it would really get: the first catalog
type the routing sends to it (first match wins, --events applies), and for the fallback the
type a lone handler is checked with when that lands there. A handler that only knows task
events may well refuse a customer event, and that refusal would say nothing about Pivotal's
rules. A route no known type reaches is skipped, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from hooktap.listen.routes import Route, Routing
from hooktap.pivotal.checks import EVENT, FAIL, PASS, UNKNOWN, CheckResult, Report


@dataclass(frozen=True)
class Planned:
    """One route to check: with `event_type`, or skipped (None) for `skipped`."""

    route: Route
    event_type: str | None
    skipped: str = ""

    @property
    def url(self) -> str:
        return str(self.route.target)


def plan(routing: Routing, known: Sequence[str]) -> list[Planned]:
    """Each route, in order, with the event type to check its handler with."""
    planned = []
    for route in routing.routes:
        lands = [t for t in known if routing.decide(t).route is route]
        if not lands:
            planned.append(Planned(route, None, _unreached(routing, route, known)))
        elif route.pattern is None and EVENT in lands:
            planned.append(Planned(route, EVENT))
        else:
            planned.append(Planned(route, lands[0]))
    return planned


def _unreached(routing: Routing, route: Route, known: Sequence[str]) -> str:
    """Why no known event type reaches `route`."""
    takes = [t for t in known if route.takes(t)]
    if not takes:
        return f"{route.pattern!r} matches no known Pivotal event type (see `hooktap events`)"
    kept = [t for t in takes if routing.decide(t).outcome != "filtered"]
    if not kept:
        return f"--events leaves out every type it takes ({', '.join(takes)})"
    earlier = dict.fromkeys(str(routing.decide(t).route) for t in kept)
    return f"every type it takes goes to a route before it ({', '.join(earlier)})"


def emit(record: dict[str, Any]) -> None:
    click.echo(json.dumps(record, ensure_ascii=False))


def as_dict(result: CheckResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "verdict": result.verdict,
        "passed": None if result.verdict == UNKNOWN else result.passed,
        "expected": result.expected,
        "got": result.got,
    }


def emit_report(report: Report, about: dict[str, Any] | None = None) -> None:
    """JSON lines: one per check, then the summary; `about` (the route) joins each."""
    extra = about or {}
    for r in report.results:
        emit({"event": "check", **as_dict(r), **extra})
    emit(
        {
            "event": "summary",
            "url": report.url,
            "passed": report.count(PASS),
            "failed": report.count(FAIL),
            "unknown": report.count(UNKNOWN),
            "diagnosis": report.diagnosis,
            **extra,
        }
    )


def about(planned: Planned) -> dict[str, Any]:
    return {
        "route": str(planned.route),
        "pattern": planned.route.pattern,
        "url": planned.url,
        "event_type": planned.event_type,
    }


_LABELS = {PASS: ("PASS", "green"), FAIL: ("FAIL", "red"), UNKNOWN: ("UNKNOWN", "yellow")}


def _label(word: str, colour: str) -> str:
    return click.style(word, fg=colour) + " " * (7 - len(word))


def print_report(report: Report) -> None:
    click.echo(f"Checking {report.url} against Pivotal's rules\n")
    for r in report.results:
        label = _label(*_LABELS[r.verdict])
        if r.passed:
            click.echo(f"  {label}  {r.name}: {r.got}")
        else:
            click.echo(f"  {label}  {r.name}")
            click.echo(f"           {'expected:':<10}{r.expected}")
            click.echo(f"           {'got:' if r.verdict == FAIL else 'seen:':<10}{r.got}")
    total, unknown = len(report.results), report.count(UNKNOWN)
    line = f"\n{report.count(PASS)} of {total} checks passed"
    if unknown:
        line += f"; {unknown} could not be judged (UNKNOWN: each says why)"
    click.echo(line + ".")
    if report.diagnosis:
        click.echo(click.style("The target looks wrong: ", fg="red") + report.diagnosis)


def print_routes(done: list[tuple[Planned, Report | None]]) -> None:
    """Each route's report in turn, then one line per route."""
    for planned, report in done:
        if report is None:
            click.echo(f"Route {planned.route}: skipped: {planned.skipped}\n")
            continue
        click.echo(f"Route {planned.route}, checked with {planned.event_type} events:")
        print_report(report)
        click.echo()
    click.echo("Routes:")
    for planned, report in done:
        if report is None:
            click.echo(f"  {_label('SKIPPED', 'yellow')}  {planned.route}: {planned.skipped}")
            continue
        failed = report.count(FAIL)
        label = _label("FAIL", "red") if failed else _label("PASS", "green")
        counts = f"{report.count(PASS)} of {len(report.results)} passed"
        if failed:
            counts += f", {failed} failed"
        click.echo(f"  {label}  {planned.route} ({planned.event_type}): {counts}")
