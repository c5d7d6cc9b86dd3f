"""`hooktap listen --public`: this listener's ingress through an existing tunnel service.

The pieces, each usable alone:
- `PublicIngress` (ingress.py): `/c/<channel>[/tail]` of the relay app, alone, on a
  loopback socket of its own; the only thing a provider is ever pointed at.
- providers: `Cloudflared` (default), `LocalhostRun` (`ssh`), `Ngrok`; `provider_for`.
- `Tunnel` (supervisor.py): runs a provider, tells of every URL change, restarts it.
- `probe` (probe.py): a nonce sent through the public URL must arrive before it is shown.

`open_public` puts them together the way `hooktap listen` uses them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from hooktap.public.base import STABLE_WAYS, Provider, PublicUnavailable, TunnelLost
from hooktap.public.cloudflared import Cloudflared
from hooktap.public.ingress import PROBE_HEADER, PublicIngress
from hooktap.public.localhost_run import LocalhostRun
from hooktap.public.ngrok_sdk import Ngrok
from hooktap.public.probe import ConnectTo, probe
from hooktap.public.supervisor import Backoff, OnChange, Tunnel, TunnelChange

__all__ = [
    "PROBE_HEADER",
    "PROVIDERS",
    "STABLE_WAYS",
    "Backoff",
    "Cloudflared",
    "ConnectTo",
    "LocalhostRun",
    "Ngrok",
    "Provider",
    "Public",
    "PublicIngress",
    "PublicUnavailable",
    "Tunnel",
    "TunnelChange",
    "TunnelLost",
    "open_public",
    "probe",
    "provider_for",
    "webhook_url",
]

PROVIDERS = ("cloudflared", "ssh", "ngrok")


def provider_for(name: str | None, domain: str | None = None) -> Provider:
    """The provider `--public [NAME]` names (cloudflared when none); `--domain` is ngrok's."""
    chosen = name or "cloudflared"
    if chosen not in PROVIDERS:
        raise PublicUnavailable(
            f"--public {chosen!r} is not a provider; choose one of {', '.join(PROVIDERS)}",
            "refused",
        )
    if domain and chosen != "ngrok":
        raise PublicUnavailable(
            "--domain goes with `--public ngrok` (ngrok's free static domain); "
            f"{chosen} picks its own name",
            "refused",
        )
    if chosen == "ngrok":
        return Ngrok(domain)
    if chosen == "ssh":
        return LocalhostRun()
    return Cloudflared()


@dataclass
class Public:
    """What `open_public` yields: the public webhook URL, and the sentence to show beside
    it when that URL will not survive a restart (None when it will)."""

    channel: str
    tunnel: Tunnel
    stability_note: str | None

    @property
    def webhook_url(self) -> str | None:
        """None while the provider is down and restarting (on_change tells when)."""
        base = self.tunnel.url
        return webhook_url(base, self.channel) if base is not None else None


def webhook_url(base: str, channel: str) -> str:
    return f"{base.rstrip('/')}/c/{channel}"


@contextlib.asynccontextmanager
async def open_public(
    relay_app: web.Application,
    channel: str,
    provider: Provider,
    *,
    on_change: OnChange | None = None,
    connect_to: ConnectTo | None = None,
    probe_timeout: float = 30.0,
) -> AsyncIterator[Public]:
    """The public ingress, a supervised tunnel to it, and a probe of every URL it gets.

    Yields once the first URL has carried a probe; raises PublicUnavailable (one sentence
    for the user) when it cannot. `on_change` hears each later change: `url` is the new
    base URL (`webhook_url(change.url, channel)` for the webhook URL), or None while the
    provider is down and restarting. `connect_to` is for tests (see probe.py)."""
    async with PublicIngress(relay_app, channel) as ingress:

        async def verify(base: str) -> None:
            await probe(
                webhook_url(base, channel), ingress, timeout=probe_timeout, connect_to=connect_to
            )

        async with Tunnel(provider, ingress.url, on_change=on_change, verify=verify) as tunnel:
            yield Public(channel, tunnel, provider.stability_note)
