"""The relay's settings, and the AppKeys its pieces share, in one small module so the ingress,
the channel API and the websocket endpoint can import them without importing each other."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class RelayConfig:
    data_dir: Path
    public_url: str | None = None  # None: derive from each request's own origin
    heartbeat: float = 5.0
    max_queue: int = 10_000
    max_body: int = 32 * 1024 * 1024
    hello_timeout: float = 10.0
    # The longest a listener may ask the relay to hold a sender for its handler's answer.
    max_handler_timeout: float = 60.0
    # How much longer than that timeout the relay waits for the listener's Result: the
    # listener answers 504 itself at its timeout, so this fires only if it is stuck.
    result_grace: float = 5.0
    # A channel no listener has claimed for this long stops taking deliveries (seconds).
    channel_ttl: float = 30 * 86400.0
    # Peers whose X-Forwarded-For/-Proto/-Host are believed (a TLS proxy in front).
    trusted_proxies: list[Network] = field(default_factory=list)


CONFIG = web.AppKey("config", RelayConfig)


def problem(status: int, reason: str, **extra: object) -> web.Response:
    """Every refusal carries a sentence saying why, as JSON a script can read."""
    return web.json_response({"error": reason, **extra}, status=status)


def public_base(request: web.Request) -> str:
    configured = request.app[CONFIG].public_url
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.host}"
