"""The broker: where deliveries wait, and how they reach the instance that holds a listener.

The relay service (relay/service.py) keeps the listeners linked to this instance (relay/hub.py:
a websocket, or a function call into `hooktap listen`'s own process) and leaves to a Broker
everything that may live beyond this process: the channel registry, each channel's queue, and
the route from the instance a sender posted to, to the instance whose link holds the channel's
listener. `LocalBroker` (local.py) is one machine: a SQLite file and in-memory links. A NATS
JetStream broker is meant to be the second (a key-value bucket for channels, a stream with a
subject per channel for the queues, request-reply for the live route), without a change to the
ingress, the websocket endpoint or the listener, which see only the service.

The contract
------------

Every method that may touch a disk or a network is a coroutine; those that are not read
memory, on the event loop, and must stay cheap (the ingress calls them per request).

Channels (any instance can authenticate any listener):
- `claim(token)`: the channel the token owns, made if unknown (relay/db.py says how the id
  derives from the token); None when the derived id is another token's. `owns(token)`: whether
  claiming would make nothing. `check_token(channel, token)`: the websocket's login.
- `channel_state(channel, ttl)`: "live", "stale" (no listener seen for `ttl` s) or "unknown".
  Asked per request: answer a live channel from memory, without an await that yields.

The live route (a sender waits for the handler's answer):
- `listening(channel)`: whether a listener is known to be connected anywhere; a hint, from
  memory, that lets the ingress skip the queue's byte caps for what will not be queued.
- `offer(channel, delivery, grace)`: push the delivery to the channel's listener, wherever
  its link is, and wait for its Result until the listener's handler timeout plus `grace`
  (told to the listener as `delivery.answer_by`: it does not start a delivery whose sender
  was already answered). Raises `NotHeld` at once when no instance holds a live, unpaused
  listener (the caller keeps it), `NoAnswer` when the listener took it and did not answer
  in time (it may still forward it, so the caller must not keep it). Otherwise an `Offered`:
  the Result, or None with `handed_to` naming the history it may have reached (the link
  dropped before answering) or None (it never left; its answer_by is cleared).

Keeping (a sender was, or is about to be, answered 202):
- `keep(channel, delivery, handed_to)`: returns once the delivery is durable (on disk, or
  acknowledged by the stream), so that the 202 that follows is a promise; raises `KeepFailed`
  when it cannot be kept (the sender gets 503 and retries). At most one copy per delivery id
  (JetStream: publish with the id as Nats-Msg-Id). Kept deliveries reach a listener later in
  arrival order, per channel. `handed_to` is the history of a listener that was given it and
  never confirmed it: whoever gets it next with another history is told `handed_before`.
- `depth(channel)`, `queued_bytes(channel)`: what waits (None: all channels), from memory,
  counting a keep from the moment it is called, so that caps checked before one keep see
  every keep in flight. A remote broker may answer from a cache that lags a little.

A listener on this instance:
- `attach(link, takeover)`: the link holds its channel now (the service has judged it
  against any holder on this instance already): live deliveries for the channel must reach
  it, from any instance (JetStream: serve the channel's live subject). Refreshes the
  channel's last-seen. Raises ChannelBusy when a live listener holds the channel on another
  instance and `takeover` is false. `detach(link)`: the link is gone; refreshes last-seen.
- `hand_over(link)`: give the link the channel's kept deliveries, oldest first, marking each
  with the link's history before it goes (after a crash the relay errs towards "may have it",
  recorded and not forwarded, never towards a second forward); stops when the link closes or
  pauses. A link gets one hand-over at a time; a call while one runs makes it look again.
- `settle(link, result)`: the listener's Result for a delivery it was given. A Result that
  is not `refused` confirms it: the listener stored it, so it is deleted (JetStream: acked)
  and never handed over again. A `refused` one never reached the handler: the delivery stays
  kept, marked as handed to nobody, and is offered to the link again after a backoff
  (JetStream: nak with a delay). Settling a delivery that was only pushed live touches no
  disk.

Health: `ping()` raises KeepFailed unless a delivery could be kept now (for /readyz);
`close()` last, after every link is released.

Optional: `register_metrics(registry)`, for what a broker adds to /metrics (NATS: the queue
stream's depth and the live route's request-reply latency, relay/broker/nats_metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hooktap.protocol import Delivery, Result

if TYPE_CHECKING:
    from hooktap.relay.db import ChannelState, Claim
    from hooktap.relay.hub import Link

__all__ = ["Broker", "ChannelBusy", "KeepFailed", "NoAnswer", "NotHeld", "Offered", "TooLarge"]


class NotHeld(Exception):
    """No live listener holds the channel, on any instance: keep the delivery."""


class NoAnswer(Exception):
    """The listener took a live delivery and gave no Result within `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"no result within {wait:g} s")
        self.wait = wait


class KeepFailed(Exception):
    """The delivery could not be kept; the message says why (the sender is told to retry)."""


class TooLarge(KeepFailed):
    """The delivery can never be kept here, however often it is sent (NATS: larger than its
    max_payload); the message says what the relay's operator can change."""


class ChannelBusy(Exception):
    """A second listener asked for a channel whose listener is alive, without --takeover."""


@dataclass
class Offered:
    """How a live push ended, when it did before the deadline."""

    result: Result | None  # the listener's answer; None: it never came (the link dropped)
    # With no result: the history the delivery was handed to, which may have forwarded it;
    # None when it never left this relay for the listener.
    handed_to: str | None = None


class Broker(Protocol):
    # channels
    async def claim(self, token: str) -> Claim | None: ...
    async def owns(self, token: str) -> bool: ...
    async def check_token(self, channel: str, token: str) -> bool: ...
    async def channel_state(self, channel: str, ttl: float) -> ChannelState: ...

    # the live route
    def listening(self, channel: str) -> bool: ...
    async def offer(self, channel: str, delivery: Delivery, grace: float) -> Offered: ...

    # keeping
    async def keep(self, channel: str, delivery: Delivery, handed_to: str | None) -> None: ...
    def depth(self, channel: str | None = None) -> int: ...
    def queued_bytes(self, channel: str | None = None) -> int: ...

    # a listener on this instance
    async def attach(self, link: Link, takeover: bool) -> None: ...
    async def detach(self, link: Link) -> None: ...
    async def hand_over(self, link: Link) -> None: ...
    async def settle(self, link: Link, result: Result) -> None: ...

    # health
    async def ping(self) -> None: ...
    async def close(self) -> None: ...
