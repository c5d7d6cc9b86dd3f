"""The relay–listener wire protocol: frames and per-connection state, with no I/O at all.

Like h11 and python-websockets' sans-I/O core, these modules turn bytes into events and events
into bytes; the relay (aiohttp) and the listener (websockets) only move the bytes.
"""

from hooktap.protocol.frames import (
    MAX_BATCH,
    MAX_HEARTBEAT,
    MAX_TIMEOUT,
    MAX_UNIX_TIME,
    PROTOCOL_VERSION,
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
    encode_batch,
)
from hooktap.protocol.session import ListenerSession, Liveness, RelaySession

__all__ = [
    "MAX_BATCH",
    "MAX_HEARTBEAT",
    "MAX_TIMEOUT",
    "MAX_UNIX_TIME",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Batch",
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
    "encode_batch",
]
