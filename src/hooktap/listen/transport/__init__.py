"""How the listener reaches its relay: one interface, two ways.

`WebSocketTransport` (websocket.py) speaks the wire protocol to any relay, this machine's or a
team's. `InProcessTransport` (inprocess.py) links by function call to the relay this very
process serves, the default `hooktap listen`: the same hub, queue and answers, without framing
each delivery twice over loopback. The listener drives both the same way, once per connection:

    opened = await transport.open(hello, take)   # Hello and Welcome, or attach
    await transport.serve()                      # until the connection ends: deliveries go to
                                                 # take(), control frames are answered here
    transport.send_result                        # how each delivery's Result goes back
    await transport.pause(paused)                # hold deliveries at the relay, or let them flow
    transport.queued()                           # what waits at the relay, as last heard
    await transport.close()                      # from any task; also ends serve()

Failures are the listener's to judge, in words it understands: `HandshakeRefused` (the relay
answered the connection with an HTTP refusal), `Disconnected` (it dropped), ProtocolError,
RelayRefused (another listener took the channel over); OSError and TimeoutError pass as they
are, and so does a TLS certificate error at connect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hooktap.protocol import Delivery, Hello, Result

# The listener's side of a delivery: returns once it has room for it (a slot in its
# concurrency limit) and has started handling it. Awaiting it is the back-pressure.
Take = Callable[[Delivery], Awaitable[None]]

TAKEN_OVER = "another `hooktap listen` connected to this channel and took it over"


@dataclass(frozen=True)
class Opened:
    """What a connection starts with."""

    webhook_url: str
    queued: int  # deliveries waiting at the relay for this channel
    # The relay keeps a delivery the listener refuses (protocol 2, or the relay in process);
    # an older relay would take a refusal for an acknowledgement.
    keeps_refused: bool


class HandshakeRefused(Exception):
    """The relay refused the connection before any frame: an HTTP status and its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"relay answered {status}: {reason}")
        self.status = status
        self.reason = reason


class Disconnected(ConnectionError):
    """The connection failed or dropped; the message says how, for the state line."""


class Transport(ABC):
    """One connection to a relay; a new one for each reconnect."""

    @abstractmethod
    async def open(self, hello: Hello, take: Take) -> Opened:
        """Connect and agree (Hello, Welcome); deliveries may reach `take` from now on."""

    @abstractmethod
    async def serve(self) -> None:
        """Carry deliveries and control frames until the connection ends or close() is
        called; returns on a clean end, raises on any other."""

    @abstractmethod
    async def send_result(self, result: Result) -> None:
        """Hand a delivery's Result to the relay; one lost with the connection is fine (the
        relay offers the delivery again, and history answers it)."""

    @abstractmethod
    async def pause(self, paused: bool) -> None:
        """Hold deliveries at the relay (they queue, the sender gets 202), or let them flow."""

    @abstractmethod
    def queued(self) -> int | None:
        """How many deliveries the relay holds for the channel, or None where it has not said."""

    @abstractmethod
    async def close(self) -> None:
        """Let go of the connection; safe to call more than once, and from another task."""
