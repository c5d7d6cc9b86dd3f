"""The records every layer shares: one delivery as it arrived, and one attempt to forward it.

They live apart from the store so the listener, the TUI and the CLI can pass them around
without importing SQLite, and so the store stays a thin mapping of these onto tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Headers travel as an ordered list of (name, value) pairs, never a dict: the order, the case
# and repeated names are part of what the sender sent. Values are latin-1-decoded bytes, which
# round-trips any byte exactly.
Headers = list[tuple[str, str]]


def header_value(headers: Headers, *names: str) -> str | None:
    """The first value of any of `names`, compared case-insensitively, as HTTP does."""
    wanted = {n.lower() for n in names}
    return next((v for n, v in headers if n.lower() in wanted), None)


@dataclass
class Delivery:
    """One request as the relay received it, plus what the listener learned about it."""

    id: str
    received_at: float  # unix seconds, as stamped by the relay
    method: str
    path: str  # the tail after /c/{channel}, "" or starting with "/"
    query: str  # raw query string without "?"
    headers: Headers
    body: bytes
    channel: str = ""
    target: str = ""  # the forward target in force when it arrived (base URL)
    signature: str = "no-secret"  # valid | invalid | expired | unsigned | no-secret
    signature_reason: str = ""
    svix_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    event_created_at: str | None = None
    state: str = "received"  # received | dispatched | done | interrupted


@dataclass
class Attempt:
    """One try at handing a delivery to the local handler: the original forward or a replay."""

    delivery_id: str
    kind: str  # "forward" | "replay"
    started_at: float
    target_url: str
    request_headers: Headers = field(default_factory=list)
    request_body: bytes | None = None  # None: the delivery's own body was sent
    status: int | None = None
    response_headers: Headers = field(default_factory=list)
    response_body: bytes = b""
    duration_ms: float = 0.0
    error: str | None = None
    note: str = ""  # e.g. "re-signed", "re-signed, new svix-id", "as-is", "edited body"
    id: int | None = None
