"""`hooktap listen`: thin over hooktap.listen.Listener."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import click

from hooktap import aio, local_secret, project_config
from hooktap.cli.common import (
    BadInput,
    Finite,
    resolve_secret,
    secret_option,
    timeout_option,
    valid_relay_urls,
)
from hooktap.cli.routing import FORWARD_HELP, resolve_routing, routing_options
from hooktap.home import history_db
from hooktap.listen import output, state
from hooktap.listen.channel import RelayRefused
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.public import Provider, PublicUnavailable, provider_for
from hooktap.store import Store

FORWARD_EXAMPLE = "localhost:8000/webhooks/pivotal"


@click.command("listen")
@routing_options(
    FORWARD_HELP + f" Default: the routes in ./{project_config.FILE_NAME}'s [listen] forward."
)
@secret_option(
    "Your endpoint's signing secret (whsec_...). Verified locally; never sent anywhere. "
    "Default: hooktap's local test secret, made on first use in HOOKTAP_HOME."
)
@click.option(
    "--print-secret",
    is_flag=True,
    help="Print the secret deliveries are verified with (the local test secret unless "
    "--secret or PIVOTAL_WEBHOOK_SECRET is given) and exit, for your handler's environment.",
)
@click.option(
    "--relay",
    envvar="HOOKTAP_RELAY",
    show_envvar=True,
    metavar="URL[,URL...]",
    help="A standalone relay (hooktap relay) to use instead of the embedded one. Several "
    "instances of one relay, comma-separated: when the one in use goes away, the listener "
    "reconnects to the next, with the same channel.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PEM",
    help="Trust only this CA (PEM) for an https --relay's certificate, e.g. the private CA "
    "that signed it. Default: the system's trust store (SSL_CERT_FILE honoured).",
)
@click.option(
    "--relay-key",
    envvar="HOOKTAP_RELAY_KEY",
    show_envvar=True,
    metavar="KEY",
    help="The key of a relay started with --require-key, needed to make a channel on it "
    "(a listener whose channel exists reconnects without it). Prefer the variable: "
    "arguments show in `ps`.",
)
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the embedded relay on 127.0.0.1 (0: any free port, URL not stable).",
)
@timeout_option("Seconds to wait for your handler (Pivotal gives up after 10).")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines on stdout (a 'ready' line first)."
)
@click.option(
    "--tui/--no-tui",
    default=None,
    help="The inspector (default when stdout is a terminal) or plain log lines on stderr.",
)
@click.option(
    "--concurrency",
    default=32,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Deliveries forwarded at once (Pivotal does not serialize them either).",
)
@click.option(
    "--public",
    "public",
    is_flag=False,
    flag_value="cloudflared",
    default=None,
    type=click.Choice(["cloudflared", "ssh", "ngrok"]),
    metavar="[cloudflared|ssh|ngrok]",
    help="Also give the embedded relay a public URL, through an existing tunnel service: "
    "Cloudflare's quick tunnels (the default; no account, needs `cloudflared`), localhost.run "
    "over your ssh, or ngrok (pip install 'hooktap[ngrok]', NGROK_AUTHTOKEN). Only this "
    "channel's webhook URL is reachable through it.",
)
@click.option(
    "--domain",
    metavar="NAME",
    help="With --public ngrok: your ngrok static domain, for a public URL that survives "
    "restarts (every ngrok account has one free).",
)
@click.option(
    "--takeover",
    is_flag=True,
    help="Take the channel from another listener that holds it now (by default a second "
    "listener on the same channel is refused while the first is alive).",
)
@click.option(
    "--no-healthcheck",
    "no_healthcheck",
    is_flag=True,
    help="Do not probe the forward targets (a TCP connect at start and every 15 s, to say "
    "when your handler stops or starts accepting connections).",
)
@click.option(
    "--retention-days",
    default=90.0,
    show_default=True,
    type=Finite(0, None, min_open=True),
    help="Keep stored deliveries this long (Pivotal's own Deliveries tab keeps 90 days).",
)
def listen_cmd(
    forwards: tuple[str, ...],
    events: str | None,
    config_path: Path | None,
    no_healthcheck: bool,
    secret: str | None,
    print_secret: bool,
    relay: str | None,
    ca_file: Path | None,
    relay_key: str | None,
    port: int,
    timeout: float,
    as_json: bool,
    tui: bool | None,
    concurrency: int,
    retention_days: float,
    public: str | None,
    domain: str | None,
    takeover: bool,
) -> None:
    """Forward webhooks from a stable URL to your local handler, and keep every delivery.

    Without --secret or PIVOTAL_WEBHOOK_SECRET, signatures are checked with a local test
    secret that hooktap makes once and keeps in HOOKTAP_HOME; `hooktap trigger` and `hooktap
    check` sign with it too. It is not Pivotal's: Pivotal's own deliveries need Pivotal's
    secret (the endpoint's signing secret), given with --secret or PIVOTAL_WEBHOOK_SECRET.

    Without --relay, the relay runs inside this command on 127.0.0.1 (--port) and only while
    it runs: when it stops (q, Ctrl+C), senders get "connection refused" and `hooktap trigger`
    finds no listener. Deliveries still queued in it are kept in HOOKTAP_HOME and handed over
    when `hooktap listen` starts again. A standalone `hooktap relay` (--relay or HOOKTAP_RELAY)
    keeps taking deliveries while no listener runs.

    \b
    Examples:
      hooktap listen --forward localhost:8000/webhooks/pivotal
      export PIVOTAL_WEBHOOK_SECRET=$(hooktap listen --print-secret)   # for your handler
      hooktap listen --forward localhost:8000/webhooks/pivotal --secret whsec_...
      hooktap listen --forward localhost:8000/webhooks/pivotal --relay https://hooks.example.com
      hooktap listen -f localhost:8000 --relay https://a.example.com,https://b.example.com
      hooktap listen --forward localhost:8000/webhooks/pivotal --public   # a public URL
      hooktap listen -f 'customer.*=localhost:8001/hooks' -f localhost:8000/webhooks/pivotal
      hooktap listen -f localhost:8000/webhooks/pivotal --events 'customer.*,task.completed'
    """
    chosen = resolve_secret(secret, make=True)
    if print_secret:
        click.echo(chosen.value)
        return
    routing = resolve_routing(forwards, events, config_path)
    if routing is None:
        raise click.UsageError(
            f"Missing option '--forward': your handler, e.g. --forward {FORWARD_EXAMPLE} "
            f"(or a [listen] forward list in ./{project_config.FILE_NAME} or --config FILE)"
        )
    secret = chosen.value
    if chosen.local and secret is not None:
        state.verifies_with_local_secret(secret)
    relays = valid_relay_urls(relay) if relay is not None else []
    if public is not None and relays:
        raise BadInput(
            "--public gives the embedded relay a public URL; a --relay has its own "
            "(its --public-url), so use one or the other"
        )
    if domain is not None and public is None:  # with another provider, provider_for says so
        raise BadInput("--domain is ngrok's static domain: use it with --public ngrok")
    config = ListenerConfig(
        routing=routing,
        healthcheck=not no_healthcheck,
        relay_url=relays[0] if relays else None,
        other_relays=tuple(relays[1:]),
        port=port,
        secret=secret,
        timeout=timeout,
        concurrency=concurrency,
        takeover=takeover,
        ca_file=ca_file,
        relay_key=relay_key or None,
        secret_source=chosen.source,
        secret_file=str(local_secret.path()) if chosen.local else None,
        secret_made_now=chosen.made_now,
        public=None if public is None else _provider(public, domain),
    )
    # The inspector by default when a person is watching (stdout is a terminal); --json and
    # --no-tui keep the plain modes, and --tui cannot override --json's stdout contract.
    use_tui = (sys.stdout.isatty() if tui is None else tui) and not as_json
    with Store(history_db()) as store:
        store.prune(retention_days)
        listener = Listener(config, store)
        if use_tui:
            from hooktap.tui.run import run_listen_tui

            try:
                run_listen_tui(listener, store)
            except RelayRefused as exc:
                raise BadInput(str(exc)) from None
            except OSError as exc:  # ConnectionError included: the relay is unreachable
                raise click.ClickException(str(exc)) from None
            return
        listener.subscribe(output.JsonLines() if as_json else output.LogLines())
        try:
            aio.run(_run(listener))
        except RelayRefused as exc:
            raise BadInput(str(exc)) from None
        except ConnectionError as exc:
            raise click.ClickException(str(exc)) from None


async def _run(listener: Listener) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(listener.stop()))
    await listener.run()  # starts or joins the relay and takes a channel first


def _provider(name: str, domain: str | None) -> Provider:
    try:
        return provider_for(name, domain)
    except PublicUnavailable as exc:
        raise BadInput(str(exc)) from None
