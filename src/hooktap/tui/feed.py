"""The bridge from the listener's events to the screen: collect now, show on the next tick.

At 500 deliveries a second, redrawing per event would spend the whole loop on layout and
starve the forwarder that shares it (the listener, the embedded relay and the TUI run in one
asyncio loop). The listener calls `Feed` synchronously; it only appends and counts. The app
drains it every ~100 ms and applies the batch in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hooktap.listen.events import (
    ConnectionChanged,
    DeliveryForwarded,
    DeliveryReceived,
    DuplicateSkipped,
    HomeLost,
    ListenerEvent,
    Paused,
    PublicChanged,
    Ready,
)
from hooktap.records import Attempt

if TYPE_CHECKING:
    pass


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

    @classmethod
    def from_stats(cls, stats: dict[str, int], expired: int) -> Counts:
        """From store.stats(), whose invalid_signatures counts invalid and expired together."""
        invalid = stats["invalid_signatures"] - expired
        return cls(stats["received"], stats["forwarded_ok"], stats["failed"], invalid, expired)


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
        )


class Feed:
    """A listener subscriber: O(1) per event, never touches a widget."""

    def __init__(self) -> None:
        self.counts = Counts()
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

    def drain(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        return batch
