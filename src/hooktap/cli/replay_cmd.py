"""`hooktap replay`: re-send stored deliveries through hooktap.replay, the one replay path."""

from __future__ import annotations

import asyncio
import json
from typing import BinaryIO

import click

from hooktap.cli.common import (
    BadInput,
    forward_option,
    resolve_secret,
    secret_option,
    timeout_option,
)
from hooktap.cli.history_cmd import filter_options, lookup, make_filter, open_store
from hooktap.cli.history_view import clean
from hooktap.listen.target import parse_target
from hooktap.records import Attempt, Delivery
from hooktap.replay import NotGenuine, check_options, replay, resign_refusal
from hooktap.store import Store

LOCAL_HINT = (
    " The secret was hooktap's local test secret, which signs only `hooktap trigger`'s "
    "samples; for Pivotal's deliveries pass --secret or set PIVOTAL_WEBHOOK_SECRET."
)

# --- hooktap replay -------------------------------------------------------------------------


@click.command("replay")
@click.argument("delivery_id", metavar="[ID]", required=False)
@filter_options
@forward_option(
    "Send here instead of the delivery's own target: 8000, localhost:8000/hooks, or a URL.",
    required=False,
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
    forward: str | None,
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

    \b
    Examples:
      hooktap replay d01a23190b25bde56ad63 --secret whsec_...
      hooktap replay --since 1h --status 5xx
      hooktap replay d01a23190b25bde56ad63 --body-file edited.json
      hooktap replay d01a23190b25bde56ad63 --forward localhost:9000/webhooks/pivotal
      hooktap replay d01a23190b25bde56ad63 --as-is
      hooktap replay d01a23190b25bde56ad63 --force --secret whsec_...
      hooktap replay d01a23190b25bde56ad63 --new-id --json | jq .attempt
    """
    f = make_filter(expression, types, statuses, signatures, since)
    if delivery_id is None and f.empty:
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
        if forward is not None:
            parse_target(forward)
    except ValueError as exc:
        raise BadInput(str(exc)) from None

    with open_store() as store:
        if delivery_id is not None:
            delivery = lookup(store, delivery_id)
            if key is not None and not (as_is or force):
                # Before the editor opens: an edit cannot make a forged original genuine.
                mismatch = resign_refusal(delivery, key)
                if mismatch is not None:
                    raise BadInput(_refused(NotGenuine(delivery.id, mismatch)) + hint)
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
        failed, refused = asyncio.run(
            _replay_all(store, jobs, forward, key, new_id, as_is, force, timeout, as_json)
        )
    if len(jobs) > 1 and not as_json:
        sent = len(jobs) - refused
        summary = f"Replayed {sent}: {sent - failed} got a 2xx, {failed} did not."
        if refused:
            summary += (
                f" Skipped {refused} whose original signature did not match the secret "
                "(--force re-signs them anyway)." + hint
            )
        click.echo(summary, err=True)
    if failed or refused:
        raise SystemExit(1)


def _refused(exc: NotGenuine) -> str:
    return (
        f"not sent: {exc} To send it re-signed anyway, add --force; "
        "--as-is sends it with its stored signature."
    )


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
    force: bool,
    timeout: float,
    as_json: bool,
) -> tuple[int, int]:
    """Send each in turn (arrival order matters to handlers); report as each one lands.

    Returns how many were sent and not answered with a 2xx (or not sent for another reason),
    and how many were skipped because their original signature did not match."""
    failed = refused = 0
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
                force=force,
                timeout=timeout,
            )
        except NotGenuine as exc:
            if len(jobs) == 1:
                raise BadInput(_refused(exc)) from None
            refused += 1
            why = f"its original signature did not match the secret ({exc.reason})"
            _report_skip(delivery_id, f"{why}; --force re-signs it anyway", as_json)
            continue
        except (LookupError, ValueError) as exc:
            if len(jobs) == 1:
                raise BadInput(str(exc)) from None
            failed += 1
            _report_skip(delivery_id, str(exc), as_json)
            continue
        if attempt.status is None or not 200 <= attempt.status < 300:
            failed += 1
        _report(attempt, _position(store, attempt) if as_json else None, as_json)
    return failed, refused


def _position(store: Store, attempt: Attempt) -> int | None:
    """The attempt's number as `deliveries show` lists it (#1 the forward, then each replay):
    the database id is shared by every delivery's attempts, so it means nothing to a user."""
    ids = [a.id for a in store.attempts(attempt.delivery_id)]
    return ids.index(attempt.id) + 1 if attempt.id in ids else None


def _report(a: Attempt, number: int | None, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": a.delivery_id,
                    "attempt": number,
                    "attempt_id": a.id,
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
    click.echo(clean(line))
    if a.error:
        click.echo(f"  error: {clean(a.error)}")


def _report_skip(delivery_id: str, reason: str, as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": delivery_id,
                    "attempt": None,
                    "attempt_id": None,
                    "status": None,
                    "error": reason,
                    "note": "not sent",
                }
            )
        )
    else:
        click.echo(f"{delivery_id}  not sent: {clean(reason)}")
