"""`hooktap relay`: a standalone relay for a team, over the same make_app() as the embedded one."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import signal
from pathlib import Path

import click
from aiohttp import web

from hooktap import aio
from hooktap.cli.common import BadInput, Finite, valid_relay_url
from hooktap.home import relay_data_dir
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.config import Network


def _channel_ttl(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """Days, as a positive number: "nan" would quietly keep every channel alive forever."""
    try:
        days = float(value)
    except ValueError:
        days = math.nan
    if not days > 0:
        raise click.BadParameter(f"{value!r} is not a positive number of days, e.g. 30 or 0.5")
    return days * 86400.0


def _trusted_proxies(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[Network]:
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not an IP address or network, e.g. 10.0.0.0/8, 127.0.0.1 or ::1"
            ) from None
    return networks


@click.command("relay")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where channels and queued deliveries live (default: $HOOKTAP_HOME/relay).",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="The URL senders use to reach this relay, e.g. https://hooks.example.com.",
)
@click.option(
    "--heartbeat",
    default=5.0,
    show_default=True,
    type=Finite(0.05, 300),
    help="Seconds between heartbeats; a listener silent for three is dropped.",
)
@click.option(
    "--max-queue",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, None),
    help="Deliveries kept per channel for an absent listener; past it senders get 503.",
)
@click.option(
    "--max-body-mb",
    default=32,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Largest request body accepted, in MiB.",
)
@click.option(
    "--channel-ttl",
    "channel_ttl",
    default="30",
    show_default=True,
    metavar="DAYS",
    callback=_channel_ttl,
    help="A channel no listener has claimed for this many days stops taking deliveries "
    "(410), e.g. --channel-ttl 7; a listener that connects revives it.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    callback=_trusted_proxies,
    help="A proxy in front of this relay whose X-Forwarded-For/-Proto/-Host are believed; "
    "repeat for more, e.g. --trusted-proxy 10.0.0.0/8 --trusted-proxy ::1.",
)
def relay_cmd(
    host: str,
    port: int,
    data_dir: Path | None,
    public_url: str | None,
    heartbeat: float,
    max_queue: int,
    max_body_mb: int,
    channel_ttl: float,
    trusted_proxies: list[Network],
) -> None:
    """Run a relay server that owns public webhook URLs and streams them to listeners.

    \b
    Example:
      hooktap relay --host 0.0.0.0 --port 8787 --public-url https://hooks.example.com
      HOOKTAP_RELAY=https://hooks.example.com hooktap listen --forward 8000
    """
    if public_url is not None:
        public_url = valid_relay_url(public_url, "--public-url")
    if data_dir is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BadInput(f"--data-dir {data_dir}: {exc.strerror}") from None
    config = RelayConfig(
        data_dir=data_dir or relay_data_dir(),
        public_url=public_url,
        heartbeat=heartbeat,
        max_queue=max_queue,
        max_body=max_body_mb * 1024 * 1024,
        channel_ttl=channel_ttl,
        trusted_proxies=trusted_proxies,
    )

    try:
        aio.run(_serve(config, host, port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise BadInput(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from None


async def _serve(config: RelayConfig, host: str, port: int) -> None:
    runner = web.AppRunner(
        make_app(config), access_log=None, handle_signals=False, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        click.echo(
            f"hooktap relay listening on http://{bound[0]}:{bound[1]} "
            f"(data in {config.data_dir}); Ctrl+C to stop",
            err=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
