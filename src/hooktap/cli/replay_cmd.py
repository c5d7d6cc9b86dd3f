"""`hooktap replay`: re-send stored deliveries through hooktap.replay, the one replay path."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import click

from hooktap.cli.common import (
    BadInput,
    resolve_secret,
    secret_option,
    timeout_option,
)
from hooktap.cli.history_cmd import filter_options, lookup, make_filter, open_store
from hooktap.cli.replay_common import (
    LOCAL_HINT,
    Options,
    Routes,
    finish,
    not_routed_reason,
    position,
    refused,
    report,
    report_skip,
)
from hooktap.cli.routing import routing_options
from hooktap.records import Delivery
from hooktap.replay import NotGenuine, NotRouted, check_options, replay, resign_refusal
from hooktap.store import Store

REPLAY_FORWARD_HELP = (
    "Send here instead of where each delivery went: 8000, localhost:8000/hooks, or a URL. "
    "Repeat as PATTERN=TARGET to route by event type (-f 'task.*=localhost:8002' -f 8000). "
    "Without it, a delivery that was not forwarded (filtered, unrouted), and every request "
    "of --har, goes where ./hooktap.toml (or --config), else the running listener, routes "
    "its type."
)


@dataclass(frozen=True)
class Job:
    """One stored delivery to send: where to, with which body (None: its own), or why not."""

    delivery_id: str
    body: bytes | None = None
    target: str | None = None
    skip: str | None = None


# --- hooktap replay -------------------------------------------------------------------------


@click.command("replay")
@click.argument("delivery_id", metavar="[ID]", required=False)
@filter_options
@routing_options(REPLAY_FORWARD_HELP, events=False)
@click.option(
    "--har",
    "har_file",
    type=click.File("rb"),
    metavar="FILE",
    help="Send the requests of this HAR file (from `deliveries --har`, a browser, mitmproxy) "
    "instead of stored deliveries; the filters then pick among its entries. '-' reads stdin.",
)
@secret_option(
    "Endpoint signing secret: replays are re-signed with a fresh timestamp. Default: the "
    "local test secret `hooktap listen` made, if any."
)
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
    "--force",
    is_flag=True,
    help="Re-sign even a delivery whose original signature does not match the secret "
    "(forged or tampered): your handler will take it as genuine.",
)
@timeout_option("Seconds to wait for the handler.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per replay, nothing else; its attempt is the number `deliveries "
    "show` lists it under (attempt_id: the database's).",
)
def replay_cmd(
    delivery_id: str | None,
    types: tuple[str, ...],
    statuses: tuple[str, ...],
    signatures: tuple[str, ...],
    since: str | None,
    expression: str,
    forwards: tuple[str, ...],
    config_path: Path | None,
    har_file: BinaryIO | None,
    secret: str | None,
    new_id: bool,
    body_file: BinaryIO | None,
    edit: bool,
    as_is: bool,
    force: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Re-send a stored delivery, or a filtered set in arrival order, to your handler.

    With the secret known, each replay is re-signed with a fresh timestamp so the handler's
    verification passes, keeping the svix-id unless --new-id. Only a delivery whose original
    signature matches the secret is re-signed: one that does not (anyone can post to the
    webhook URL) is refused, or skipped in a filtered set, unless --force. Filters match the
    original delivery (its first forward's status). Exits 1 if any replay did not get a 2xx
    or was skipped.

    Each goes where today's routes send its type: --forward's when given, else ./hooktap.toml
    (or --config), else the running listener's. With no routes anywhere, a delivery goes
    where it went; a --har request then needs --forward.

    --har FILE sends the requests of a HAR file instead (hooktap's own, or captured in a
    browser or mitmproxy), under the same re-signing rule; the filters pick among its entries.

    \b
    Examples:
      hooktap replay d01a23190b25bde56ad63 --secret whsec_...
      hooktap replay --since 1h --status 5xx
      hooktap replay d01a23190b25bde56ad63 --body-file edited.json
      hooktap replay d01a23190b25bde56ad63 --forward localhost:9000/webhooks/pivotal
      hooktap replay d01a23190b25bde56ad63 --as-is
      hooktap replay d01a23190b25bde56ad63 --force --secret whsec_...
      hooktap replay d01a23190b25bde56ad63 --new-id --json | jq .attempt
      hooktap replay --har pivotal.har --filter 'type:customer.*' -f 8000
      hooktap replay --since 1h -f 'task.*=localhost:8002' -f localhost:8000
    """
    f = make_filter(expression, types, statuses, signatures, since)
    if har_file is not None:
        if delivery_id is not None:
            raise BadInput("give either an ID or --har FILE, not both")
        if body_file is not None or edit:
            raise BadInput("--body-file and --edit work on one stored delivery, not on --har")
    elif delivery_id is None and f.empty:
        raise BadInput("which deliveries? give an ID, or filters such as --since 1h --status 5xx")
    if delivery_id is not None and not f.empty:
        raise BadInput("give either an ID or filters, not both")
    if (body_file is not None or edit) and delivery_id is None:
        raise BadInput("--body-file and --edit work on one delivery: give its ID")
    if body_file is not None and edit:
        raise BadInput("--body-file and --edit both replace the body; pick one")
    chosen = resolve_secret(secret)
    # Pivotal's deliveries never match the local test secret: say so where they are refused.
    hint = LOCAL_HINT if chosen.local and secret is None else ""
    try:
        key = check_options(secret=chosen.value, as_is=as_is, new_id=new_id, force=force)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    routes = Routes(forwards, config_path)
    if key is None and not as_is and not as_json:
        click.echo(
            "No secret (--secret or PIVOTAL_WEBHOOK_SECRET): replays carry their stored "
            "signatures, which svix rejects after 5 minutes.",
            err=True,
        )
    if har_file is not None:
        from hooktap.cli.replay_har import replay_har  # its own module: HAR reading

        options = Options(key, new_id, as_is, force, timeout, as_json, hint)
        replay_har(har_file, f, routes, options)
        return

    with open_store() as store:
        if delivery_id is not None:
            delivery = lookup(store, delivery_id)
            if key is not None and not (as_is or force):
                # Before the editor opens: an edit cannot make a forged original genuine.
                mismatch = resign_refusal(delivery, key)
                if mismatch is not None:
                    raise BadInput(refused(NotGenuine(delivery.id, mismatch)) + hint)
            try:
                target = routes.target(delivery.event_type, delivery.target, delivery.id)
            except NotRouted as exc:
                raise BadInput(f"{delivery.id}: not sent: {not_routed_reason(exc)}") from None
            body = (
                body_file.read() if body_file is not None else _edited(delivery) if edit else None
            )
            jobs = [Job(delivery.id, body, target)]
        else:
            jobs = [
                _job(routes, row.id, row.event_type, row.target)
                for row in store.query(f, None, oldest_first=True)
            ]
            if not jobs:
                click.echo("No deliveries match these filters; nothing sent.", err=True)
                return
        options = Options(key, new_id, as_is, force, timeout, as_json, hint)
        failed, skipped = asyncio.run(_replay_all(store, jobs, options))
    finish(len(jobs), failed, skipped, options, unsent=routes.unsent)


def _job(routes: Routes, delivery_id: str, event_type: str | None, stored: str) -> Job:
    try:
        return Job(delivery_id, target=routes.target(event_type, stored, delivery_id))
    except NotRouted as exc:
        return Job(delivery_id, skip=not_routed_reason(exc))


def _edited(delivery: Delivery) -> bytes:
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("this body is binary; use --body-file to replace it") from None
    edited = click.edit(text, extension=".json" if delivery.event_type else ".txt")
    if edited is None:
        raise BadInput("the editor closed without saving; nothing sent")
    return edited.encode("utf-8")


async def _replay_all(store: Store, jobs: list[Job], o: Options) -> tuple[int, int]:
    """Send each in turn (arrival order matters to handlers); report as each one lands.

    Returns how many were sent and not answered with a 2xx (or not sent for another reason),
    and how many were skipped because their original signature did not match."""
    failed = refused_count = 0
    for job in jobs:
        if job.skip is not None or job.target is None:
            failed += 1
            report_skip(job.delivery_id, job.skip or "no target", o.as_json)
            continue
        try:
            attempt = await replay(
                store, job.delivery_id, target=job.target, body=job.body, **o.sending
            )
        except NotGenuine as exc:
            if len(jobs) == 1:
                raise BadInput(refused(exc) + o.hint) from None
            refused_count += 1
            why = f"its original signature did not match the secret ({exc.reason})"
            report_skip(job.delivery_id, f"{why}; --force re-signs it anyway", o.as_json)
            continue
        except (LookupError, ValueError) as exc:
            if len(jobs) == 1:
                raise BadInput(str(exc)) from None
            failed += 1
            report_skip(job.delivery_id, str(exc), o.as_json)
            continue
        if attempt.status is None or not 200 <= attempt.status < 300:
            failed += 1
        report(attempt, position(store, attempt) if o.as_json else None, o.as_json)
    return failed, refused_count
