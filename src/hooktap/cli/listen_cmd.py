"""`hooktap listen`: thin over hooktap.listen.Listener."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from hooktap import aio, local_secret
from hooktap.cli.common import (
    BadInput,
    Finite,
    Secret,
    forward_option,
    resolve_secret,
    secret_option,
    timeout_option,
    valid_relay_url,
    valid_target,
)
from hooktap.home import history_db
from hooktap.listen import output, state
from hooktap.listen.channel import RelayRefused
from hooktap.listen.events import ListenerEvent, Ready
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.store import Store

FORWARD_EXAMPLE = "localhost:8000/webhooks/pivotal"


@click.command("listen")
@forward_option(
    "Where to send deliveries: your handler's path, as in localhost:8000/webhooks/pivotal "
    "(8000 alone or a full URL also work; 8000 alone posts to /).",
    required=False,
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
    metavar="URL",
    help="A standalone relay (hooktap relay) to use instead of the embedded one.",
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
    "--takeover",
    is_flag=True,
    help="Take the channel from another listener that holds it now (by default a second "
    "listener on the same channel is refused while the first is alive).",
)
@click.option(
    "--retention-days",
    default=90.0,
    show_default=True,
    type=Finite(0, None, min_open=True),
    help="Keep stored deliveries this long (Pivotal's own Deliveries tab keeps 90 days).",
)
def listen_cmd(
    forward: str | None,
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
    """
    chosen = resolve_secret(secret, make=True)
    if print_secret:
        click.echo(chosen.value)
        return
    if forward is None:
        raise click.UsageError(
            f"Missing option '--forward': your handler, e.g. --forward {FORWARD_EXAMPLE}"
        )
    target = valid_target(forward)
    secret = chosen.value
    if chosen.local and secret is not None:
        state.verifies_with_local_secret(secret)
    if relay is not None:
        relay = valid_relay_url(relay)
    config = ListenerConfig(
        target=target,
        relay_url=relay,
        port=port,
        secret=secret,
        timeout=timeout,
        concurrency=concurrency,
        takeover=takeover,
        ca_file=ca_file,
        relay_key=relay_key or None,
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
        listener.subscribe(_JsonLines(chosen) if as_json else output.LogLines())
        listener.subscribe(_secret_note(chosen))
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


class _JsonLines(output.JsonLines):
    """The ready line also says which secret verifies deliveries: a script (or a person
    reading it) must not take the local test secret for Pivotal's."""

    def __init__(self, secret: Secret) -> None:
        super().__init__()
        self.secret = secret

    def _write(self, obj: dict[str, object]) -> None:
        if obj.get("event") == "ready":
            obj = {**obj, "secret_source": self.secret.source}
            if self.secret.local:
                obj["secret_file"] = str(local_secret.path())
        super()._write(obj)


def _secret_note(secret: Secret) -> Callable[[ListenerEvent], None]:
    """Lines under the ready line, on stderr, when deliveries are verified with the local test
    secret: what it is, how a handler gets it, and how to verify Pivotal's deliveries."""

    def note(event: ListenerEvent) -> None:
        if not isinstance(event, Ready) or not secret.local:
            return
        made = "made now, " if secret.made_now else ""
        pad = "       "
        click.echo(
            f"{pad}Signatures are checked with hooktap's local test secret ({made}kept in "
            f"{local_secret.path()}),\n"
            f"{pad}not Pivotal's: `hooktap trigger` signs with it, Pivotal's own deliveries "
            "will read sig=invalid.\n"
            f"{pad}Your handler verifies with it after: "
            "export PIVOTAL_WEBHOOK_SECRET=$(hooktap listen --print-secret)\n"
            f"{pad}For Pivotal's deliveries: --secret whsec_... or PIVOTAL_WEBHOOK_SECRET "
            "(the endpoint's signing secret in Pivotal).",
            err=True,
        )

    return note
