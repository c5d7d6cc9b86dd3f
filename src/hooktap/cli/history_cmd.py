"""`hooktap deliveries`: list and show stored deliveries; thin over the store.

Human output goes to stdout as tables and sections; with --json, stdout carries JSON only
(one object per line for lists) so scripts can pipe it, and every hint goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from click.core import ParameterSource

from hooktap import har
from hooktap.cli.common import BadInput
from hooktap.cli.history_view import (
    delivery_json,
    print_delivery,
    print_table,
    summary_json,
)
from hooktap.filters import Filter, build_filter
from hooktap.home import history_db
from hooktap.records import Delivery
from hooktap.store import AmbiguousId, BodyMissing, Store, StoreError

# --- shared helpers -------------------------------------------------------------------------


@contextmanager
def open_store() -> Iterator[Store]:
    try:
        store = Store(history_db())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    with store:
        yield store


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
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
            "(bare words search the body; in bodies over 64 KiB, its first 64 KiB).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_filter(
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


def lookup(store: Store, delivery_id: str) -> Delivery:
    try:
        delivery = store.get(delivery_id)
    except AmbiguousId as exc:
        raise BadInput(f"{exc}; give more characters") from None
    except BodyMissing as exc:
        raise BadInput(str(exc)) from None
    if delivery is None:
        raise BadInput(
            f"no stored delivery with id {delivery_id!r} (`hooktap deliveries` lists them)"
        )
    return delivery


# --- hooktap deliveries ---------------------------------------------------------------------


@click.group("deliveries", invoke_without_command=True)
@filter_options
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(0, None),
    help="At most this many, newest first (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, nothing else.")
@click.option(
    "--har",
    "as_har",
    is_flag=True,
    help="Write the matching deliveries as a HAR 1.2 file on stdout, oldest first (all of "
    "them unless --limit is given): each request as received, its latest response, and "
    "hooktap's verdict under _hooktap. Opens in browsers' devtools and mitmproxy; `hooktap "
    "replay --har FILE` sends it again.",
)
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
    as_har: bool,
) -> None:
    """List stored deliveries, newest first; `deliveries show ID` prints one whole.

    \b
    Examples:
      hooktap deliveries --since 1h --status 5xx
      hooktap deliveries --type 'customer.*' --signature invalid --json
      hooktap deliveries show d01a23190b25bde56ad63
      hooktap deliveries --har --since 1d > pivotal.har
    """
    if ctx.invoked_subcommand is not None:
        return
    f = make_filter(expression, types, statuses, signatures, since)
    if as_har:
        if as_json:
            raise BadInput("--har and --json are two output formats; pick one")
        given = ctx.get_parameter_source("limit") is not ParameterSource.DEFAULT
        _write_har(f, limit if given else 0)
        return
    with open_store() as store:
        rows = store.query(f, None if limit == 0 else limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(summary_json(row), ensure_ascii=False))
        return
    if not rows:
        what = "match these filters" if not f.empty else "are stored yet"
        click.echo(f"No deliveries {what} ({history_db()}).", err=True)
        return
    print_table(rows)


@deliveries_cmd.command("show")
@click.argument("delivery_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with everything.")
def show_cmd(delivery_id: str, as_json: bool) -> None:
    """Print one delivery whole: request, headers in order, body, every attempt.

    ID may be any unique prefix of the delivery id.

    \b
    Examples:
      hooktap deliveries show d01a23190b25bde56ad63
      hooktap deliveries show d01a23190b25bde56ad63 --json | jq -r .body
    """
    with open_store() as store:
        delivery = lookup(store, delivery_id)
        attempts = store.attempts(delivery.id)
        duplicate = bool(delivery.svix_id) and store.seen_svix_id(
            delivery.svix_id or "", before_id=delivery.id
        )
    if as_json:
        click.echo(json.dumps(delivery_json(delivery, attempts, duplicate), ensure_ascii=False))
        return
    print_delivery(delivery, attempts, duplicate)


def _write_har(f: Filter, limit: int) -> None:
    """Stream the HAR document to stdout as UTF-8 bytes, whatever the locale: one delivery
    (big bodies read back from their files, as `deliveries show` does) at a time. A delivery
    whose body file is gone cannot be exported whole: it is left out, said on stderr, and the
    exit code is 1."""
    out = sys.stdout.buffer
    missing: list[str] = []
    with open_store() as store:
        rows = store.query(f, None if limit == 0 else limit)
        rows.reverse()  # newest N, written oldest first as the spec prefers

        def entries() -> Iterator[dict[str, Any]]:
            for row in rows:
                try:
                    delivery = store.get(row.id)
                except BodyMissing as exc:
                    missing.append(f"{row.id}: {exc}")
                    continue
                if delivery is not None:
                    yield har.entry(delivery, store.attempts(delivery.id))

        for piece in har.document(entries()):
            out.write(piece.encode("utf-8"))
        out.flush()
    for why in missing:
        click.echo(f"hooktap: left out of the HAR file: {why}", err=True)
    if missing:
        raise SystemExit(1)
