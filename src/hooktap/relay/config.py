"""The relay's settings, and the helpers its doors share (refusals, proxy headers), in one
small module so the ingress, the channel API and the websocket endpoint can import them
without importing each other."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from hooktap.relay.logs import REFUSAL

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
    # SHA-256 of the key that making a channel takes (--require-key); None: anyone may. Only
    # the digest is kept, so no repr, log line or core dump of the config holds the key.
    key_digest: bytes | None = field(default=None, repr=False)
    # On SIGTERM, how long senders waiting on a listener's answer get before their delivery
    # is kept instead (202) and the relay exits.
    drain_timeout: float = 10.0

    # --- what one sender may take from a relay on the internet (SECURITY.md) ---
    # A connection must send a complete request head within this many seconds of opening, or
    # of its previous response; a kept-alive connection idle that long is closed too.
    idle_timeout: float = 10.0
    # A request body must keep coming: no byte for body_timeout seconds, or fewer than
    # min_body_rate bytes a second on average once body_timeout has passed, and it gets 408.
    body_timeout: float = 10.0
    min_body_rate: int = 1024
    # Open connections at once. Past it the oldest connection that is not in a request is
    # closed to make room. None: derived from the process's open-file limit, with headroom.
    max_connections: int | None = None
    # Bytes of queued bodies kept for one channel (503 past it), and for all (507 past it).
    max_channel_bytes: int = 256 * 1024 * 1024
    max_store_bytes: int = 2 * 1024 * 1024 * 1024
    # Bytes of request bodies held in memory at once, while read or waiting for an answer;
    # at least max_body, so one largest body always fits.
    max_inflight_bytes: int = 96 * 1024 * 1024
    # Deliveries a second one channel takes (0: no limit); past it, 429 with Retry-After.
    rate: float = 0.0
    # Per source address, per minute: channels made, and wrong websocket tokens.
    create_per_minute: int = 30
    wrong_tokens_per_minute: int = 20

    def key_matches(self, key: str | None) -> bool:
        """Whether `key` may make channels here. Digests of equal length are compared in
        constant time, so neither the key's bytes nor its length leak through timing."""
        if self.key_digest is None:
            return True
        given = key_digest(key or "")
        return hmac.compare_digest(given, self.key_digest) and bool(key)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


# The settings of the door an app is: what serve() applies to its socket, and the proxies
# whose X-Forwarded-* it believes. The relay's own app and the --public door differ only
# there (the door also believes its tunnel on loopback); the relay's settings for deliveries
# are its service's (`app[RELAY].config`).
CONFIG = web.AppKey("config", RelayConfig)


def problem(status: int, reason: str, **extra: object) -> web.Response:
    """Every refusal carries a sentence saying why, as JSON a script can read; the access log
    line for it carries the reason too (the log never reads a response body back)."""
    resp = web.json_response({"error": reason, **extra}, status=status)
    resp[REFUSAL] = reason
    return resp


def bearer(request: web.Request) -> str | None:
    """The credential in `Authorization: Bearer <it>`: a channel token or the relay key."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _trusted(peer: str, proxies: list[Network]) -> bool:
    if not proxies or not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in proxies)


def forwarded_from(request: web.Request, proxies: list[Network]) -> tuple[str, str, str]:
    """(X-Forwarded-For, -Proto, -Host) as the handler should see them.

    What the relay saw itself, unless the peer is a proxy the operator trusts: then its
    X-Forwarded-* describe the original sender, and the proxy joins the end of the chain. A
    sender's own X-Forwarded-* are otherwise ignored: anyone can write them."""
    peer = request.remote or ""
    scheme, host = request.scheme, request.host
    if not _trusted(peer, proxies):
        return peer, scheme, host
    chain = ", ".join(v.strip() for v in request.headers.getall("X-Forwarded-For", ()) if v.strip())
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    fwd_host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    return (
        f"{chain}, {peer}" if chain else peer,
        proto if proto in ("http", "https") else scheme,
        fwd_host or host,
    )


def source_address(request: web.Request, proxies: list[Network]) -> str:
    """Who sent this, for limits kept per sender: the peer, or behind trusted proxies the
    right-most X-Forwarded-For entry that is not one of them.

    Right-most, because each proxy appends the address it saw: the entries left of the last
    untrusted one are whatever that sender chose to write, and a limit keyed on them would
    let a sender pick a fresh key for every request."""
    peer = request.remote or ""
    if not _trusted(peer, proxies):
        return peer
    chain = [
        part.strip()
        for value in request.headers.getall("X-Forwarded-For", ())
        for part in value.split(",")
        if part.strip()
    ]
    for address in reversed(chain):
        if not _trusted(address, proxies):
            return address
    # Every hop is one of ours (or the proxy sent no header): the first is the furthest seen.
    return chain[0] if chain else peer


def public_base(request: web.Request) -> str:
    """The relay's origin as senders reach it: --public-url, else what the request says, as
    a trusted proxy in front (often the one that terminates TLS) reports it."""
    config = request.app[CONFIG]
    if config.public_url:
        return config.public_url.rstrip("/")
    _, scheme, host = forwarded_from(request, config.trusted_proxies)
    return f"{scheme}://{host}"
