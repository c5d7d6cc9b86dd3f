"""`hooktap listen`: thin over hooktap.listen.Listener."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import click

from hooktap import aio
from hooktap.cli.common import (
    BadInput,
    Finite,
    forward_option,
    secret_option,
    timeout_option,
    valid_relay_url,
    valid_secret,
    valid_target,
)
from hooktap.home import history_db
from hooktap.listen import output
from hooktap.listen.channel import RelayRefused
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.store import Store


@click.command("listen")
@forward_option("Where to send deliveries: 8000, localhost:8000/webhooks/pivotal, or a full URL.")
@secret_option("Your endpoint's signing secret (whsec_...). Verified locally; never sent anywhere.")
@click.option(
    "--relay",
    envvar="HOOKTAP_RELAY",
    show_envvar=True,
    metavar="URL",
    help="A standalone relay (hooktap relay) to use instead of the embedded one.",
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
    forward: str,
    secret: str | None,
    relay: str | None,
    port: int,
    timeout: float,
    as_json: bool,
    tui: bool | None,
    concurrency: int,
    retention_days: float,
    takeover: bool,
) -> None:
    """Forward webhooks from a stable URL to your local handler, and keep every delivery.

    \b
    Example:
      hooktap listen --forward localhost:8000/webhooks/pivotal --secret whsec_...
    """
    target = valid_target(forward)
    secret = valid_secret(secret)
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
