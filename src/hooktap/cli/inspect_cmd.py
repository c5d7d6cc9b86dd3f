"""`hooktap inspect`: the inspector over stored history, with no listener of its own."""

from __future__ import annotations

import sys

import click

from hooktap.cli.common import (
    BadInput,
    forward_option,
    resolve_secret,
    secret_option,
    valid_target,
)
from hooktap.filters import parse_filter
from hooktap.home import history_db
from hooktap.store import Store, StoreError


@click.command("inspect")
@secret_option(
    "Your endpoint's signing secret, so re-sends (r, e) and copied curl commands are "
    "re-signed with a fresh timestamp. Default: the local test secret `hooktap listen` made, "
    "if any."
)
@forward_option(
    "Send re-sends here instead of each delivery's stored target (8000, "
    "localhost:8000/webhooks/pivotal, or a URL).",
    required=False,
)
@click.option(
    "--filter",
    "filter_text",
    default="",
    metavar="EXPR",
    help="Start with this filter, e.g. 'type:customer.* status:5xx sig:invalid acme'.",
)
@click.option("--utc", is_flag=True, help="Show times in UTC instead of local time.")
def inspect_cmd(secret: str | None, forward: str | None, filter_text: str, utc: bool) -> None:
    """Browse, filter, re-send and edit stored deliveries in the inspector.

    Nothing listens: this reads the history `hooktap listen` keeps (in HOOKTAP_HOME). New
    deliveries stored by a listener running elsewhere show up as they arrive.

    \b
    Examples:
      hooktap inspect --filter 'status:5xx since:1h' --forward localhost:8000/webhooks/pivotal
      hooktap inspect --secret whsec_... --forward localhost:8000/webhooks/pivotal
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise BadInput(
            "hooktap inspect needs a terminal; for plain output use `hooktap deliveries`"
        )
    try:
        initial = parse_filter(filter_text)
    except ValueError as exc:
        raise BadInput(f"--filter: {exc}") from None
    secret = resolve_secret(secret).value
    if forward is not None:
        valid_target(forward)
    try:
        store = Store(history_db())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    from hooktap.tui.run import run_inspect_tui  # Textual loads only when the TUI opens

    with store:
        run_inspect_tui(
            store, secret=secret, replay_target=forward, utc=utc, initial_filter=initial
        )
