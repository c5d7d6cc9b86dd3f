"""What a Listener is told to do: where it forwards (one target, or routes by event type),
which relay it uses and how, and what it says in its ready line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hooktap.listen import channel as channels
from hooktap.listen.pipeline import as_routing
from hooktap.listen.routes import Routing
from hooktap.listen.target import Target
from hooktap.public import ConnectTo, Provider


@dataclass
class ListenerConfig:
    """Give `target` (every delivery goes there) or `routing` (routes by event type and
    --events); either way both are set after construction, `target` to the routing's primary
    target, the one named where a single one is shown."""

    target: Target | None = None
    relay_url: str | None = None  # None: the embedded relay on loopback
    # More instances of the same relay, tried in turn after relay_url when one cannot be
    # reached or refuses (--relay URL,URL...); the channel's token works on each.
    other_relays: tuple[str, ...] = ()
    port: int = 8787
    secret: str | None = None
    timeout: float = 10.0
    concurrency: int = 32
    backoff_max: float = 30.0
    paused: bool = False
    takeover: bool = False  # take the channel from a live listener instead of being refused
    ca_file: Path | None = None  # trust this CA for an https relay instead of the system's
    relay_key: str | None = field(default=None, repr=False)  # hooktap relay --require-key
    # Which secret verifies, for the ready line: "--secret", "PIVOTAL_WEBHOOK_SECRET",
    # "local-test" (hooktap's own, kept in secret_file) or "none".
    secret_source: str = ""
    secret_file: str | None = None
    secret_made_now: bool = False
    # --public: the tunnel provider that exposes the embedded relay's ingress, and (tests
    # only) where the probe connects for the public host name, like curl's --connect-to.
    public: Provider | None = None
    public_connect_to: ConnectTo | None = None
    routing: Routing | None = None
    # Probe each target's host:port (a TCP connect) at start and every health_interval
    # seconds, and say when one stops or starts accepting connections (listen/health.py).
    # Off unless asked for: `hooktap listen` turns it on (--no-healthcheck turns it off).
    healthcheck: bool = False
    health_interval: float = 15.0

    def __post_init__(self) -> None:
        if self.routing is None:
            if self.target is None:
                raise ValueError("ListenerConfig needs a target or a routing")
            self.routing = as_routing(self.target)
        self.target = self.routing.primary

    @property
    def access(self) -> channels.RelayAccess:
        return channels.RelayAccess(self.ca_file, self.relay_key)
