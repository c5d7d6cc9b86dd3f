"""Property tests: whatever bytes a peer sends, the other side gets a Frame or a ProtocolError
(never a RecursionError, TypeError or OverflowError that kills its loop), and every valid
frame survives encode and decode exactly.

Random bytes alone rarely get past the 5-byte prefix, so the structured properties build a
valid prefix and fill the metadata with random JSON, half the time under the frame's real field
names, so each field check meets wrong types, nesting, huge numbers and empty values.
"""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hooktap.protocol import (
    MAX_HEARTBEAT,
    MAX_TIMEOUT,
    MAX_UNIX_TIME,
    Batch,
    Delivery,
    Error,
    Flow,
    Hello,
    ListenerSession,
    Ping,
    Pong,
    ProtocolError,
    RelaySession,
    Result,
    Welcome,
    decode,
    encode,
)
from hooktap.protocol.frames import _FIELDS, _KIND

PROFILE = settings.get_profile("hooktap-protocol")  # tests/protocol/conftest.py: no database
FRAMES = (Hello, Welcome, Delivery, Result, Ping, Pong, Flow, Error, Batch)
# A reason is one line for a log and an Error frame, not a dump of what the peer sent.
MAX_REASON = 500


def _frame_or_refusal(receive: Any, data: Any) -> None:
    try:
        frame = receive(data)
    except ProtocolError as exc:
        assert isinstance(exc.reason, str) and 0 < len(exc.reason) <= MAX_REASON, exc.reason
        return
    assert isinstance(frame, FRAMES)
    assert decode(encode(frame)) == frame  # what was accepted can be sent on unchanged


def _raw(kind: int, meta: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">BI", kind, len(meta)) + meta + payload


# -- any bytes ---------------------------------------------------------------------------------

KINDS = st.integers(0, 10)
noise = st.binary(max_size=80)
prefixed_noise = st.builds(
    lambda kind, length, rest: struct.pack(">BI", kind, length) + rest,
    KINDS,
    st.one_of(st.integers(0, 80), st.integers(0, 2**32 - 1)),
    noise,
)
any_bytes = st.one_of(noise, prefixed_noise)


@settings(PROFILE, max_examples=300)
@given(any_bytes)
def test_any_bytes_decode_to_a_frame_or_a_protocol_error(data: bytes) -> None:
    _frame_or_refusal(decode, data)


# -- structured: a valid prefix and random JSON metadata ----------------------------------------

# JSON as a peer could write it, including what orjson turns into floats (integers past 64
# bits), refuses (past a double's range, lone surrogates) or takes as bool where a number goes.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**63, 2**64, 10**30, 1e308, -1e308, 5e-324, 0.0, -0.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
ALL_FIELDS = sorted({name for fields in _FIELDS.values() for name in fields} | {"sizes"})
keys = st.one_of(st.sampled_from(ALL_FIELDS), st.text(max_size=6))
json_objects = st.dictionaries(keys, json_values, max_size=3)
# What an array field is filled with: arrays and objects as often as anything else.
arrayed = st.one_of(json_values, st.lists(scalars, max_size=3), st.dictionaries(keys, scalars))


def _dump(meta: Any) -> bytes:
    # The standard library writes huge integers and lone surrogates that orjson would not.
    return json.dumps(meta).encode()


CLASS_OF = {code: cls for cls, code in _KIND.items()}


@st.composite
def fuzzed_frames(draw: st.DrawFn, kind: int | None = None, nest: int = 1) -> bytes:
    """One frame of a real kind: a valid frame's metadata with a field or two replaced by
    random JSON or dropped, and unknown fields added; or, for a Batch, random frames (Batches
    too, `nest` levels down) under true or random sizes."""
    cls = CLASS_OF[draw(st.sampled_from(sorted(CLASS_OF)))] if kind is None else CLASS_OF[kind]
    if cls is Batch:
        inner = [fuzzed_frames(3, nest), fuzzed_frames(4, nest), valid]
        if nest:
            inner.append(fuzzed_frames(9, nest - 1))
        parts = draw(st.lists(st.one_of(inner), max_size=4))
        sizes: Any = draw(json_values) if draw(st.booleans()) else [len(p) for p in parts]
        return _raw(9, _dump({"sizes": sizes}), b"".join(parts))
    meta = _meta_of(draw(frames_of[cls]))
    # One or two fields at a time: a frame with every field broken is refused at the first,
    # and the checks behind it would never be reached.
    fields = sorted(_FIELDS[cls])
    for key in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True)):
        change = draw(st.sampled_from(["replace", "array", "drop"]))
        if change == "replace":
            meta[key] = draw(json_values)
        elif change == "array":  # several fields are arrays: of the wrong things, reach furthest
            meta[key] = draw(st.lists(arrayed, min_size=1, max_size=4))
        else:
            meta.pop(key, None)
    extra = draw(json_objects)  # fields this frame does not have: ignored, or they would clash
    meta.update({k: v for k, v in extra.items() if k not in _FIELDS[cls]})
    return _raw(_KIND[cls], _dump(meta), draw(st.one_of(st.just(b""), st.binary(max_size=16))))


@st.composite
def deep_batches(draw: st.DrawFn) -> bytes:
    """A Batch whose first frame is a Batch, up to thousands of levels down: far deeper
    than the few levels fuzzed_frames reaches, as deep as a hostile peer would go."""
    scale = 2 ** draw(st.integers(0, 12))  # as likely a few levels as hundreds or thousands
    depth = scale + draw(st.integers(0, scale))
    level = draw(st.one_of(valid, fuzzed_frames(9)))
    tail = draw(st.one_of(valid, fuzzed_frames(4)))
    heads: list[bytes] = []
    size = len(level)
    for _ in range(depth):
        heads.append(_raw(9, _dump({"sizes": [size, len(tail)]})))
        size += len(heads[-1]) + len(tail)
    return b"".join([*reversed(heads), level, tail * depth])


def _meta_of(frame: Any) -> dict[str, Any]:
    data = encode(frame)
    (length,) = struct.unpack_from(">I", data, 1)
    return json.loads(data[5 : 5 + length])


@settings(PROFILE, max_examples=200)
@given(st.data())
def test_random_metadata_for_every_frame_kind_is_a_frame_or_a_protocol_error(
    data: st.DataObject,
) -> None:
    kind = data.draw(st.sampled_from(sorted(_KIND.values())))
    _frame_or_refusal(decode, data.draw(fuzzed_frames(kind)))


@settings(PROFILE, max_examples=40)
@given(deep_batches())
def test_batches_nested_any_depth_are_protocol_errors(data: bytes) -> None:
    _frame_or_refusal(decode, data)


# -- valid frames: encode then decode is the identity --------------------------------------------

# orjson encodes no lone surrogates, so text is any Unicode but those; header values are what
# the relay makes of raw header bytes: latin-1 text.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
latin1 = st.text(st.characters(max_codepoint=255), max_size=24)
json_ints = st.integers(-(2**63), 2**64 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(json_ints, finite)


def _seconds(limit: float) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(min_value=0.0, max_value=limit, exclude_min=True),
        st.integers(1, int(limit)),
    )


headers = st.lists(st.tuples(latin1, latin1), max_size=6)
bodies = st.one_of(st.binary(max_size=64), st.just(bytes(range(256)) * 4))
deliveries = st.builds(
    Delivery,
    id=text,
    received_at=st.one_of(
        st.floats(min_value=0.0, max_value=MAX_UNIX_TIME), st.integers(0, int(MAX_UNIX_TIME))
    ),
    method=text,
    path=text,
    query=text,
    headers=headers,
    body=bodies,
    remote=text,
    scheme=text,
    host=text,
    handed_before=st.booleans(),
)
results = st.builds(
    Result,
    id=text,
    status=st.one_of(st.none(), st.integers(100, 599)),
    headers=headers,
    body=bodies,
    duration_ms=numbers,
    error=st.one_of(st.none(), text),
    duplicate=st.booleans(),
    refused=st.booleans(),
)
frames_of: dict[type, st.SearchStrategy[Any]] = {
    Hello: st.builds(
        Hello,
        versions=st.lists(json_ints, min_size=1, max_size=16),
        client=text,
        timeout=_seconds(MAX_TIMEOUT),
        paused=st.booleans(),
        instance=text,
        history=text,
        takeover=st.booleans(),
    ),
    Welcome: st.builds(
        Welcome,
        version=json_ints,
        channel=text,
        webhook_url=text,
        heartbeat=_seconds(MAX_HEARTBEAT),
        queued=json_ints,
        timeout=st.one_of(st.none(), _seconds(MAX_TIMEOUT)),
    ),
    Delivery: deliveries,
    Result: results,
    Ping: st.builds(Ping, numbers),
    Pong: st.builds(Pong, numbers),
    Flow: st.builds(Flow, st.booleans()),
    Error: st.builds(Error, text, text),
    Batch: st.one_of(
        st.builds(Batch, st.lists(deliveries, min_size=2, max_size=6)),
        st.builds(Batch, st.lists(results, min_size=2, max_size=6)),
    ),
}
any_frame = st.one_of(*frames_of.values())
valid = any_frame.map(encode)


@settings(PROFILE, max_examples=300)
@given(any_frame)
def test_encode_then_decode_is_the_identity_for_every_frame_kind(frame: Any) -> None:
    assert decode(encode(frame)) == frame


# -- sessions: any sequence of messages, before and after a valid handshake ---------------------

# Each session first meets a fuzzed handshake frame (as a `messages` branch, one_of would
# flatten it among the others and make it rare), then, with a real handshake or without, any
# messages at all.
messages = st.one_of(any_bytes, fuzzed_frames(), valid, st.text(max_size=8), deep_batches())
sequences = st.lists(messages, min_size=1, max_size=8)


@settings(PROFILE, max_examples=80)
@given(fuzzed_frames(1), sequences, st.booleans())
def test_relay_session_answers_any_messages_with_frames_or_protocol_errors(
    hello: bytes, sequence: list[Any], shake: bool
) -> None:
    relay = RelaySession()
    _frame_or_refusal(relay.receive, hello)
    if shake and relay.hello is None:
        relay.receive(ListenerSession().hello("fuzz", 10.0))
    for message in sequence:
        _frame_or_refusal(relay.receive, message)


@settings(PROFILE, max_examples=80)
@given(fuzzed_frames(2), sequences, st.sampled_from([None, 1, 2]))
def test_listener_session_answers_any_messages_with_frames_or_protocol_errors(
    welcome: bytes, sequence: list[Any], version: int | None
) -> None:
    listener = ListenerSession()
    _frame_or_refusal(listener.receive, welcome)
    if version is not None and listener.welcome is None:
        listener.receive(encode(Welcome(version, "c", "http://relay/c/c", 5.0)))
    for message in sequence:
        _frame_or_refusal(listener.receive, message)


# -- sessions: what the peer may send always passes ---------------------------------------------

# The properties above would also hold for a session that refused everything; these hold the
# sessions to the other half of their job: after a real handshake, every frame the peer may send
# comes back as itself, whatever its field values.
from_listener = st.one_of(
    results,
    *(frames_of[cls] for cls in (Ping, Pong, Flow, Error)),
    st.builds(Batch, st.lists(results, min_size=2, max_size=6)),
)
from_relay = st.one_of(
    deliveries,
    *(frames_of[cls] for cls in (Ping, Pong, Error)),
    st.builds(Batch, st.lists(deliveries, min_size=2, max_size=6)),
)


@settings(PROFILE, max_examples=80)
@given(frames_of[Hello], st.lists(from_listener, min_size=1, max_size=8))
def test_relay_session_passes_every_frame_a_listener_may_send(
    hello: Hello, sequence: list[Any]
) -> None:
    relay = RelaySession()
    hello = replace(hello, versions=[*hello.versions[:15], 2])  # any offer with what it speaks
    assert relay.receive(encode(hello)) == hello
    for frame in sequence:
        assert relay.receive(encode(frame)) == frame


@settings(PROFILE, max_examples=80)
@given(frames_of[Error], frames_of[Welcome], st.lists(from_relay, min_size=1, max_size=8))
def test_listener_session_passes_every_frame_a_relay_may_send(
    early: Error, welcome: Welcome, sequence: list[Any]
) -> None:
    listener = ListenerSession()
    assert listener.receive(encode(early)) == early  # a refusal may come before any Welcome
    welcome = replace(welcome, version=2)  # the version with Batch frames
    assert listener.receive(encode(welcome)) == welcome
    for frame in sequence:
        assert listener.receive(encode(frame)) == frame
