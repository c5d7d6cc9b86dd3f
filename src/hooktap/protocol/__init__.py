"""The relay–listener wire protocol: frames and per-connection state, with no I/O at all.

Like h11 and python-websockets' sans-I/O core, these modules turn bytes into events and events
into bytes; the relay (aiohttp) and the listener (websockets) only move the bytes.
"""

from hooktap.protocol.frames import (
    PROTOCOL_VERSION,
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
from hooktap.protocol.session import ListenerSession, Liveness, RelaySession

__all__ = [
    "PROTOCOL_VERSION",
    "Delivery",
    "Error",
    "Flow",
    "Frame",
    "Hello",
    "ListenerSession",
    "Liveness",
    "Ping",
    "Pong",
    "ProtocolError",
    "RelaySession",
    "Result",
    "Welcome",
    "decode",
    "encode",
]
