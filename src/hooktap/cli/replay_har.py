"""`hooktap replay --har FILE`: the requests of a HAR file, sent as `replay` sends a stored
delivery (hooktap.replay.send_copy: the same re-signing rule, the same forwarder).

A request is not a delivery of this history, and replay records attempts, never deliveries:
a request that hooktap exported from this history (`_hooktap.id`, same body) gets its replay
recorded on that delivery, as `replay ID` would; any other is sent and reported, not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import click

from hooktap import har
from hooktap.cli.common import BadInput
from hooktap.cli.replay_common import (
    Options,
    Routes,
    finish,
    not_routed_reason,
    position,
    refused,
    report,
    report_skip,
)
from hooktap.filters import Filter
from hooktap.home import history_db
from hooktap.pivotal.signing import Verdict
from hooktap.records import Attempt
from hooktap.replay import NotGenuine, NotRouted, send_copy
from hooktap.store import Store, StoreError


@dataclass(frozen=True)
class Entry:
    """One HAR entry to send (`request` and `target`), or why not (`skip`)."""

    index: int
    request: har.HarRequest | None
    target: str | None = None
    skip: str | None = None
    verdict: Verdict | None = None  # its signature, judged as on arrival


def replay_har(file: BinaryIO, f: Filter, routes: Routes, o: Options) -> None:
    name = getattr(file, "name", "-")
    try:
        entries = har.read(file.read())
    except har.HarError as exc:
        raise BadInput(f"{name}: {exc}") from None
    jobs = [job for e in entries if (job := _job(e, f, routes, o.key)) is not None]
    if not jobs:
        what = "match these filters" if entries else "are in it"
        click.echo(f"No HAR entries {what} ({name}); nothing sent.", err=True)
        return
    with _history(jobs) as store:
        failed, skipped = asyncio.run(_send_all(jobs, store, o))
    finish(len(jobs), failed, skipped, o, unsent=routes.unsent)


def _job(
    e: har.HarRequest | har.BadEntry, f: Filter, routes: Routes, key: str | None
) -> Entry | None:
    """What to do with one entry; None when the filters leave it out. A bad entry is always
    named: the filters cannot tell whether it was meant."""
    if isinstance(e, har.BadEntry):
        return Entry(e.index, None, skip=f"{e.where} cannot be sent: {e.reason}")
    verdict = e.verdict(key)
    if not f.empty and not har.matches(f, e, verdict.status):
        return None
    try:
        target = routes.target(e.event_type, "", e.where)
    except NotRouted as exc:
        return Entry(e.index, e, skip=not_routed_reason(exc), verdict=verdict)
    return Entry(e.index, e, target=target, verdict=verdict)


@contextlib.contextmanager
def _history(jobs: list[Entry]) -> Iterator[Store | None]:
    """The history, opened only when an entry came from one (a HAR from elsewhere must not
    create a history.db); None when it cannot be opened: its replays are then not recorded."""
    exported = any(j.request is not None and j.request.delivery_id for j in jobs)
    if not exported or not history_db().exists():  # a teammate's export: not this history
        yield None
        return
    try:
        store = Store(history_db())
    except StoreError:
        yield None
        return
    with store:
        yield store


async def _send_all(jobs: list[Entry], store: Store | None, o: Options) -> tuple[int, int]:
    """As replay's: in file order, each reported as it lands; (failed, refused)."""
    failed = refused_count = 0
    for job in jobs:
        req = job.request
        if req is None or job.target is None or job.verdict is None:
            if len(jobs) == 1:
                raise BadInput(job.skip or "nothing to send")
            failed += 1
            report_skip(
                req.delivery_id if req else None, job.skip or "", o.as_json, entry=job.index
            )
            continue
        try:
            attempt = await send_copy(req.delivery(job.verdict), job.target, **o.sending)
        except NotGenuine as exc:
            if len(jobs) == 1:
                raise BadInput(f"{req.where}: " + refused(exc) + o.hint) from None
            refused_count += 1
            why = f"its signature does not match the secret ({exc.reason})"
            report_skip(
                req.delivery_id, f"{why}; --force re-signs it anyway", o.as_json, entry=job.index
            )
            continue
        except ValueError as exc:
            if len(jobs) == 1:
                raise BadInput(f"{req.where}: {exc}") from None
            failed += 1
            report_skip(req.delivery_id, str(exc), o.as_json, entry=job.index)
            continue
        attempt.note = f"from a HAR file, {attempt.note}"
        recorded = await _record(store, req, attempt)
        if attempt.status is None or not 200 <= attempt.status < 300:
            failed += 1
        number = position(store, attempt) if recorded and store and o.as_json else None
        report(attempt, number, o.as_json, entry=job.index, recorded=recorded)
    return failed, refused_count


async def _record(store: Store | None, req: har.HarRequest, attempt: Attempt) -> bool:
    """Record the replay on the stored delivery this request was exported from: the same id
    and the same body, so an edited or foreign request is never filed under a delivery it is
    not."""
    if store is None or req.delivery_id is None:
        return False
    try:
        stored = await asyncio.to_thread(store.get, req.delivery_id)
    except (LookupError, StoreError):
        return False
    if stored is None or stored.id != req.delivery_id or stored.body != req.body:
        return False
    await asyncio.to_thread(store.add_attempt, attempt)
    return True
