"""Per-connection protocol state for each side, and the heartbeat clock.

The sessions check frame order (a Hello first, nothing before the Welcome, no frames the peer
should never send) so the I/O layers never have to; a violation is a ProtocolError, which the
I/O layer turns into an Error frame and a clean close.
"""

from __future__ import annotations

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
        return now - self.last_ping >= self.interval

    def pinged(self, now: float) -> None:
        self.last_ping = now

    def dead(self, now: float) -> bool:
        return now - self.last_seen > self.interval * self.misses

    @property
    def window(self) -> float:
        return self.interval * self.misses


class RelaySession:
    """The relay's view of one listener connection."""

    _LISTENER_SENDS = (Hello, Result, Ping, Pong, Flow, Error, Batch)

    def __init__(self) -> None:
        self.hello: Hello | None = None
        self.version: int | None = None

    def receive(self, data: bytes) -> Frame:
        frame = decode(data)
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


class ListenerSession:
    """The listener's view of its relay connection."""

    _RELAY_SENDS = (Welcome, Delivery, Ping, Pong, Error, Batch)

    def __init__(self) -> None:
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

    def receive(self, data: bytes) -> Frame:
        frame = decode(data)
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
