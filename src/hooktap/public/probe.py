"""Before the public URL is announced, a request goes out through it and must come back in.

A provider that printed a URL has not shown that the URL reaches us: DNS for a fresh
trycloudflare name takes a few seconds, a firewall can block the provider's own
connection, a stale name may point elsewhere. So hooktap sends a request carrying a nonce
to the public webhook URL and waits until the public ingress sees that nonce arrive and
the answer comes back with it. The ingress answers it itself (ingress.py), so the probe is
never forwarded to the handler or stored.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import time
from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from hooktap.public.base import PublicUnavailable
from hooktap.public.ingress import PROBE_HEADER, PublicIngress

# "host" -> (ip, port): where to connect instead, keeping the URL's host for TLS (SNI and
# the certificate check) and for the Host header, as curl's --connect-to does.
ConnectTo = Mapping[str, tuple[str, int]]


async def probe(
    webhook_url: str,
    ingress: PublicIngress,
    *,
    timeout: float = 30.0,
    connect_to: ConnectTo | None = None,
) -> float:
    """Send a nonce through `webhook_url`; return the seconds one round trip took.

    Retries until `timeout`, since a fresh public name may not resolve or route at once;
    raises PublicUnavailable with the last thing that went wrong. Outbound HTTPS uses
    `ssl.create_default_context()`: the system's trust store, and SSL_CERT_FILE /
    SSL_CERT_DIR where set (a corporate proxy's CA, say)."""
    nonce = secrets.token_urlsafe(18)
    arrived = ingress.expect_probe(nonce)
    deadline = time.monotonic() + timeout
    last = "no attempt finished"
    try:
        while True:
            started = time.monotonic()
            try:
                seen = await _attempt(webhook_url, nonce, deadline - started, connect_to)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                last = _describe(exc)
                if isinstance(exc, aiohttp.ClientConnectorCertificateError):
                    break  # waiting does not make a certificate trusted
            else:
                if seen is None and arrived.done():
                    return time.monotonic() - started
                last = seen or "the answer did not come from this listener"
            if time.monotonic() + 0.5 >= deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        ingress.forget_probe(nonce)
    raise PublicUnavailable(
        f"the tunnel gave {webhook_url}, but a test request sent through it did not come "
        f"back ({last}; tried for up to {timeout:g} s)",
        "failed",
    )


async def _attempt(url: str, nonce: str, budget: float, connect_to: ConnectTo | None) -> str | None:
    """One request; None when its answer carries our nonce, else what came back instead."""
    connector = aiohttp.TCPConnector(
        ssl=ssl.create_default_context(),
        resolver=ConnectToResolver(connect_to) if connect_to else None,
        use_dns_cache=False,  # a name that did not resolve a second ago may now
        force_close=True,
    )
    timeout = aiohttp.ClientTimeout(total=max(0.5, min(budget, 10.0)))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        http.post(
            url,
            data=b"",
            headers={
                PROBE_HEADER: nonce,
                # ngrok's free plan puts a warning page before browsers; not before this.
                "ngrok-skip-browser-warning": "1",
            },
            allow_redirects=False,
        ) as resp,
    ):
        body = await resp.read()
    if resp.status == 200 and resp.headers.get(PROBE_HEADER) == nonce:
        return None
    snippet = body[:120].decode("utf-8", "replace").strip()
    return f"HTTP {resp.status}" + (f": {snippet}" if snippet else "")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS certificate not trusted: {exc.certificate_error}; if a proxy on this "
            "network re-signs HTTPS, point SSL_CERT_FILE at its CA"
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its name does not resolve yet"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class ConnectToResolver(AbstractResolver):
    """Resolves the hosts named in a ConnectTo map to their stand-in address; any other
    host the ordinary way."""

    def __init__(self, connect_to: ConnectTo) -> None:
        self._map = connect_to  # read at each lookup: a test's map may grow as tunnels restart
        self._default = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self._map.get(host)
        if target is None:
            return await self._default.resolve(host, port, family)
        ip, to_port = target
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=to_port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        await self._default.close()
