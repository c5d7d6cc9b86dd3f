"""How stored deliveries look: tables and sections for people, JSON objects for scripts.

Kept apart from the commands so `deliveries`, `deliveries show` and `replay` print alike.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import click

from hooktap.filters import NOT_FORWARDED
from hooktap.listen.routes import not_forwarded_reason
from hooktap.records import Attempt, Delivery
from hooktap.store import Summary

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean(text: str) -> str:
    """Escape control characters so a hostile body cannot drive the user's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def encoded(data: bytes | None, key: str) -> dict[str, Any]:
    """A body for JSON output: text when it is UTF-8, else base64, flagged either way."""
    if data is None:
        return {key: None}
    try:
        return {key: data.decode("utf-8"), f"{key}_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {key: base64.b64encode(data).decode("ascii"), f"{key}_encoding": "base64"}


def status_text(status: int | None, error: str | None, state: str) -> str:
    if status is not None:
        return str(status)
    if state == "interrupted" or state in NOT_FORWARDED:
        return state
    return "err" if error else "pending"


def summary_json(row: Summary) -> dict[str, Any]:
    return {
        "id": row.id,
        "received_at": row.received_at,
        "received": iso(row.received_at),
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
        "note": row.note or None,
        "state": row.state,
        "reason": not_forwarded_reason(row.state),
        "attempts": row.attempts,
        "duplicate": row.duplicate,
        "body_size": row.body_size,
        "target": row.target,
    }


def print_table(rows: list[Summary]) -> None:
    # Where each went, once there is more than one place (routes, or some left unforwarded).
    routed = len({r.target for r in rows}) > 1
    header: tuple[str, ...] = ("ID", "RECEIVED", "EVENT", "SIGNATURE", "STATUS", "TIME", "TRIES")
    if routed:
        header += ("TARGET",)
    lines = [header]
    for r in rows:
        event = r.event_type or f"{r.method} {r.path or '/'}"
        target = (clean(r.target or "-"),) if routed else ()
        lines.append(
            (
                r.id,
                when(r.received_at),
                clean(event)
                + (" (dup)" if r.duplicate else "")
                + (" (held)" if r.note.startswith("held ") else ""),
                r.signature,
                status_text(r.status, r.error, r.state),
                "" if r.duration_ms is None else f"{r.duration_ms:.0f} ms",
                str(r.attempts),
                *target,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def delivery_json(d: Delivery, attempts: list[Attempt], duplicate: bool) -> dict[str, Any]:
    return {
        "id": d.id,
        "received_at": d.received_at,
        "received": iso(d.received_at),
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
        "reason": not_forwarded_reason(d.state),
        "channel": d.channel,
        "target": d.target,
        "headers": [list(h) for h in d.headers],
        **encoded(d.body, "body"),
        "attempts": [
            {
                "id": a.id,
                "kind": a.kind,
                "started_at": a.started_at,
                "started": iso(a.started_at),
                "target_url": a.target_url,
                "status": a.status,
                "duration_ms": a.duration_ms,
                "error": a.error,
                "note": a.note,
                "request_headers": [list(h) for h in a.request_headers],
                **encoded(a.request_body, "request_body"),
                "response_headers": [list(h) for h in a.response_headers],
                **encoded(a.response_body, "response_body"),
            }
            for a in attempts
        ],
    }


def pretty_body(body: bytes) -> tuple[str, str]:
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
        return f"{len(body)} bytes", clean(text.replace("\r\n", "\n"))
    return f"{len(body)} bytes, JSON, pretty-printed", clean(pretty)


def print_delivery(d: Delivery, attempts: list[Attempt], duplicate: bool) -> None:
    echo = click.echo
    request = f"{d.method} {d.path or '/'}" + (f"?{d.query}" if d.query else "")
    echo(f"Delivery {d.id}")
    fields = [
        ("received", f"{when(d.received_at)} ({iso(d.received_at)})"),
        ("request", clean(request)),
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
    if (why := not_forwarded_reason(d.state)) is not None:
        fields.append(("why", why))
    for name, value in fields:
        echo(f"  {name:<10} {clean(value)}")
    echo("")
    echo(f"Headers ({len(d.headers)})")
    for name, value in d.headers:
        echo(f"  {clean(name)}: {clean(value)}")
    echo("")
    what, text = pretty_body(d.body)
    echo(f"Body ({what})")
    if text:
        echo(text)
    echo("")
    echo(f"Attempts ({len(attempts)})")
    if not attempts:
        if d.state in NOT_FORWARDED:
            echo(f"  none: no handler got it (`hooktap replay {d.id} --forward TARGET` sends it)")
        else:
            echo("  none yet" if d.state in ("received", "dispatched") else "  none")
    for n, a in enumerate(attempts, 1):
        status = status_text(a.status, a.error, "done")
        echo(
            f"  #{n} {a.kind:<7} {when(a.started_at)}  {status}  {a.duration_ms:.0f} ms  "
            f"{clean(a.target_url)}"
        )
        if a.note:
            echo(f"     note: {a.note}")
        if a.error:
            echo(f"     error: {clean(a.error)}")
        if a.request_body is not None:
            echo(f"     sent an edited body ({len(a.request_body)} bytes)")
        if a.response_body:
            preview = pretty_body(a.response_body)[1].replace("\n", " ")
            cut = preview[:200] + ("…" if len(preview) > 200 else "")
            echo(
                f"     response: {cut}"
                if preview
                else f"     response: {len(a.response_body)} bytes"
            )
