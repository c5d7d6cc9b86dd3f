"""`hooktap relay`: a standalone relay for a team, over the same make_app() as the embedded one."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import signal
import ssl
from pathlib import Path

import click

from hooktap import aio, tls
from hooktap.cli.common import BadInput, Finite, valid_relay_url
from hooktap.cli.relay_nats import nats_connect_from, nats_options
from hooktap.home import UnusableFile, relay_data_dir
from hooktap.relay import drain, logs, server
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.broker import KeepFailed
from hooktap.relay.broker.nats_connect import NatsConnect
from hooktap.relay.config import Network, key_digest
from hooktap.relay.keys import RELAY
from hooktap.relay.logs import note

# Long enough that guessing is hopeless (16 random characters of token_urlsafe: 96 bits).
MIN_KEY_LENGTH = 16
MAKE_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


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
    "--max-channel-mb",
    default=256,
    show_default=True,
    type=click.IntRange(1, None),
    help="Bytes of bodies kept for one channel's absent listener, in MiB; past it, 503.",
)
@click.option(
    "--max-store-mb",
    default=2048,
    show_default=True,
    type=click.IntRange(1, None),
    help="Bytes of bodies kept for all channels together, in MiB; past it, 507.",
)
@click.option(
    "--max-inflight-mb",
    default=96,
    show_default=True,
    type=click.IntRange(1, None),
    help="Bytes of request bodies held in memory at once, in MiB (at least --max-body-mb); "
    "further uploads wait their turn, so memory stays bounded.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, None),
    metavar="N",
    help="Open connections at once; past it the oldest idle one is closed. Default: what "
    "the open-file limit allows, less headroom.",
)
@click.option(
    "--idle-timeout",
    default=10.0,
    show_default=True,
    type=Finite(0.1, 3600),
    metavar="SECONDS",
    help="A connection must send a complete request head this soon after opening or after "
    "its last answer, or it is closed (slow or idle clients).",
)
@click.option(
    "--body-timeout",
    default=10.0,
    show_default=True,
    type=Finite(0.1, 3600),
    metavar="SECONDS",
    help="A request body that stalls this long, or then arrives slower than 1 KiB/s, is "
    "refused with 408.",
)
@click.option(
    "--rate",
    default=0.0,
    show_default=True,
    type=Finite(0, 1_000_000),
    metavar="PER_SECOND",
    help="Deliveries a second one channel accepts (0: no limit); past it, 429 with "
    "Retry-After. Channels made and wrong listener tokens are always limited per source.",
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
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PEM",
    help="Serve https/wss with this certificate (then any intermediates), with --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PEM",
    help="The unencrypted private key of --tls-cert.",
)
@click.option(
    "--require-key",
    "require_key",
    envvar="HOOKTAP_RELAY_KEY",
    show_envvar=True,
    metavar="KEY",
    help="Make channels only for listeners that pass this key (hooktap listen --relay-key, "
    "or the same variable). A listener whose channel exists here re-claims it by its token "
    "alone, which already proves it is the owner, so rotating the key cuts off no webhook URL "
    "in use. Prefer the variable: arguments show in `ps`.",
)
@click.option(
    "--drain-timeout",
    default=10.0,
    show_default=True,
    type=Finite(0, 3600),
    metavar="SECONDS",
    help="On SIGTERM or Ctrl+C: stop accepting connections, give senders waiting on a "
    "listener this long for its answer, keep the rest (202) for the next start, tell "
    "listeners to reconnect, exit 0. A second signal skips the wait.",
)
@nats_options
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr (one per request and per listener connecting or leaving) as "
    "text or JSON objects. Neither holds headers, tokens, the key, query strings or bodies.",
)
def relay_cmd(
    host: str,
    port: int,
    data_dir: Path | None,
    public_url: str | None,
    heartbeat: float,
    max_queue: int,
    max_body_mb: int,
    max_channel_mb: int,
    max_store_mb: int,
    max_inflight_mb: int,
    max_connections: int | None,
    idle_timeout: float,
    body_timeout: float,
    rate: float,
    channel_ttl: float,
    trusted_proxies: list[Network],
    tls_cert: Path | None,
    tls_key: Path | None,
    require_key: str | None,
    drain_timeout: float,
    nats_urls: list[str] | None,
    nats_creds: Path | None,
    nats_token: str | None,
    nats_user: str | None,
    nats_password: str | None,
    nats_ca: Path | None,
    nats_cert: Path | None,
    nats_key: Path | None,
    log_format: logs.LogFormat,
) -> None:
    """Run a relay server that owns public webhook URLs and streams them to listeners.

    \b
    Examples:
      hooktap relay --host 0.0.0.0 --port 8787 --public-url https://hooks.example.com
      HOOKTAP_RELAY=https://hooks.example.com hooktap listen --forward 8000

    \b
    On the internet, with its own certificate and a key for making channels:
      export HOOKTAP_RELAY_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
      hooktap relay --host 0.0.0.0 --port 443 --tls-cert fullchain.pem --tls-key key.pem
      HOOKTAP_RELAY_KEY=... hooktap listen --relay https://hooks.example.com --forward 8000

    GET /healthz says the process serves; GET /readyz (503 while draining or when the
    database does not answer) whether it should get traffic.
    """
    if public_url is not None:
        public_url = valid_relay_url(public_url, "--public-url")
    if max_inflight_mb < max_body_mb:
        raise BadInput(
            f"--max-inflight-mb {max_inflight_mb} is under --max-body-mb {max_body_mb}: the "
            "largest body accepted must fit in memory; raise it or lower --max-body-mb"
        )
    ssl_context = _server_tls(tls_cert, tls_key)
    key = _valid_key(require_key)
    nats_connect = nats_connect_from(
        nats_urls,
        creds=nats_creds,
        token=nats_token,
        user=nats_user,
        password=nats_password,
        ca=nats_ca,
        cert=nats_cert,
        key=nats_key,
    )
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
        max_channel_bytes=max_channel_mb * 1024 * 1024,
        max_store_bytes=max_store_mb * 1024 * 1024,
        max_inflight_bytes=max_inflight_mb * 1024 * 1024,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        body_timeout=body_timeout,
        rate=rate,
        channel_ttl=channel_ttl,
        trusted_proxies=trusted_proxies,
        key_digest=None if key is None else key_digest(key),
        drain_timeout=drain_timeout,
    )
    logs.setup(log_format)
    try:
        aio.run(_serve(config, host, port, ssl_context, nats_urls, nats_connect))
    except KeyboardInterrupt:
        pass
    except KeepFailed as exc:  # --nats given and not reachable, or refusing this relay
        raise BadInput(str(exc)) from None
    except UnusableFile as exc:  # a damaged relay.db: its message names the file and the way out
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from None


def _server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if (cert is None) != (key is None):
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise BadInput(f"{given} needs {missing} too: the certificate and its private key")
    if cert is None or key is None:
        return None
    try:
        return tls.server_context(cert, key)
    except tls.ServerCertError as exc:
        raise BadInput(str(exc)) from None


def _valid_key(key: str | None) -> str | None:
    """The key, or None for none (an empty HOOKTAP_RELAY_KEY included). It travels in a
    header, so only printable ASCII without spaces; short ones are refused as guessable."""
    if not key:
        return None
    if not all("!" <= ch <= "~" for ch in key):
        raise BadInput(
            "--require-key/HOOKTAP_RELAY_KEY must be printable ASCII without spaces; make one "
            f"with {MAKE_KEY}"
        )
    if len(key) < MIN_KEY_LENGTH:
        raise BadInput(
            f"--require-key/HOOKTAP_RELAY_KEY is {len(key)} characters; at least "
            f"{MIN_KEY_LENGTH} are needed so it cannot be guessed; make one with {MAKE_KEY}"
        )
    return key


async def _serve(
    config: RelayConfig,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    nats_urls: list[str] | None = None,
    nats_connect: NatsConnect | None = None,
) -> None:
    app = make_app(config, nats_urls, nats_connect)
    # After the drain (drain.stop), what handlers still run get shutdown_timeout.
    runner = await server.serve(
        app, host, port, ssl_context=ssl_context, access_log=True, shutdown_timeout=2.0
    )
    try:
        _announce(config, runner.addresses, ssl_context is not None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                app[RELAY].drain.hurry.set()  # a second signal: the operator will not wait
                return
            note(logging.INFO, "stopping", f"{sig.name}: stopping", signal=sig.name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        await stop.wait()
    except BaseException:
        await runner.cleanup()
        raise
    await drain.stop(runner)


def _announce(config: RelayConfig, addresses: list[object], secure: bool) -> None:
    """The listening line, and what an operator must know about exposing it."""
    bound = addresses[0]
    assert isinstance(bound, tuple)
    host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    url = f"{'https' if secure else 'http'}://{host}:{bound[1]}"
    note(
        logging.INFO,
        "start",
        f"hooktap relay listening on {url} (data in {config.data_dir}); Ctrl+C to stop",
        url=url,
        data_dir=str(config.data_dir),
        tls=secure,
        require_key=config.key_digest is not None,
    )
    exposed = not all(
        ipaddress.ip_address(str(a[0]).split("%")[0]).is_loopback
        for a in addresses
        if isinstance(a, tuple)
    )
    if not exposed:
        return
    if config.key_digest is None:
        note(
            logging.WARNING,
            "open-relay",
            "this relay listens beyond this machine and anyone who can reach it can create "
            "channels on it; set HOOKTAP_RELAY_KEY (or --require-key) so that only listeners "
            "with the key can",
        )
    if not secure and not config.trusted_proxies:
        note(
            logging.WARNING,
            "plain-http",
            "this relay serves plain http beyond this machine: channel tokens and the relay "
            "key cross the network readable; serve https with --tls-cert/--tls-key, or put a "
            "TLS proxy in front and name it with --trusted-proxy",
        )
