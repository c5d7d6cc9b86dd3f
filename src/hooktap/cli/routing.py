"""`--forward` (repeatable, `PATTERN=TARGET`), `--events` and `--config`: the routing flags,
spelled and resolved the same way by every command that sends to a handler by event type."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from hooktap import project_config
from hooktap.cli.common import BadInput, F
from hooktap.listen.routes import Routing, build_routing, shadowed_routes, unknown_patterns
from hooktap.pivotal.catalog import event_types

FORWARD_HELP = (
    "Where to send deliveries: your handler, as in localhost:8000/webhooks/pivotal (8000 "
    "alone or a full URL also work). Repeat as PATTERN=TARGET to route event types to "
    "different handlers, e.g. -f 'customer.*=localhost:8001/hooks' -f localhost:8000: the "
    "first matching route wins, and the one without a pattern takes the rest."
)


def routing_options(forward_help: str = FORWARD_HELP, *, events: bool = True) -> Callable[[F], F]:
    """The three flags; `resolve_routing` turns their values into a Routing."""

    def wrap(f: F) -> F:
        f = click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help=f"Routes from this TOML file instead of ./{project_config.FILE_NAME} "
            "(its [listen] forward and events). Flags given here win over the file.",
        )(f)
        if events:
            f = click.option(
                "--events",
                metavar="PATTERNS",
                help="Forward only these Pivotal event types, e.g. 'customer.*,task.completed'. "
                "Others are answered 200 and stored, marked filtered (status:filtered).",
            )(f)
        return click.option(
            "--forward",
            "-f",
            "forwards",
            multiple=True,
            metavar="[PATTERN=]TARGET",
            help=forward_help,
        )(f)

    return wrap


def resolve_routing(
    forwards: tuple[str, ...],
    events: str | None = None,
    config_path: Path | None = None,
    *,
    warn: bool = True,
) -> Routing | None:
    """The routing in force: flags, else the config file's; None when neither names a
    target. Exits 2 with the reason for a bad flag or file."""
    try:
        config = project_config.load(config_path)
    except project_config.ConfigError as exc:
        raise BadInput(str(exc)) from None
    chosen = forwards or (config.forward if config else ())
    if events is not None:
        chosen_events: str | tuple[str, ...] | None = events
    else:
        chosen_events = config.events if config else None
    # Name the file in an error when any of what was used came from it.
    where = ""
    if config and ((not forwards and config.forward) or (events is None and config.events)):
        where = f" (from {config.path})"
    if not chosen:
        if chosen_events:
            raise BadInput(
                f"--events chooses which deliveries are forwarded{where}, so it needs a "
                "--forward target to forward them to, e.g. --forward "
                "localhost:8000/webhooks/pivotal"
            )
        return None
    try:
        routing = build_routing(chosen, chosen_events)
    except ValueError as exc:
        raise BadInput(f"{exc}{where}") from None
    if warn:
        for pattern in unknown_patterns(routing, event_types()):
            click.echo(
                f"hooktap: warning: {pattern!r} matches no Pivotal event type (see `hooktap "
                "events`), so no delivery will match it",
                err=True,
            )
        for route in shadowed_routes(routing, event_types()):
            click.echo(
                f"hooktap: warning: route {str(route)!r} gets no delivery: every type it "
                "matches goes to a route before it (the first match wins); list it before "
                "them",
                err=True,
            )
    return routing
