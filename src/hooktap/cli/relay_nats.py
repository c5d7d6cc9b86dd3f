"""`hooktap relay`'s NATS flags: the servers (`--nats`), how to log in to them and TLS to
them, checked before the relay starts (relay/broker/nats_connect.py holds what they become)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hooktap.cli.common import BadInput, F
from hooktap.relay.broker.nats_connect import NatsConnect, NatsOptionError


def _nats_urls(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """--nats: comma-separated nats:// or tls:// URLs, and the extra that speaks to them."""
    if value is None:
        return None
    urls = [url.strip() for url in value.split(",") if url.strip()]
    if any("@" in url for url in urls):  # said without the URL, which holds a secret
        raise click.BadParameter(
            "a user, password or token in a NATS URL shows in `ps` and in log lines; give it "
            "with --nats-token (HOOKTAP_NATS_TOKEN), --nats-user (HOOKTAP_NATS_PASSWORD) or "
            "--nats-creds instead"
        )
    bad = [url for url in urls if not re.match(r"^(nats|tls)://[^/\s]+$", url)]
    if not urls or bad:
        raise click.BadParameter(
            f"{', '.join(bad) or 'nothing'} is not a NATS server URL; give nats://host:4222 "
            "(or tls://host:4222), several separated by commas"
        )
    if importlib.util.find_spec("nats") is None:
        raise click.BadParameter(
            "needs the NATS client: pip install 'hooktap[nats]' (the nats-py package)"
        )
    return urls


# How a message names each --nats-* option (the variable too, where one can give it).
NATS_OPTIONS = {
    "creds": "--nats-creds",
    "token": "--nats-token/HOOKTAP_NATS_TOKEN",
    "user": "--nats-user",
    "password": "--nats-password/HOOKTAP_NATS_PASSWORD",
    "ca": "--nats-ca",
    "cert": "--nats-cert",
    "key": "--nats-key",
}


def nats_connect_from(nats_urls: list[str] | None, **given: Any) -> NatsConnect | None:
    """The --nats-* options, checked (files read, TLS context made) before the relay starts."""
    options = NatsConnect(**{name: value or None for name, value in given.items()})
    if nats_urls is None:
        named = [NATS_OPTIONS[name] for name, value in given.items() if value]
        if named:
            raise BadInput(f"{named[0]} is for NATS: it needs --nats URL too")
        return None
    try:
        options.check()
    except NatsOptionError as exc:
        raise BadInput(str(exc)) from None
    return options


def nats_options(f: F) -> F:
    """--nats and the --nats-* login and TLS options, in the order `--help` lists them."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--nats",
        "nats_urls",
        metavar="URL[,URL...]",
        callback=_nats_urls,
        help="Share channels and queues with other relay instances through this NATS JetStream "
        "cluster, e.g. --nats nats://nats-1:4222,nats://nats-2:4222: any instance takes any "
        "webhook and any listener. Needs `pip install hooktap[nats]`. Without it, this relay keeps "
        "its queue in --data-dir.",
    ),
    click.option(
        "--nats-creds",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Log in to NATS with this credentials file: a user JWT and its nkey seed, as "
        "`nsc generate creds` writes.",
    ),
    click.option(
        "--nats-token",
        envvar="HOOKTAP_NATS_TOKEN",
        show_envvar=True,
        metavar="TOKEN",
        help="Log in to NATS with this token. Prefer the variable: arguments show in `ps`.",
    ),
    click.option("--nats-user", metavar="USER", help="Log in to NATS as this user."),
    click.option(
        "--nats-password",
        envvar="HOOKTAP_NATS_PASSWORD",
        show_envvar=True,
        metavar="PASSWORD",
        help="--nats-user's password. Prefer the variable: arguments show in `ps`.",
    ),
    click.option(
        "--nats-ca",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="PEM",
        help="Trust only this CA's certificates for the NATS servers, and require TLS (as a tls:// "
        "URL does): a server without it is refused before any credentials are sent. Default: this "
        "machine's trust store, TLS when the server requires it.",
    ),
    click.option(
        "--nats-cert",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="PEM",
        help="Show NATS servers that want mutual TLS this client certificate, with --nats-key.",
    ),
    click.option(
        "--nats-key",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="PEM",
        help="The unencrypted private key of --nats-cert.",
    ),
]
