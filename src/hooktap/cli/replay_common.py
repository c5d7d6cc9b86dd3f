"""What `hooktap replay ID`, `replay --filter` and `replay --har` share: where each replay
goes (the routing in force), and how each one is reported."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from hooktap.cli.common import BadInput
from hooktap.cli.history_view import clean
from hooktap.cli.routing import resolve_routing
from hooktap.listen import state
from hooktap.listen.routes import Routing, build_routing
from hooktap.records import Attempt
from hooktap.replay import NoRouting, NotGenuine, NotRouted, choose_target
from hooktap.store import Store

LOCAL_HINT = (
    " The secret was hooktap's local test secret, which signs only `hooktap trigger`'s "
    "samples; for Pivotal's deliveries pass --secret or set PIVOTAL_WEBHOOK_SECRET."
)


@dataclass
class Routes:
    """Today's routes decide every replay's target (replay.choose_target): --forward when
    given, else hooktap.toml (or --config), else the running listener's, looked up once;
    with none, a delivery goes where it went."""

    forwards: tuple[str, ...]
    config_path: Path | None
    _given: Routing | None = None
    _in_force: list[Routing | None] = field(default_factory=list)
    unsent: int = 0  # how many target() refused: filtered or unrouted today, so never sent

    def __post_init__(self) -> None:
        if self.forwards:
            # From the flags alone: a file's `events` would filter out what --forward was
            # given to send (`replay ID -f X` means send it to X).
            try:
                self._given = build_routing(self.forwards)
            except ValueError as exc:
                raise BadInput(str(exc)) from None

    def in_force(self) -> Routing | None:
        if not self._in_force:
            self._in_force.append(
                resolve_routing((), None, self.config_path) or state.running_routing()
            )
        return self._in_force[0]

    def target(self, event_type: str | None, stored: str, what: str) -> str:
        """The target, or NotRouted; a missing routing is the user's to fix: exit 2."""
        try:
            return choose_target(
                event_type, stored, given=self._given, in_force=self.in_force, what=what
            )
        except NoRouting as exc:
            raise BadInput(str(exc)) from None
        except NotRouted:
            self.unsent += 1
            raise


@dataclass(frozen=True)
class Options:
    """How every replay of one command is signed, sent and reported."""

    key: str | None  # the canonical secret, None when none is known
    new_id: bool
    as_is: bool
    force: bool
    timeout: float
    as_json: bool
    hint: str  # said where a replay is refused: the local test secret was the one in force

    @property
    def sending(self) -> dict[str, Any]:
        """The keyword arguments of replay() and send_copy() these options stand for."""
        return {
            "secret": self.key,
            "new_id": self.new_id,
            "as_is": self.as_is,
            "force": self.force,
            "timeout": self.timeout,
        }


def finish(total: int, failed: int, skipped: int, o: Options, *, unsent: int = 0) -> None:
    """The summary of a set (stderr), and exit 1 if any was not answered 2xx or not sent.
    `failed` counts the `unsent` ones (Routes.unsent: filtered or unrouted), which were never
    sent, so they are named apart rather than as sent and not answered 2xx."""
    if total > 1 and not o.as_json:
        sent = total - skipped - unsent
        not_2xx = failed - unsent
        summary = f"Replayed {sent}: {sent - not_2xx} got a 2xx, {not_2xx} did not."
        if unsent:
            summary += f" {unsent} not sent: filtered/unrouted."
        if skipped:
            summary += (
                f" Skipped {skipped} whose original signature did not match the secret "
                "(--force re-signs them anyway)." + o.hint
            )
        click.echo(summary, err=True)
    if failed or skipped:
        raise SystemExit(1)


def refused(exc: NotGenuine) -> str:
    return (
        f"not sent: {exc} To send it re-signed anyway, add --force; "
        "--as-is sends it with its stored signature."
    )


def position(store: Store, attempt: Attempt) -> int | None:
    """The attempt's number as `deliveries show` lists it (#1 the forward, then each replay):
    the database id is shared by every delivery's attempts, so it means nothing to a user."""
    ids = [a.id for a in store.attempts(attempt.delivery_id)]
    return ids.index(attempt.id) + 1 if attempt.id in ids else None


def report(
    a: Attempt,
    number: int | None,
    as_json: bool,
    *,
    entry: int | None = None,
    recorded: bool = True,
) -> None:
    """One replay's line; `entry` (a HAR file's entries[N]) for a request from a HAR file,
    whose `id` is that of the stored delivery it was, when recorded on it."""
    if as_json:
        line = {
            "id": a.delivery_id if recorded else None,
            "attempt": number,
            "attempt_id": a.id,
            "target": a.target_url,
            "status": a.status,
            "duration_ms": round(a.duration_ms, 3),
            "error": a.error,
            "note": a.note,
        }
        if entry is not None:
            line |= {"entry": entry, "recorded": recorded}
        click.echo(json.dumps(line, ensure_ascii=False))
        return
    label = a.delivery_id if entry is None else f"entries[{entry}]"
    if entry is not None and recorded:
        label += f" ({a.delivery_id})"
    status = str(a.status) if a.status is not None else "no response"
    line_text = f"{label}  {a.target_url}  {status}  {a.duration_ms:.0f} ms  {a.note}"
    click.echo(clean(line_text))
    if a.error:
        click.echo(f"  error: {clean(a.error)}")


def report_skip(
    delivery_id: str | None, reason: str, as_json: bool, *, entry: int | None = None
) -> None:
    if as_json:
        line: dict[str, object] = {
            "id": delivery_id,
            "attempt": None,
            "attempt_id": None,
            "status": None,
            "error": reason,
            "note": "not sent",
        }
        if entry is not None:
            line |= {"entry": entry, "recorded": False}
        click.echo(json.dumps(line, ensure_ascii=False))
        return
    where = delivery_id or ""
    if entry is not None:
        where = f"entries[{entry}]" + (f" ({delivery_id})" if delivery_id else "")
    click.echo(f"{clean(where)}  not sent: {clean(reason)}")


def not_routed_reason(exc: NotRouted) -> str:
    return f"{exc}; --forward TARGET sends it anyway"
