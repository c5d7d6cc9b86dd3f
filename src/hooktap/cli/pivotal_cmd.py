"""`hooktap events`, `hooktap trigger` and `hooktap check`: thin over hooktap.pivotal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import click

from hooktap.cli import check_report
from hooktap.cli.common import (
    BadInput,
    Finite,
    required_secret,
    secret_option,
    timeout_option,
    valid_relay_urls,
    valid_target,
)
from hooktap.cli.landing import History
from hooktap.cli.routing import resolve_routing, routing_options
from hooktap.listen import state as listener_state
from hooktap.pivotal import catalog
from hooktap.pivotal.checks import FAIL, Report, run_checks
from hooktap.pivotal.signing import signed_headers

SECRET_HELP = "Your endpoint's signing secret (whsec_...), used to sign what is sent."
IN_FLIGHT = 32  # trigger --count: deliveries awaiting an answer at once
SEND_TIMEOUT = 30.0  # seconds; the relay itself gives the handler 10
LANDING_WAIT_S = 1.0  # trigger: how long to look for a delivery in the listener's history


def _say(as_json: bool) -> Callable[[str], None]:
    """Human lines go to stdout, or to stderr when stdout is reserved for JSON."""
    return lambda line: click.echo(line, err=as_json)


def _emit(record: dict[str, Any]) -> None:
    click.echo(json.dumps(record, ensure_ascii=False))


# --- events ----------------------------------------------------------------------------------


@click.command("events")
@click.argument("event_type", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON line per event type, sample included."
)
def events_cmd(event_type: str | None, as_json: bool) -> None:
    """List the Pivotal event types hooktap knows, or show one type's sample payload.

    Types marked * are named in Pivotal's documentation; the others complete the set of
    about twenty across customer, contact, onboarding and task.

    \b
    Examples:
      hooktap events
      hooktap events customer.at_risk
      hooktap events --json | jq -r .type
    """
    entries = catalog.events()
    if event_type is not None:
        if event_type not in catalog.event_types():
            raise BadInput(str(catalog.UnknownEventType(event_type, catalog.event_types())))
        entries = [e for e in entries if e["type"] == event_type]
        if not as_json:
            entry = entries[0]
            click.echo(f"{entry['type']} ({entry['object']}): {entry['description']}")
            click.echo(json.dumps(entry["sample"], indent=2, ensure_ascii=False))
            return
    if as_json:
        for entry in entries:
            _emit(entry)
        return
    width = max(len(e["type"]) for e in entries) + 2
    for entry in entries:
        mark = "*" if entry["documented"] else " "
        click.echo(f"{mark} {entry['type']:<{width}}{entry['object']:<12}{entry['description']}")
    click.echo("\n* named in Pivotal's docs. `hooktap events TYPE` shows a sample payload.")


# --- trigger ---------------------------------------------------------------------------------


def _default_url(relay: str | None) -> str:
    """The running listener's webhook URL, or the channel kept for a standalone relay."""
    from hooktap.listen.channel import ChannelsFileError
    from hooktap.listen.state import webhook_url_for

    try:
        return webhook_url_for(valid_relay_urls(relay) if relay is not None else None)
    except (LookupError, ChannelsFileError) as exc:
        raise BadInput(str(exc)) from None


def _read_data_file(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read --data-file {path}: {exc}") from None
    try:
        return catalog.parse_json(text, f"--data-file {path}")
    except catalog.BadOverride as exc:
        raise BadInput(str(exc)) from None


def _build(
    event_type: str, record: Any, overrides: list[tuple[str, Any]], allow_new_fields: bool
) -> tuple[dict[str, Any], bytes]:
    doc = catalog.sample(event_type)
    if record is not None:
        doc["data"]["object"] = record
    catalog.override(doc, event_type, overrides, allow_new_fields=allow_new_fields)
    return doc, catalog.encode(doc)


async def _send_all(
    url: str,
    secret: str,
    make: Callable[[], tuple[dict[str, Any], bytes]],
    count: int,
    rate: float | None,
    report: Callable[[dict[str, Any]], None],
    history: History | None = None,
    wait: float = 0.0,
) -> int:
    """Send `count` deliveries, paced to `rate` per second if given; returns how many failed.

    Launches follow a fixed schedule (start + i/rate) rather than sleeping between sends, so
    slow answers do not drag the rate down; IN_FLIGHT bounds what waits for an answer. Each
    answered delivery found in `history` (looked for up to `wait` seconds) gets its target
    and state added to its record.
    """
    gate = asyncio.Semaphore(IN_FLIGHT)
    failures = 0
    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT)

    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(doc: dict[str, Any], body: bytes) -> None:
            nonlocal failures
            headers = signed_headers(secret, body)
            record: dict[str, Any] = {
                "event": "sent",
                "type": doc.get("type"),
                "id": doc.get("id"),
                "svix_id": dict(headers)["svix-id"],
                "url": url,
                "status": None,
                "duration_ms": None,
                "error": None,
            }
            started = time.monotonic()
            try:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    await resp.read()
                    record["status"] = resp.status
            except TimeoutError:
                record["error"] = f"no answer in {SEND_TIMEOUT:g} s"
            except aiohttp.ClientError as exc:
                record["error"] = str(exc) or type(exc).__name__
            finally:
                record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
                gate.release()
            status = record["status"]
            if status is None or not 200 <= status <= 299:
                failures += 1
            if history is not None and status is not None:
                # A 202 is the relay keeping it while no listener is connected (or the handler's
                # own, found at once): nothing to wait for.
                patience = 0.0 if status == 202 else wait
                landing = await asyncio.to_thread(history.find, record["svix_id"], patience)
                if landing is not None:
                    record.update(landing.fields())
                    record["landing"] = landing.describe()
            report(record)

        start = time.monotonic()
        tasks = []
        for i in range(count):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await gate.acquire()
            doc, body = make()
            tasks.append(asyncio.create_task(one(doc, body)))
        await asyncio.gather(*tasks)
    return failures


@click.command("trigger")
@click.argument("event_type")
@click.option(
    "--url",
    metavar="URL",
    help="Where to send it. Default: the running listener's webhook URL, or your channel on "
    "the relay named by --relay.",
)
@click.option(
    "--relay",
    envvar="HOOKTAP_RELAY",
    show_envvar=True,
    metavar="URL",
    help="A standalone relay (hooktap relay): send to the channel HOOKTAP_HOME keeps there, "
    "even while no listener runs (the relay holds deliveries for it).",
)
@secret_option(SECRET_HELP)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a field by dotted path; the record is in data.object, e.g. "
    "data.object.health_score=12. VALUE is JSON when it parses (12, true, null, "
    "'\"12\"' for text), else taken as text. A path the event does not have is refused, "
    "with the nearest one it has. A number too large for JSON parsers (1e999, which they "
    "read as Infinity, not JSON) is refused rather than silently sent as text; quote it "
    "to send text.",
)
@click.option(
    "--allow-new-fields",
    is_flag=True,
    help="Let --set add fields the event's schema does not have (to test how your handler "
    "copes with a field Pivotal may add later).",
)
@click.option(
    "--data-file",
    metavar="FILE",
    help="A JSON file whose content replaces the sample's record (data.object).",
)
@click.option(
    "--count", default=1, show_default=True, type=click.IntRange(1), help="How many to send."
)
@click.option(
    "--rate",
    type=Finite(0, None, min_open=True),
    metavar="R",
    help="Deliveries per second (default: as fast as the receiver answers).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per delivery sent.")
def trigger_cmd(
    event_type: str,
    url: str | None,
    relay: str | None,
    secret: str | None,
    sets: tuple[str, ...],
    allow_new_fields: bool,
    data_file: str | None,
    count: int,
    rate: float | None,
    as_json: bool,
) -> None:
    """Send realistic, correctly signed Pivotal events, as Pivotal would.

    Each delivery gets a fresh event id, svix-id and timestamp. Exits 1 if any delivery
    did not get a 2xx answer.

    Sent to the running listener, each line also says where the delivery landed, from the
    listener's history: the handler it was forwarded to (its route's, with routes), or
    filtered or unrouted and why ("target" and "state" in --json).

    \b
    Examples:
      hooktap trigger customer.at_risk
      hooktap trigger customer.updated --set data.object.health_score=12 \\
        --set data.object.name=Acme
      hooktap trigger task.completed --url http://localhost:8000/hook --count 50 --rate 10
    """
    if event_type not in catalog.event_types():
        raise BadInput(str(catalog.UnknownEventType(event_type, catalog.event_types())))
    key = required_secret(secret)
    try:
        overrides = [catalog.parse_override(s) for s in sets]
    except catalog.BadOverride as exc:
        raise BadInput(f"--set: {exc}") from None
    data = _read_data_file(data_file) if data_file is not None else None
    try:  # fail on a bad path before sending anything
        _build(event_type, data, overrides, allow_new_fields)
    except catalog.UnknownField as exc:
        raise BadInput(f"--set {exc.path}: {exc}; --allow-new-fields adds it anyway") from None
    except catalog.BadOverride as exc:
        raise BadInput(f"--set: {exc}") from None
    # To the running listener, the delivery is in its history by the time the answer comes;
    # a moment's grace covers what that misses (a listener that was just reconnecting).
    wait = LANDING_WAIT_S if url is None else 0.0
    if url is None:
        url = _default_url(relay)
    elif not url.startswith(("http://", "https://")):
        raise BadInput(f"--url must be an http(s) URL like http://localhost:8000/hook, got {url!r}")

    say = _say(as_json)

    def report(record: dict[str, Any]) -> None:
        landing = record.pop("landing", None)
        if as_json:
            _emit(record)
            return
        answer = record["status"] if record["status"] is not None else record["error"]
        line = f"→ {record['type']} {record['id']} {answer} in {record['duration_ms']:.0f} ms"
        say(f"{line}; {landing}" if landing else line)

    history = History()
    try:
        failures = asyncio.run(
            _send_all(
                url,
                key,
                lambda: _build(event_type, data, overrides, allow_new_fields),
                count,
                rate,
                report,
                history,
                wait,
            )
        )
    finally:
        history.close()
    if failures:
        say(f"{failures} of {count} deliveries did not get a 2xx from {url}")
        raise SystemExit(1)


# --- check ---------------------------------------------------------------------------------

CHECK_FORWARD_HELP = (
    "Your handler: 8000, localhost:8000/webhooks/pivotal, or a full URL. Repeat as "
    "PATTERN=TARGET to check each route's handler with an event type it takes, as "
    "`hooktap listen` routes them. Default: the routes in ./hooktap.toml."
)


def _check_url(forward: str) -> str:
    return valid_target(forward).url()


@click.command("check")
@routing_options(CHECK_FORWARD_HELP)
@secret_option(SECRET_HELP)
@timeout_option("Seconds to wait for each answer (Pivotal gives up after 10).")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON line per check, then a summary line."
)
def check_cmd(
    forwards: tuple[str, ...],
    events: str | None,
    config_path: Path | None,
    secret: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Test your local handler against Pivotal's rules and print a report.

    Sends genuine, forged, stale, retried and out-of-order deliveries, signed with your
    secret, and checks each answer. A refusal counts only if the same URL accepted the
    genuine delivery. What hooktap cannot see (whether a retry's work was done twice) is
    reported as UNKNOWN, never as passed. Exits 1 when a check fails, else 0.

    With routes (repeated --forward PATTERN=TARGET, or ./hooktap.toml), each route's handler
    is checked with the first event type the routes send it, and a route no known type
    reaches is skipped, saying why; JSON lines then carry the route and event_type.

    \b
    Examples:
      PIVOTAL_WEBHOOK_SECRET=whsec_... hooktap check --forward localhost:8000/webhooks/pivotal
      hooktap check -f 'task.*=localhost:8002/webhooks/pivotal' -f localhost:8000/webhooks/pivotal
    """
    key = required_secret(secret)
    # Unknown patterns are reported per route below, as skipped.
    routing = resolve_routing(forwards, events, config_path, warn=False)
    if routing is None:
        routing = listener_state.running_routing()  # the handlers `hooktap listen` feeds now
    if routing is None:
        raise BadInput(
            "no handler to check: give --forward TARGET, e.g. --forward "
            "localhost:8000/webhooks/pivotal, or run it where a hooktap.toml lists routes "
            "(or --config FILE), or while `hooktap listen` runs"
        )
    if routing.simple:
        report = asyncio.run(run_checks(str(routing.primary), key, timeout=timeout))
        if as_json:
            check_report.emit_report(report)
        else:
            check_report.print_report(report)
        if report.count(FAIL):
            raise SystemExit(1)
        return
    planned = check_report.plan(routing, catalog.event_types())
    if not any(p.event_type for p in planned):
        reasons = "; ".join(f"{p.route}: {p.skipped}" for p in planned)
        raise BadInput(f"no route can be checked: {reasons}")
    done = asyncio.run(_check_routes(planned, key, timeout))
    if as_json:
        for p, report in done:
            if report is None:
                about = check_report.about(p)
                check_report.emit({"event": "skipped", **about, "reason": p.skipped})
            else:
                check_report.emit_report(report, check_report.about(p))
    else:
        check_report.print_routes(done)
    if any(report is not None and report.count(FAIL) for _, report in done):
        raise SystemExit(1)


async def _check_routes(
    planned: list[check_report.Planned], secret: str, timeout: float
) -> list[tuple[check_report.Planned, Report | None]]:
    """One route after another: a dev server behind two routes sees one request at a time."""
    done: list[tuple[check_report.Planned, Report | None]] = []
    for p in planned:
        report = None
        if p.event_type is not None:
            report = await run_checks(p.url, secret, timeout=timeout, event_type=p.event_type)
        done.append((p, report))
    return done
