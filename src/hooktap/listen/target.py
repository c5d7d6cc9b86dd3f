"""The forward target: parsing what users type, and building the one URL we may call.

The listener only ever connects to this target's host and port; a delivery's path tail and
query are appended to the target's path, never interpreted as a URL of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


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
    """Accept `8000`, `localhost:8000`, `localhost:8000/hooks` or a full http(s) URL."""
    raw = text.strip()
    if not raw:
        raise ValueError("forward target is empty; try --forward localhost:8000")
    if raw.isdigit():
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
