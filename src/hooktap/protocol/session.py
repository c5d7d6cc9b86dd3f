"""Per-connection protocol state for each side, and the heartbeat clock.

The sessions own both directions, as python-websockets' sans-I/O `Protocol` does. Incoming,
they check frame order (a Hello first, nothing before the Welcome, no frames the peer should
never send) so the I/O layers never have to; a violation is a ProtocolError, which the I/O
layer turns into an Error frame and a clean close. Outgoing, `send` encodes a frame this side
may send, a Ping that arrives queues its Pong in `data_to_send()`, and `beat(now)` is the
whole heartbeat: the Ping that is due, or ProtocolError("heartbeat-timeout") for a silent
peer. The I/O layers only move bytes and sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hooktap.protocol.frames import (
    SUPPORTED_VERSIONS,
    Batch,
    Delivery,
    Error,
    Flow,
    Frame,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Welcome,
    decode,
    encode,
)


@dataclass
class Liveness:
    """When to ping and when to give up on a silent peer, on an injected clock.

    Any frame counts as a sign of life; a peer silent for `misses` heartbeats is dead. With the
    default 5 s heartbeat a half-open socket or a suspended laptop is noticed within 15 s.
    """

    interval: float
    last_seen: float
    misses: int = 3
    last_ping: float = 0.0

    def seen(self, now: float) -> None:
        self.last_seen = now

    def ping_due(self, now: float) -> bool:
        # A loop that sleeps one interval between beats may wake a hair early; it must still
        # ping every interval, not every other one.
        return now - self.last_ping >= self.interval - 1e-3

    def pinged(self, now: float) -> None:
        self.last_ping = now

    def dead(self, now: float) -> bool:
        return now - self.last_seen > self.interval * self.misses

    @property
    def window(self) -> float:
        return self.interval * self.misses


class _Side:
    """What both sessions do the same way: encode what this side sends, answer pings, and
    keep the heartbeat clock (set once the heartbeat interval is agreed)."""

    _SENDS: tuple[type, ...] = ()

    def __init__(self) -> None:
        self.liveness: Liveness | None = None
        self._outgoing: list[bytes] = []

    def send(self, frame: Frame) -> bytes:
        """`frame` encoded for the wire; a frame this side never sends is a bug, not input."""
        if not isinstance(frame, self._SENDS):
            raise TypeError(f"this side never sends {type(frame).__name__} frames")
        if isinstance(frame, Batch) and not self.batches:
            raise TypeError("Batch frames need protocol version 2 on this connection")
        return encode(frame)

    @property
    def batches(self) -> bool:
        raise NotImplementedError

    def data_to_send(self) -> list[bytes]:
        """Replies the session owes the peer (a Pong per Ping), oldest first; taking them
        empties the list."""
        out, self._outgoing = self._outgoing, []
        return out

    def beat(self, now: float) -> bytes | None:
        """Called by the I/O layer's one heartbeat loop (every `liveness.interval` s): the
        Ping to send now, if one is due. Raises ProtocolError("heartbeat-timeout") when the
        peer has been silent for `liveness.window` s: a half-open socket or a suspended
        laptop, which the I/O layer closes like any other protocol error."""
        liveness = self.liveness
        if liveness is None:
            return None
        if liveness.dead(now):
            raise ProtocolError(f"no frame for {liveness.window:g} s", "heartbeat-timeout")
        if not liveness.ping_due(now):
            return None
        liveness.pinged(now)
        return encode(Ping(now))

    def _arrived(self, frame: Frame, now: float | None) -> None:
        if now is not None and self.liveness is not None:
            self.liveness.seen(now)
        if isinstance(frame, Ping):
            self._outgoing.append(encode(self._pong(frame)))

    def _pong(self, ping: Ping) -> Pong:
        return Pong(ping.sent_at)


class RelaySession(_Side):
    """The relay's view of one listener connection.

    `queued` (optional) reports the channel's queue depth, which each Pong carries so that a
    paused listener can say how many deliveries wait for it."""

    _LISTENER_SENDS = (Hello, Result, Ping, Pong, Flow, Error, Batch)
    _SENDS = (Welcome, Delivery, Ping, Pong, Error, Batch)

    def __init__(
        self,
        heartbeat: float | None = None,
        now: float = 0.0,
        queued: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.hello: Hello | None = None
        self.version: int | None = None
        self._queued = queued
        if heartbeat is not None:
            self.liveness = Liveness(heartbeat, now)

    def _pong(self, ping: Ping) -> Pong:
        return Pong(ping.sent_at, queued=None if self._queued is None else self._queued())

    def receive(self, data: bytes, now: float | None = None) -> Frame:
        """Decode and check one message; `now` (monotonic) counts it as a sign of life."""
        frame = self._check(decode(data))
        self._arrived(frame, now)
        return frame

    def _check(self, frame: Frame) -> Frame:
        if not isinstance(frame, self._LISTENER_SENDS):
            raise ProtocolError(f"a listener never sends {type(frame).__name__} frames")
        if self.hello is None:
            if not isinstance(frame, Hello):
                raise ProtocolError(f"expected Hello first, got {type(frame).__name__}")
            common = sorted(set(frame.versions) & set(SUPPORTED_VERSIONS))
            if not common:
                raise ProtocolError(
                    f"no common protocol version: listener speaks {frame.versions}, "
                    f"relay speaks {list(SUPPORTED_VERSIONS)}; upgrade the older side",
                    code="version-mismatch",
                )
            self.hello = frame
            self.version = common[-1]
        elif isinstance(frame, Hello):
            raise ProtocolError("Hello sent twice")
        elif isinstance(frame, Batch):
            _check_batch(frame, Result, self.version)
        return frame

    @property
    def batches(self) -> bool:
        """Whether the listener agreed on a protocol with Batch (and Result.refused)."""
        return _has_batches(self.version)

    def welcome(
        self,
        channel: str,
        webhook_url: str,
        heartbeat: float,
        queued: int = 0,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """The Welcome for this connection; `timeout` is the handler timeout the relay applies
        (the Hello's, capped by the relay's own limit)."""
        if self.version is None:
            raise RuntimeError("welcome() before the listener's Hello")
        return encode(Welcome(self.version, channel, webhook_url, heartbeat, queued, timeout))


class ListenerSession(_Side):
    """The listener's view of its relay connection. Its heartbeat clock starts with the
    Welcome, which says the interval."""

    _RELAY_SENDS = (Welcome, Delivery, Ping, Pong, Error, Batch)
    _SENDS = (Hello, Result, Ping, Pong, Flow, Error, Batch)

    def __init__(self) -> None:
        super().__init__()
        self.welcome: Welcome | None = None

    def hello(
        self,
        client: str,
        timeout: float,
        paused: bool = False,
        *,
        instance: str = "",
        history: str = "",
        takeover: bool = False,
    ) -> bytes:
        """The first frame; `instance`, `history` and `takeover` are explained on Hello."""
        return encode(
            Hello(
                versions=list(SUPPORTED_VERSIONS),
                client=client,
                timeout=timeout,
                paused=paused,
                instance=instance,
                history=history,
                takeover=takeover,
            )
        )

    def receive(self, data: bytes, now: float | None = None) -> Frame:
        """Decode and check one message; `now` (monotonic) counts it as a sign of life, and
        starts the heartbeat clock when it is the Welcome."""
        frame = self._check(decode(data))
        if isinstance(frame, Welcome) and now is not None:
            self.liveness = Liveness(frame.heartbeat, now)
        self._arrived(frame, now)
        return frame

    def _check(self, frame: Frame) -> Frame:
        if not isinstance(frame, self._RELAY_SENDS):
            raise ProtocolError(f"a relay never sends {type(frame).__name__} frames")
        if self.welcome is None:
            if isinstance(frame, Error):
                return frame
            if not isinstance(frame, Welcome):
                raise ProtocolError(f"expected Welcome first, got {type(frame).__name__}")
            if frame.version not in SUPPORTED_VERSIONS:
                raise ProtocolError(
                    f"relay chose protocol version {frame.version}, which this listener "
                    f"does not speak",
                    code="version-mismatch",
                )
            self.welcome = frame
        elif isinstance(frame, Welcome):
            raise ProtocolError("Welcome sent twice")
        elif isinstance(frame, Batch):
            _check_batch(frame, Delivery, self.welcome.version)
        return frame

    @property
    def batches(self) -> bool:
        """Whether the relay agreed on a protocol with Batch (and Result.refused)."""
        return self.welcome is not None and _has_batches(self.welcome.version)


def _has_batches(version: int | None) -> bool:
    return version is not None and version >= 2


def _check_batch(batch: Batch, carries: type, version: int | None) -> None:
    if not _has_batches(version):
        raise ProtocolError(
            f"Batch frames need protocol version 2; this connection speaks {version}"
        )
    for frame in batch.frames:
        if not isinstance(frame, carries):
            raise ProtocolError(
                f"a Batch from this peer carries {carries.__name__} frames, not "
                f"{type(frame).__name__}"
            )
