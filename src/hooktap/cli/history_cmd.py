"""`hooktap deliveries` and `hooktap replay`: thin commands over the store and hooktap.replay.

Human output goes to stdout as tables and sections; with --json, stdout carries JSON only
(one object per line for lists) so scripts can pipe it, and every hint goes to stderr.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, BinaryIO

import click

from hooktap.cli.common import BadInput, secret_option
from hooktap.filters import Filter, build_filter
from hooktap.home import history_db
from hooktap.listen.forward import parse_target
from hooktap.records import Attempt, Delivery
from hooktap.replay import check_options, replay
from hooktap.store import AmbiguousId, Store, StoreError, Summary

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# --- shared helpers -------------------------------------------------------------------------


@contextmanager
def _open_store() -> Iterator[Store]:
    try:
        store = Store(history_db())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    with store:
        yield store


def _filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The filter flags `deliveries` and `replay` share; values may be comma-separated."""
    options = [
        click.option(
            "--type",
            "types",
            multiple=True,
            metavar="GLOB",
            help="Event type or glob: customer.*, task.completed (repeatable).",
        ),
        click.option(
            "--status",
            "statuses",
            multiple=True,
            metavar="STATUS",
            help="Status of the original forward: 5xx, 4xx, 2xx, 401, or err "
            "(no response) (repeatable).",
        ),
        click.option(
            "--signature",
            "signatures",
            multiple=True,
            metavar="VERDICT",
            help="valid, invalid, expired, unsigned or no-secret (repeatable).",
        ),
        click.option(
            "--since",
            metavar="WHEN",
            help="Only deliveries received since: 30m, 1h, 2d, or an ISO time.",
        ),
        click.option(
            "--filter",
            "expression",
            default="",
            metavar="EXPR",
            help="The TUI's filter language, e.g. 'type:customer.* acme' "
            "(bare words search the body).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _make_filter(
    expression: str,
    types: tuple[str, ...],
    statuses: tuple[str, ...],
    signatures: tuple[str, ...],
    since: str | None,
) -> Filter:
    try:
        return build_filter(
            expression, types=types, statuses=statuses, signatures=signatures, since=since
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _lookup(store: Store, delivery_id: str) -> Delivery:
    try:
        delivery = store.get(delivery_id)
    except AmbiguousId as exc:
        raise BadInput(f"{exc}; give more characters") from None
    if delivery is None:
        raise BadInput(
            f"no stored delivery with id {delivery_id!r} (`hooktap deliveries` lists them)"
        )
    return delivery


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(text: str) -> str:
    """Escape control characters so a hostile body cannot drive the user's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _encoded(data: bytes | None, key: str) -> dict[str, Any]:
    """A body for JSON output: text when it is UTF-8, else base64, flagged either way."""
    if data is None:
        return {key: None}
    try:
        return {key: data.decode("utf-8"), f"{key}_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {key: base64.b64encode(data).decode("ascii"), f"{key}_encoding": "base64"}


def _status_text(status: int | None, error: str | None, state: str) -> str:
    if status is not None:
        return str(status)
    if state == "interrupted":
        return "interrupted"
    return "err" if error else "pending"


# --- hooktap deliveries ---------------------------------------------------------------------


@click.group("deliveries", invoke_without_command=True)
@_filter_options
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(0, None),
    help="At most this many, newest first (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, nothing else.")
@click.pass_context
def deliveries_cmd(
    ctx: click.Context,
    types: tuple[str, ...],
    statuses: tuple[str, ...],
    signatures: tuple[str, ...],
    since: str | None,
    expression: str,
    limit: int,
    as_json: bool,
) -> None:
    """List stored deliveries, newest first; `deliveries show ID` prints one whole.

    \b
    Examples:
      hooktap deliveries --since 1h --status 5xx
      hooktap deliveries --type 'customer.*' --signature invalid --json
      hooktap deliveries show dlv_01HV
    """
    if ctx.invoked_subcommand is not None:
        return
    f = _make_filter(expression, types, statuses, signatures, since)
    with _open_store() as store:
        rows = store.query(f, None if limit == 0 else limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(_summary_json(row), ensure_ascii=False))
        return
    if not rows:
        what = "match these filters" if not f.empty else "are stored yet"
        click.echo(f"No deliveries {what} ({history_db()}).", err=True)
        return
    _print_table(rows)


def _summary_json(row: Summary) -> dict[str, Any]:
    return {
        "id": row.id,
        "received_at": row.received_at,
        "received": _iso(row.received_at),
        "method": row.method,
        "path": row.path,
        "query": row.query,
        "type": row.event_type,
        "event_id": row.event_id,
        "event_created_at": row.event_created_at,
        "svix_id": row.svix_id,
        "signature": row.signature,
        "signature_reason": row.signature_reason,
        "status": row.status,
        "duration_ms": row.duration_ms,
        "error": row.error,
        "state": row.state,
        "attempts": row.attempts,
        "duplicate": row.duplicate,
        "body_size": row.body_size,
        "target": row.target,
    }


def _print_table(rows: list[Summary]) -> None:
    header = ("ID", "RECEIVED", "EVENT", "SIGNATURE", "STATUS", "TIME", "TRIES")
    lines = [header]
    for r in rows:
        event = r.event_type or f"{r.method} {r.path or '/'}"
        lines.append(
            (
                r.id,
                _when(r.received_at),
                _clean(event) + (" (dup)" if r.duplicate else ""),
                r.signature,
                _status_text(r.status, r.error, r.state),
                "" if r.duration_ms is None else f"{r.duration_ms:.0f} ms",
                str(r.attempts),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@deliveries_cmd.command("show")
@click.argument("delivery_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with everything.")
def show_cmd(delivery_id: str, as_json: bool) -> None:
    """Print one delivery whole: request, headers in order, body, every attempt.

    ID may be any unique prefix of the delivery id.

    \b
    Examples:
      hooktap deliveries show dlv_01HV
      hooktap deliveries show dlv_01HV --json | jq -r .body
    """
    with _open_store() as store:
        delivery = _lookup(store, delivery_id)
        attempts = store.attempts(delivery.id)
        duplicate = bool(delivery.svix_id) and store.seen_svix_id(
            delivery.svix_id or "", before_id=delivery.id
        )
    if as_json:
        click.echo(json.dumps(_delivery_json(delivery, attempts, duplicate), ensure_ascii=False))
        return
    _print_delivery(delivery, attempts, duplicate)


def _delivery_json(d: Delivery, attempts: list[Attempt], duplicate: bool) -> dict[str, Any]:
    return {
        "id": d.id,
        "received_at": d.received_at,
        "received": _iso(d.received_at),
        "method": d.method,
        "path": d.path,
        "query": d.query,
        "type": d.event_type,
        "event_id": d.event_id,
        "event_created_at": d.event_created_at,
        "svix_id": d.svix_id,
        "duplicate": duplicate,
        "signature": d.signature,
        "signature_reason": d.signature_reason,
        "state": d.state,
        "channel": d.channel,
        "target": d.target,
        "headers": [list(h) for h in d.headers],
        **_encoded(d.body, "body"),
        "attempts": [
            {
                "id": a.id,
                "kind": a.kind,
                "started_at": a.started_at,
                "started": _iso(a.started_at),
                "target_url": a.target_url,
                "status": a.status,
                "duration_ms": a.duration_ms,
                "error": a.error,
                "note": a.note,
                "request_headers": [list(h) for h in a.request_headers],
                **_encoded(a.request_body, "request_body"),
                "response_headers": [list(h) for h in a.response_headers],
                **_encoded(a.response_body, "response_body"),
            }
            for a in attempts
        ],
    }


def _pretty_body(body: bytes) -> tuple[str, str]:
    """(description, text) for showing a body: JSON pretty-printed, text as is, binary named."""
    if not body:
        return "empty", ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(body)} bytes, binary; --json gives it as base64", ""
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return f"{len(body)} bytes", _clean(text.replace("\r\n", "\n"))
    return f"{len(body)} bytes, JSON, pretty-printed", _clean(pretty)


def _print_delivery(d: Delivery, attempts: list[Attempt], duplicate: bool) -> None:
    echo = click.echo
    request = f"{d.method} {d.path or '/'}" + (f"?{d.query}" if d.query else "")
    echo(f"Delivery {d.id}")
    fields = [
        ("received", f"{_when(d.received_at)} ({_iso(d.received_at)})"),
        ("request", _clean(request)),
        ("event", " ".join(x for x in (d.event_type, d.event_id) if x) or "-"),
        ("created", d.event_created_at or "-"),
        (
            "svix-id",
            (d.svix_id or "-") + (" (seen earlier: a retry or replay)" if duplicate else ""),
        ),
        (
            "signature",
            f"{d.signature}: {d.signature_reason}" if d.signature_reason else d.signature,
        ),
        ("target", d.target or "-"),
        ("state", d.state),
    ]
    for name, value in fields:
        echo(f"  {name:<10} {_clean(value)}")
    echo("")
    echo(f"Headers ({len(d.headers)})")
    for name, value in d.headers:
        echo(f"  {_clean(name)}: {_clean(value)}")
    echo("")
    what, text = _pretty_body(d.body)
    echo(f"Body ({what})")
    if text:
        echo(text)
    echo("")
    echo(f"Attempts ({len(attempts)})")
    if not attempts:
        echo("  none yet" if d.state in ("received", "dispatched") else "  none")
    for n, a in enumerate(attempts, 1):
        status = _status_text(a.status, a.error, "done")
        echo(
            f"  #{n} {a.kind:<7} {_when(a.started_at)}  {status}  {a.duration_ms:.0f} ms  "
            f"{_clean(a.target_url)}"
        )
        if a.note:
            echo(f"     note: {a.note}")
        if a.error:
            echo(f"     error: {_clean(a.error)}")
        if a.request_body is not None:
            echo(f"     sent an edited body ({len(a.request_body)} bytes)")
        if a.response_body:
            preview = _pretty_body(a.response_body)[1].replace("\n", " ")
            cut = preview[:200] + ("…" if len(preview) > 200 else "")
            echo(
                f"     response: {cut}"
                if preview
                else f"     response: {len(a.response_body)} bytes"
            )


# --- hooktap replay -------------------------------------------------------------------------


@click.command("replay")
@click.argument("delivery_id", metavar="[ID]", required=False)
@_filter_options
@click.option(
    "--forward",
    metavar="TARGET",
    help="Send here instead of the delivery's own target: 8000, localhost:8000/hooks, or a URL.",
)
@secret_option("Endpoint signing secret: replays are re-signed with a fresh timestamp.")
@click.option(
    "--new-id",
    is_flag=True,
    help="Re-sign with a new svix-id (a handler that de-duplicates on it will process "
    "the replay as new).",
)
@click.option(
    "--body-file",
    type=click.File("rb"),
    metavar="FILE",
    help="Send this body instead (one ID only); re-signed. '-' reads stdin.",
)
@click.option("--edit", is_flag=True, help="Edit the body in $EDITOR first (one ID only).")
@click.option(
    "--as-is",
    is_flag=True,
    help="Send the stored headers untouched: the handler sees the old signature.",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 600),
    help="Seconds to wait for the handler.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per replay, nothing else.")
def replay_cmd(
    delivery_id: str | None,
    types: tuple[str, ...],
    statuses: tuple[str, ...],
    signatures: tuple[str, ...],
    since: str | None,
    expression: str,
    forward: str | None,
    secret: str | None,
    new_id: bool,
    body_file: BinaryIO | None,
    edit: bool,
    as_is: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Re-send a stored delivery, or a filtered set in arrival order, to your handler.

    With the secret known, each replay is re-signed with a fresh timestamp so the handler's
    verification passes, keeping the svix-id unless --new-id. Filters match the original
    delivery (its first forward's status). Exits 1 if any replay did not get a 2xx.

    \b
    Examples:
      hooktap replay dlv_01HV --secret whsec_...
      hooktap replay --since 1h --status 5xx
      hooktap replay dlv_01HV --body-file edited.json --forward 9000
      hooktap replay dlv_01HV --as-is
    """
    f = _make_filter(expression, types, statuses, signatures, since)
    if delivery_id is None and f.empty:
        raise BadInput("which deliveries? give an ID, or filters such as --since 1h --status 5xx")
    if delivery_id is not None and not f.empty:
        raise BadInput("give either an ID or filters, not both")
    if (body_file is not None or edit) and delivery_id is None:
        raise BadInput("--body-file and --edit work on one delivery: give its ID")
    if body_file is not None and edit:
        raise BadInput("--body-file and --edit both replace the body; pick one")
    try:
        key = check_options(secret=secret, as_is=as_is, new_id=new_id)
        if forward is not None:
            parse_target(forward)
    except ValueError as exc:
        raise BadInput(str(exc)) from None

    with _open_store() as store:
        if delivery_id is not None:
            delivery = _lookup(store, delivery_id)
            body = (
                body_file.read() if body_file is not None else _edited(delivery) if edit else None
            )
            if not (forward or delivery.target):
                raise BadInput(f"delivery {delivery.id} has no stored target; give --forward")
            jobs: list[tuple[str, bytes | None]] = [(delivery.id, body)]
        else:
            jobs = [(row.id, None) for row in store.query(f, None, oldest_first=True)]
            if not jobs:
                click.echo("No deliveries match these filters; nothing sent.", err=True)
                return
        if key is None and not as_is and not as_json:
            click.echo(
                "No secret (--secret or PIVOTAL_WEBHOOK_SECRET): replays carry their stored "
                "signatures, which svix rejects after 5 minutes.",
                err=True,
            )
        failed = asyncio.run(
            _replay_all(store, jobs, forward, key, new_id, as_is, timeout, as_json)
        )
    if len(jobs) > 1 and not as_json:
        click.echo(
            f"Replayed {len(jobs)}: {len(jobs) - failed} got a 2xx, {failed} did not.", err=True
        )
    if failed:
        raise SystemExit(1)


def _edited(delivery: Delivery) -> bytes:
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("this body is binary; use --body-file to replace it") from None
    edited = click.edit(text, extension=".json" if delivery.event_type else ".txt")
    if edited is None:
        raise BadInput("the editor closed without saving; nothing sent")
    return edited.encode("utf-8")


async def _replay_all(
    store: Store,
    jobs: list[tuple[str, bytes | None]],
    forward: str | None,
    secret: str | None,
    new_id: bool,
    as_is: bool,
    timeout: float,
    as_json: bool,
) -> int:
    """Send each in turn (arrival order matters to handlers); report as each one lands."""
    failed = 0
    for delivery_id, body in jobs:
        try:
            attempt = await replay(
                store,
                delivery_id,
                target=forward,
                secret=secret,
                new_id=new_id,
                body=body,
                as_is=as_is,
                timeout=timeout,
            )
        except (LookupError, ValueError) as exc:
            if len(jobs) == 1:
                raise BadInput(str(exc)) from None
            failed += 1
            _report_skip(delivery_id, str(exc), as_json)
            continue
        if attempt.status is None or not 200 <= attempt.status < 300:
            failed += 1
        _report(attempt, as_json)
    return failed


def _report(a: Attempt, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": a.delivery_id,
                    "attempt": a.id,
                    "target": a.target_url,
                    "status": a.status,
                    "duration_ms": round(a.duration_ms, 3),
                    "error": a.error,
                    "note": a.note,
                },
                ensure_ascii=False,
            )
        )
        return
    status = str(a.status) if a.status is not None else "no response"
    line = f"{a.delivery_id}  {a.target_url}  {status}  {a.duration_ms:.0f} ms  {a.note}"
    click.echo(_clean(line))
    if a.error:
        click.echo(f"  error: {_clean(a.error)}")


def _report_skip(delivery_id: str, reason: str, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": delivery_id,
                    "attempt": None,
                    "status": None,
                    "error": reason,
                    "note": "not sent",
                }
            )
        )
    else:
        click.echo(f"{delivery_id}  not sent: {_clean(reason)}")
