"""Wire frames: one websocket binary message each, or several inside one Batch (protocol 2).

Layout: 1 byte frame kind, 4 bytes big-endian length N, N bytes of UTF-8 JSON metadata, then
the payload as raw bytes to the end of the message. Bodies ride in the payload untouched, so
a 10 MB binary body costs one copy, not a base64 round-trip or a JSON re-encoding. A Batch's
payload is its frames back to back, their lengths listed in its metadata.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hooktap.records import Headers

# 2 added Result.refused and Batch. A version-1 relay would ignore `refused` and take a
# refusal for an answer, forgetting a delivery nobody has, and knows no Batch: so both are
# sent only when the handshake agreed on 2. Later optional fields (Hello.instance, .history,
# .takeover, Welcome.timeout, Delivery.handed_before) need no new version: a peer that does
# not know a field ignores it, and a missing one takes its default.
PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
_PREFIX = struct.Struct(">BI")
MAX_META = 1 << 20  # metadata beyond 1 MiB is not a header block, it is an attack
MAX_BATCH = 256  # frames in one Batch
MAX_VERSIONS = 16  # a Hello offering more versions than exist is not negotiating
# Bounds that keep a peer's numbers safe to add, multiply and sleep on (1e308 s overflows to
# inf the moment it is scaled); the relay applies its own, tighter, handler timeout policy.
MAX_TIMEOUT = 86_400.0
MAX_HEARTBEAT = 3_600.0
# The last day datetime and time.gmtime can show in any time zone (9999-12-31 UTC): a
# received_at past it would crash the listener's log line, history view and TUI.
MAX_UNIX_TIME = 253_402_214_400.0


class ProtocolError(Exception):
    """A frame that breaks the protocol; the peer gets an Error frame and a clean close."""

    def __init__(self, reason: str, code: str = "protocol-error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass
class Hello:
    """Listener → relay, first frame: what it speaks and how long it lets a handler take.

    `instance` is a random id of this listener process run: a reconnect from the same run
    carries the same one, so the relay can tell it from a second listener on the channel.
    `history` is the persistent id of the listener's history store: a delivery handed to an
    earlier connection with the same history is in it (or will be confirmed), one handed to a
    different history may be nowhere the developer can see. `takeover` asks the relay to give
    the channel to this listener even though another one is live on it. All three default to
    what an older listener, which sends none of them, means.
    """

    versions: list[int] = field(
        default_factory=lambda: list(SUPPORTED_VERSIONS), metadata={"required": True}
    )
    client: str = ""
    timeout: float = 10.0
    paused: bool = False
    instance: str = ""
    history: str = ""
    takeover: bool = False


@dataclass
class Welcome:
    """Relay → listener: the agreed version, the public URL and the heartbeat cadence.

    `timeout` is the handler timeout the relay actually applies, which caps what the Hello
    asked for: the listener needs it to know how long a sender is really held. None means an
    older relay that does not say (it applies the Hello's timeout).
    """

    version: int
    channel: str
    webhook_url: str
    heartbeat: float
    queued: int = 0
    timeout: float | None = None


@dataclass
class Delivery:
    """Relay → listener: one request exactly as received.

    `handed_before` says the relay already handed this delivery to a listener with a different
    history, which never confirmed it: it may or may not have reached that listener's handler,
    so the receiving listener must not forward it blindly as if it were new.

    `answer_by` (unix time, relay's clock) is set on a delivery pushed live while its sender
    waits: past it the relay has answered the sender 504 and kept nothing, so a listener that
    only gets to it later (all its slots were busy) must not forward it: the sender's retry
    would be a second copy.
    """

    id: str
    received_at: float
    method: str
    path: str
    query: str
    headers: Headers
    body: bytes = b""
    # Who sent it and how it reached the relay, for X-Forwarded-For/-Proto/-Host.
    remote: str = ""
    scheme: str = "http"
    host: str = ""
    handed_before: bool = False
    answer_by: float | None = None


@dataclass
class Result:
    """Listener → relay: what the local handler answered; also the delivery's acknowledgement."""

    id: str
    status: int | None
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    duration_ms: float = 0.0
    error: str | None = None
    duplicate: bool = False
    # The listener could not take it (its history cannot be written), so it never reached the
    # handler: not an acknowledgement. The relay keeps the delivery instead of forgetting it.
    refused: bool = False


@dataclass
class Ping:
    sent_at: float


@dataclass
class Pong:
    sent_at: float
    # From the relay: the channel's queue depth now, so a paused listener can say how many
    # deliveries wait for it (None from older relays, and from listeners).
    queued: int | None = None


@dataclass
class Flow:
    """Listener → relay: pause or resume live pushes; paused deliveries wait in the queue."""

    paused: bool


@dataclass
class Error:
    """Either way: why the sender is about to close the connection."""

    code: str
    reason: str


@dataclass
class Batch:
    """Either way, protocol 2: the Deliveries (relay → listener) or Results (listener → relay)
    that one event-loop tick produced, in one websocket message.

    Under load that is one message, one write and one wake-up of the peer for a handful of
    deliveries instead of one each. On the wire: metadata {"sizes": [...]}, then the encoded
    frames back to back."""

    frames: list[Delivery | Result]


Frame = Hello | Welcome | Delivery | Result | Ping | Pong | Flow | Error | Batch

_KIND: dict[type, int] = {
    Hello: 1,
    Welcome: 2,
    Delivery: 3,
    Result: 4,
    Ping: 5,
    Pong: 6,
    Flow: 7,
    Error: 8,
    Batch: 9,
}
_BY_KIND = {code: cls for cls, code in _KIND.items()}


def encode_batch(encoded: list[bytes]) -> bytes:
    """A Batch of frames already encoded, as the I/O layers have them: no second encoding."""
    if not 2 <= len(encoded) <= MAX_BATCH:
        raise ValueError(f"a Batch holds 2 to {MAX_BATCH} frames, not {len(encoded)}")
    raw = orjson.dumps({"sizes": [len(part) for part in encoded]})
    return b"".join((_PREFIX.pack(_KIND[Batch], len(raw)), raw, *encoded))


def encode(frame: Frame) -> bytes:
    """Serialize a frame; the body (if any) is appended as-is after the JSON metadata."""
    if isinstance(frame, Batch):
        return encode_batch([encode(inner) for inner in frame.frames])
    meta: dict[str, Any] = dict(frame.__dict__)
    body = meta.pop("body", b"")
    try:
        raw = orjson.dumps(meta)  # header pairs (tuples) become JSON arrays
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a path
        raise ProtocolError(f"cannot encode {type(frame).__name__} frame metadata: {exc}") from None
    return b"".join((_PREFIX.pack(_KIND[type(frame)], len(raw)), raw, body))


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Parse one frame, or raise ProtocolError saying precisely what is wrong with it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("text messages are not part of the protocol; frames are binary")
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1 or not view.c_contiguous:
        view = memoryview(view.tobytes())  # a caller's typed or strided view: its bytes
    if len(view) < _PREFIX.size:
        raise ProtocolError(f"frame of {len(view)} bytes is shorter than its 5-byte prefix")
    kind, meta_len = _PREFIX.unpack_from(view)
    cls = _BY_KIND.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown frame kind {kind}")
    if meta_len > MAX_META or _PREFIX.size + meta_len > len(view):
        raise ProtocolError(
            f"{cls.__name__} frame claims {meta_len} bytes of metadata but has "
            f"{len(view) - _PREFIX.size}"
        )
    try:
        meta = orjson.loads(view[_PREFIX.size : _PREFIX.size + meta_len])
    except orjson.JSONDecodeError as exc:  # also invalid UTF-8, NaN, out-of-range integers
        raise ProtocolError(f"{cls.__name__} frame metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ProtocolError(f"{cls.__name__} frame metadata must be a JSON object")
    if cls is Batch:
        return _batch(meta, view[_PREFIX.size + meta_len :])
    body = bytes(view[_PREFIX.size + meta_len :])
    return _build(cls, meta, body)


def _batch(meta: dict[str, Any], payload: memoryview) -> Batch:
    sizes = meta.get("sizes")
    if type(sizes) is list and not 2 <= len(sizes) <= MAX_BATCH:
        raise ProtocolError(f"a Batch holds 2 to {MAX_BATCH} frames, not {len(sizes)}")
    if type(sizes) is not list or not all(type(n) is int and n >= _PREFIX.size for n in sizes):
        raise ProtocolError("Batch.sizes must be a list of frame lengths (at least 5 bytes each)")
    if sum(sizes) != len(payload):
        raise ProtocolError(
            f"Batch.sizes add up to {sum(sizes)} bytes but the batch carries {len(payload)}"
        )
    frames: list[Delivery | Result] = []
    start = 0
    for size in sizes:
        part = payload[start : start + size]
        # The kind byte is checked before anything is decoded: a Batch inside a Batch is
        # refused here, so decoding never recurses and no nesting depth can exhaust the stack.
        inner_cls = _BY_KIND.get(part[0])
        if inner_cls is not Delivery and inner_cls is not Result:
            what = inner_cls.__name__ if inner_cls else f"frame kind {part[0]}"
            raise ProtocolError(f"a Batch carries Deliveries or Results, not {what}")
        inner = decode(part)
        assert isinstance(inner, (Delivery, Result))  # its kind byte said so
        frames.append(inner)
        start += size
    return Batch(frames)


_HAS_BODY = (Delivery, Result)
# What a JSON value of each annotated type may arrive as: a float field takes integers too
# (orjson reads `10` as an int), a list[...] or Headers field any array (checked further on).
_JSON_TYPES: dict[object, tuple[type, ...]] = {
    str: (str,),
    bool: (bool,),
    int: (int,),
    float: (int, float),
}


def _json_types(annotation: object) -> tuple[type, ...]:
    if annotation in _JSON_TYPES:
        return _JSON_TYPES[annotation]
    options = typing.get_args(annotation)
    if typing.get_origin(annotation) is list:
        return (list,)
    if options and type(None) in options:  # `X | None`
        (inner,) = (option for option in options if option is not type(None))
        return (*_json_types(inner), type(None))
    raise TypeError(f"no JSON form for a frame field of type {annotation!r}")


def _wire_fields(cls: type) -> tuple[dict[str, tuple[type, ...]], set[str]]:
    """A frame's metadata fields with the JSON types each takes, and the ones it must carry,
    read from its dataclass: a field without a default, or marked `required` (a Hello's
    `versions` has a default for building one, but a peer must say which it speaks)."""
    hints = typing.get_type_hints(cls)
    types: dict[str, tuple[type, ...]] = {}
    required: set[str] = set()
    for f in dataclasses.fields(cls):
        if f.name == "body":
            continue  # the payload, not metadata
        types[f.name] = _json_types(hints[f.name])
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default or f.metadata.get("required"):
            required.add(f.name)
    return types, required


_WIRE = {cls: _wire_fields(cls) for cls in _KIND if cls is not Batch}
_FIELDS = {cls: types for cls, (types, _) in _WIRE.items()}
_REQUIRED = {cls: required for cls, (_, required) in _WIRE.items()}


def _versions(value: list[Any]) -> bool:
    return 0 < len(value) <= MAX_VERSIONS and all(type(v) is int for v in value)


def _seconds(limit: float, *, optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    demand = f"must be a number of seconds above 0 and at most {limit:g}"
    if optional:
        return (lambda v: v is None or 0 < v <= limit), demand + " (or null)"
    return (lambda v: 0 < v <= limit), demand


# Values the type alone does not make safe for the peer to use: each rule is a test and what
# it demands. NaN, Infinity and numbers beyond a double never get this far (orjson refuses
# them), and integers past 64 bits arrive as floats, so a wrong type.
_RULES: dict[type, dict[str, tuple[Callable[[Any], bool], str]]] = {
    Hello: {
        "versions": (_versions, f"must be a list of 1 to {MAX_VERSIONS} integers"),
        "timeout": _seconds(MAX_TIMEOUT),
    },
    Welcome: {
        "heartbeat": _seconds(MAX_HEARTBEAT),
        "timeout": _seconds(MAX_TIMEOUT, optional=True),
    },
    Delivery: {
        "received_at": (
            lambda v: 0 <= v <= MAX_UNIX_TIME,
            "must be a unix time between 1970 and 9999",
        ),
        "answer_by": (
            lambda v: v is None or 0 <= v <= MAX_UNIX_TIME,
            "must be null or a unix time between 1970 and 9999",
        ),
    },
    Result: {"status": (lambda v: v is None or 100 <= v <= 599, "must be null or 100 to 599")},
    Pong: {"queued": (lambda v: v is None or v >= 0, "must be null or a count")},
}


def _build(cls: type, meta: dict[str, Any], body: bytes) -> Frame:
    name = cls.__name__
    missing = _REQUIRED[cls] - meta.keys()
    if missing:
        raise ProtocolError(f"{name} frame is missing {', '.join(sorted(missing))}")
    fields = _FIELDS[cls]
    kwargs: dict[str, Any] = {}
    for key, value in meta.items():
        if key not in fields:
            continue  # newer peers may add fields; ignoring them keeps versions compatible
        # bool is an int in Python; a status of `true` is still wrong.
        if not isinstance(value, fields[key]) or (
            isinstance(value, bool) and bool not in fields[key]
        ):
            raise ProtocolError(f"{name}.{key} has the wrong type ({type(value).__name__})")
        kwargs[key] = value
    for key, (ok, demand) in _RULES.get(cls, {}).items():
        if key in kwargs and not ok(kwargs[key]):
            raise ProtocolError(f"{name}.{key} {demand}, not {_short(kwargs[key])}")
    if "headers" in kwargs:
        kwargs["headers"] = _headers(name, kwargs["headers"])
    if body and cls not in _HAS_BODY:
        raise ProtocolError(f"{name} frame carries {len(body)} unexpected payload bytes")
    if cls in _HAS_BODY:
        kwargs["body"] = body
    return cls(**kwargs)


_JSON_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _short(value: Any) -> str:
    """A refused value for a reason line: enough to recognise, never a megabyte of it (and
    never a walk through a 1,000-level nesting, which repr and orjson.dumps would choke on)."""
    if isinstance(value, list):
        kinds = sorted({_JSON_NAMES[type(item)] for item in value})
        return f"an array of {len(value)} ({', '.join(kinds)})" if value else "an empty array"
    text = repr(value)  # the rules only ever test lists and plain numbers
    return text if len(text) <= 60 else text[:57] + "..."


def _headers(name: str, raw: list[Any]) -> Headers:
    # Every delivery's header list passes here: exact type checks in a plain loop run in
    # a third of the time of isinstance and all() over a generator.
    out: Headers = []
    append = out.append
    for item in raw:
        if (
            type(item) is not list
            or len(item) != 2
            or type(item[0]) is not str
            or type(item[1]) is not str
        ):
            raise ProtocolError(f"{name}.headers must be a list of [name, value] string pairs")
        append((item[0], item[1]))
    return out
