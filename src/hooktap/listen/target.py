"""The forward target: parsing what users type, and building the one URL we may call.

The listener only ever connects to this target's host and port; a delivery's path tail and
query are appended to the target's path, never interpreted as a URL of their own.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# `8000` or `8000/webhooks`: a port on this machine, like `localhost:8000/webhooks` (and
# `8000?x` is then refused for its query, not for a host named 8000).
_PORT_FIRST = re.compile(r"\d+(?:[/?#].*)?", re.DOTALL).fullmatch
# A host made only of numbers (decimal, or 0x hex as inet_aton reads them): no DNS name is
# (top-level domains are never numeric), so it is an IPv4 address or a mistake. The resolver
# turns `3000` into 0.0.11.184 and `127.1` into 127.0.0.1, so anything but a plain
# dotted quad is refused rather than sent somewhere the user did not mean.
_NUMERIC_HOST = re.compile(
    r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?", re.IGNORECASE
).fullmatch


# One label of a host name, once idna-encoded. `_` is not in the DNS standard, but Docker
# names containers with it and its resolver answers for them, so it is kept.
_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}").fullmatch


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # "" or starting with "/", no trailing slash

    @property
    def netloc(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def request_target(self, tail: str = "", query: str = "") -> str:
        """The origin-form request target: target path + delivery tail, plus its query."""
        path = self.path + tail if tail else (self.path or "/")
        return f"{path}?{query}" if query else path

    def url(self, tail: str = "", query: str = "") -> str:
        return f"{self.scheme}://{self.netloc}{self.request_target(tail, query)}"

    def __str__(self) -> str:
        return self.url()


def parse_target(text: str) -> Target:
    """Accept `8000`, `8000/hooks`, `localhost:8000`, `localhost:8000/hooks` or a full
    http(s) URL."""
    raw = text.strip()
    if not raw:
        raise ValueError("forward target is empty; try --forward localhost:8000")
    if _PORT_FIRST(raw):
        raw = f"localhost:{raw}"
    if "://" not in raw:
        raw = f"http://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"forward target {text!r} is not a valid address: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"forward target {text!r} must use http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError(f"forward target {text!r} has no host; try localhost:8000")
    if _NUMERIC_HOST(parts.hostname) and not _dotted_quad(parts.hostname):
        port_hint = parts.hostname if parts.hostname.isdigit() else "PORT"
        raise ValueError(
            f"forward target {text!r} has host {parts.hostname!r}, which is not an IPv4 "
            f"address like 127.0.0.1; for a port on this machine, use localhost:{port_hint}"
        )
    if not _valid_host(parts.hostname):
        raise ValueError(
            f"forward target {text!r} has host {parts.hostname!r}, which is not an IP address "
            "or a host name (letters, digits, '-' and '.', no empty part); as in "
            "localhost:8000 or api.local:8000"
        )
    if parts.username or parts.password:
        raise ValueError(f"forward target {text!r} must not carry credentials")
    if parts.query or parts.fragment:
        raise ValueError(f"forward target {text!r} must not have a query or fragment")
    if any(ch in parts.path for ch in " \r\n\t"):
        raise ValueError(f"forward target {text!r} has whitespace in its path")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not 0 < port < 65536:
        raise ValueError(f"forward target {text!r} has port {port}, outside 1-65535")
    return Target(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _valid_host(host: str) -> bool:
    """An IPv4 or IPv6 literal, or a name the resolver can take: the resolver raises
    UnicodeError for an empty or over-long label (`api..local`), which would otherwise surface
    later, in the forwarder or the health probe, instead of here where the user typed it."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    name = host[:-1] if host.endswith(".") else host  # a fully qualified `api.local.`
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_name) <= 253 and all(_LABEL(label) for label in ascii_name.split("."))


def _dotted_quad(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)  # four decimal parts, no leading zeros (not octal)
    except ValueError:
        return False
    return True
