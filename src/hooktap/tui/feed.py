"""The bridge from the listener's events to the screen: collect now, show on the next tick.

At 500 deliveries a second, redrawing per event would spend the whole loop on layout and
starve the forwarder that shares it (the listener, the embedded relay and the TUI run in one
asyncio loop). The listener calls `Feed` synchronously; it only appends and counts. The app
drains it every ~100 ms and applies the batch in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hooktap.listen.events import (
    ConnectionChanged,
    DeliveryForwarded,
    DeliveryNotForwarded,
    DeliveryReceived,
    DuplicateSkipped,
    HomeLost,
    ListenerEvent,
    Paused,
    PublicChanged,
    Ready,
    TargetHealth,
)
from hooktap.records import Attempt


@dataclass
class Counts:
    """What this session saw, counted as store.stats() counts the history."""

    received: int = 0
    forwarded: int = 0  # the handler answered 2xx
    failed: int = 0  # non-2xx, or no response
    # By verdict, as `sig:invalid` and `sig:expired` filter: the header's numbers are the
    # lengths of those lists.
    invalid: int = 0
    expired: int = 0
    # Stored and answered, but sent to no handler (`status:filtered,unrouted`): neither
    # forwarded nor failed, and counted so that received still adds up.
    not_forwarded: int = 0

    @classmethod
    def from_stats(cls, stats: dict[str, int], expired: int, not_forwarded: int = 0) -> Counts:
        """From store.stats(), whose invalid_signatures counts invalid and expired together."""
        invalid = stats["invalid_signatures"] - expired
        received, ok, failed = stats["received"], stats["forwarded_ok"], stats["failed"]
        return cls(received, ok, failed, invalid, expired, not_forwarded)


@dataclass
class Batch:
    """Everything that happened since the last drain, reduced to what the screen needs."""

    received: int = 0  # new deliveries (rows to add at the head)
    forwarded: list[Attempt] = field(default_factory=list)
    ready: Ready | None = None
    connection: ConnectionChanged | None = None  # the latest state only
    paused: bool | None = None
    skipped: int = 0
    home_lost: list[HomeLost] = field(default_factory=list)  # each is shown as a notice
    public: PublicChanged | None = None  # the latest news of the --public URL
    # Deliveries that went to no handler since the last drain: id -> "filtered" | "unrouted".
    not_forwarded: dict[str, str] = field(default_factory=dict)
    # The handlers' health as it changed, in order, each with the state it had before (None:
    # the first probe), so "down at start" and "back again" are news and "up at start" is not.
    health: list[tuple[TargetHealth, str | None]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.received
            or self.forwarded
            or self.ready
            or self.connection
            or self.paused is not None
            or self.skipped
            or self.home_lost
            or self.public
            or self.not_forwarded
            or self.health
        )


class Feed:
    """A listener subscriber: O(1) per event, never touches a widget."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.health: dict[str, str] = {}  # host:port -> "up" | "down", as last probed
        self._batch = Batch()

    def __call__(self, event: ListenerEvent) -> None:
        batch = self._batch
        if isinstance(event, DeliveryReceived):
            batch.received += 1
            self.counts.received += 1
            if event.delivery.signature == "invalid":
                self.counts.invalid += 1
            elif event.delivery.signature == "expired":
                self.counts.expired += 1
        elif isinstance(event, DeliveryForwarded):
            batch.forwarded.append(event.attempt)
            status = event.attempt.status
            if status is not None and 200 <= status <= 299:
                self.counts.forwarded += 1
            else:
                self.counts.failed += 1
        elif isinstance(event, ConnectionChanged):
            batch.connection = event
        elif isinstance(event, Ready):
            batch.ready = event
        elif isinstance(event, Paused):
            batch.paused = event.paused
        elif isinstance(event, DuplicateSkipped):
            batch.skipped += 1
        elif isinstance(event, HomeLost):
            batch.home_lost.append(event)
        elif isinstance(event, PublicChanged):
            batch.public = event
        elif isinstance(event, DeliveryNotForwarded):
            batch.not_forwarded[event.delivery.id] = event.delivery.state
            self.counts.not_forwarded += 1
        elif isinstance(event, TargetHealth):
            batch.health.append((event, self.health.get(event.target)))
            self.health[event.target] = event.state

    def drain(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        return batch
