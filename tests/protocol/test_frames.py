"""The pure protocol core: frames round-trip exactly, and every malformed frame is a
ProtocolError with a reason, never some other exception."""

from __future__ import annotations

import json
import struct

import pytest

from hooktap.protocol import (
    MAX_BATCH,
    Batch,
    Delivery,
    Error,
    Flow,
    Hello,
    ListenerSession,
    Liveness,
    Ping,
    ProtocolError,
    RelaySession,
    Result,
    Welcome,
    decode,
    encode,
    encode_batch,
)

BODY = bytes(range(256)) + b"\xff\xfe not utf-8"


@pytest.mark.parametrize(
    "frame",
    [
        Hello(versions=[1], client="hooktap/test", timeout=2.5, paused=True),
        Welcome(1, "chan", "http://127.0.0.1:1/c/chan", 5.0, queued=3),
        Delivery("d1", 1.5, "POST", "/a?b", "x=1", [("X-A", "1"), ("x-a", "2")], BODY),
        Result("d1", 201, [("Content-Type", "text/plain")], b"ok", 3.25, None, False),
        Result("d2", 502, [], b"", 0.0, "refused", True),
        Result("d3", 503, [], b"history is full", 0.0, "disk full", refused=True),
        Ping(1.0),
        Flow(True),
        Error("protocol-error", "because"),
        Batch(
            [Delivery("d1", 1.0, "POST", "/", "", [], BODY), Delivery("d2", 2.0, "GET", "", "", [])]
        ),
        Batch([Result("d1", 200, body=BODY), Result("d2", None, error="down", refused=True)]),
    ],
)
def test_frames_round_trip_exactly(frame) -> None:
    assert decode(encode(frame)) == frame


def test_body_travels_as_raw_bytes_not_base64_or_json() -> None:
    body = b"\x00" * 1000 + BODY
    data = encode(Delivery("d", 0.0, "POST", "", "", [], body))
    assert data.endswith(body)
    assert len(data) < len(body) + 200


def _frame(kind: int, meta: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">BI", kind, len(meta)) + meta + payload


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "shorter than its 5-byte prefix"),
        (b"\x03\x00", "shorter than its 5-byte prefix"),
        (_frame(99, b"{}"), "unknown frame kind 99"),
        (struct.pack(">BI", 3, 1000) + b"{}", "claims 1000 bytes of metadata"),
        (_frame(3, b"\xff\xfe"), "metadata is not JSON"),
        (_frame(3, b"[1,2]"), "must be a JSON object"),
        (_frame(3, b'{"id":"x"}'), "Delivery frame is missing"),
        (
            _frame(
                3,
                json.dumps(
                    {
                        "id": 1,
                        "received_at": 0,
                        "method": "GET",
                        "path": "",
                        "query": "",
                        "headers": [],
                    }
                ).encode(),
            ),
            "Delivery.id has the wrong type",
        ),
        (
            _frame(
                3,
                json.dumps(
                    {
                        "id": "x",
                        "received_at": 0,
                        "method": "GET",
                        "path": "",
                        "query": "",
                        "headers": [["only-name"]],
                    }
                ).encode(),
            ),
            "list of [name, value] string pairs",
        ),
        (_frame(4, b'{"id":"x","status":true}'), "Result.status has the wrong type"),
        (_frame(5, b'{"sent_at":1}', b"extra"), "unexpected payload bytes"),
    ],
)
def test_malformed_frames_are_protocol_errors_with_reasons(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode(data)
    assert words in exc.value.reason


@pytest.mark.parametrize(
    "headers",
    [["ab"], [["a", 1]], [["a", "b", "c"]], [("a", "b"), None], {"a": "b"}, "ab", [[None, "b"]]],
)
def test_every_malformed_header_list_is_refused(headers: object) -> None:
    """A pair must be a JSON array of two strings: a two-letter string unpacks into two
    strings in Python, and must not slip through as a header."""
    meta = {"id": "x", "received_at": 0, "method": "POST", "path": "", "query": ""}
    with pytest.raises(ProtocolError) as exc:
        decode(_frame(3, json.dumps({**meta, "headers": headers}).encode()))
    assert "Delivery.headers" in exc.value.reason


_PING = encode(Ping(1.0))
_RESULT = encode(Result("d", 200, body=b"ok"))
_NESTED = encode_batch([_RESULT] * 2)


def _batch(sizes: object, payload: bytes) -> bytes:
    return _frame(9, json.dumps({"sizes": sizes}).encode(), payload)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_batch([len(_RESULT)], _RESULT), "holds 2 to"),
        (_batch([len(_RESULT)] * (MAX_BATCH + 1), _RESULT * (MAX_BATCH + 1)), "holds 2 to"),
        (_batch([len(_RESULT), 99], _RESULT * 2), "add up to"),
        (_batch([len(_RESULT), 3], _RESULT + b"abc"), "at least 5 bytes each"),
        (_batch("12,12", _RESULT * 2), "must be a list of frame lengths"),
        (_batch([len(_RESULT), len(_PING)], _RESULT + _PING), "not Ping"),
        (
            _batch([len(_RESULT), len(_NESTED)], _RESULT + _NESTED),
            "not Batch",
        ),
        (_batch([len(_RESULT), 5], _RESULT + b"\x04\x00\x00\x00\x00"), "not JSON"),
    ],
)
def test_malformed_batches_are_protocol_errors(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode(data)
    assert words in exc.value.reason


def test_each_side_accepts_only_its_peers_batches() -> None:
    relay = RelaySession()
    relay.receive(ListenerSession().hello("t", 1.0))
    relay.receive(encode(Batch([Result("a", 200), Result("b", 200)])))
    with pytest.raises(ProtocolError, match="carries Result frames, not Delivery"):
        relay.receive(encode(Batch([Result("a", 200), Delivery("d", 0, "GET", "", "", [])])))
    listener = ListenerSession()
    listener.receive(encode(Welcome(2, "c", "u", 1.0)))
    with pytest.raises(ProtocolError, match="carries Delivery frames, not Result"):
        listener.receive(encode(Batch([Result("a", 200), Result("b", 200)])))
    old = ListenerSession()
    old.receive(encode(Welcome(1, "c", "u", 1.0)))
    with pytest.raises(ProtocolError, match="need protocol version 2"):
        old.receive(encode(Batch([Delivery("d", 0, "GET", "", "", [])] * 2)))


def test_text_is_not_a_frame() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        decode("hello")  # type: ignore[arg-type]


def test_relay_session_demands_hello_first_and_a_common_version() -> None:
    relay = RelaySession()
    with pytest.raises(ProtocolError, match="expected Hello first"):
        relay.receive(encode(Ping(1.0)))
    relay = RelaySession()
    with pytest.raises(ProtocolError) as exc:
        relay.receive(encode(Hello(versions=[7, 8])))
    assert exc.value.code == "version-mismatch" and "upgrade the older side" in exc.value.reason
    relay = RelaySession()
    relay.receive(encode(Hello()))
    with pytest.raises(ProtocolError, match="twice"):
        relay.receive(encode(Hello()))
    with pytest.raises(ProtocolError, match="never sends Welcome"):
        relay.receive(encode(Welcome(1, "c", "u", 1.0)))


def test_sessions_agree_on_the_newest_common_version() -> None:
    """Version 2 added Result.refused; a version-1 peer still gets a version it speaks."""
    relay = RelaySession()
    relay.receive(encode(Hello(versions=[1])))
    assert relay.version == 1 and not relay.batches
    relay = RelaySession()
    relay.receive(ListenerSession().hello("hooktap/test", 10.0))
    assert relay.version == 2 and relay.batches
    listener = ListenerSession()
    listener.receive(relay.welcome("c", "u", 5.0, 0))
    assert listener.welcome is not None and listener.welcome.version == 2


def test_listener_session_demands_welcome_first() -> None:
    listener = ListenerSession()
    with pytest.raises(ProtocolError, match="expected Welcome first"):
        listener.receive(encode(Delivery("d", 0, "GET", "", "", [])))
    listener = ListenerSession()
    assert isinstance(listener.receive(encode(Error("x", "refused"))), Error)
    listener = ListenerSession()
    with pytest.raises(ProtocolError, match="version 9"):
        listener.receive(encode(Welcome(9, "c", "u", 1.0)))
    listener = ListenerSession()
    listener.receive(encode(Welcome(1, "c", "u", 1.0)))
    with pytest.raises(ProtocolError, match="never sends Result"):
        listener.receive(encode(Result("d", 200)))


def test_liveness_declares_a_silent_peer_dead_after_three_heartbeats() -> None:
    clock = Liveness(interval=5.0, last_seen=100.0)
    assert not clock.dead(114.9)
    assert clock.dead(115.1)
    clock.seen(115.0)
    assert not clock.dead(129.0)
    assert clock.ping_due(200.0)
    clock.pinged(200.0)
    assert not clock.ping_due(204.0)


def _nested_batch(depth: int) -> bytes:
    """A Batch whose first frame is a Batch, `depth` levels down, built in one join: each level
    is its prefix and metadata, then the level below, then a Result."""
    innermost = encode_batch([_RESULT] * 2)
    heads: list[bytes] = []
    size = len(innermost)
    for _ in range(depth):
        meta = json.dumps({"sizes": [size, len(_RESULT)]}).encode()
        heads.append(struct.pack(">BI", 9, len(meta)) + meta)
        size += len(heads[-1]) + len(_RESULT)
    return b"".join([*reversed(heads), innermost, _RESULT * depth])


@pytest.mark.parametrize("depth", [600, 5000])
def test_a_deeply_nested_batch_is_refused_without_recursing(depth: int) -> None:
    """It used to be decoded level by level until a RecursionError killed the listener, and
    the relay logged a 200 KB traceback; the first inner frame's kind byte now refuses it."""
    data = _nested_batch(depth)
    assert len(data) > depth * 20  # really that deep: each level is a prefix and its sizes
    relay = RelaySession()
    relay.receive(ListenerSession().hello("t", 10.0))
    listener = ListenerSession()
    listener.receive(relay.welcome("c", "u", 5.0, 0))
    for receive in (decode, relay.receive, listener.receive):
        with pytest.raises(ProtocolError, match="not Batch"):
            receive(data)


def _meta(kind: int, meta: dict[str, object]) -> bytes:
    return _frame(kind, json.dumps(meta).encode())


_WELCOME = {"version": 2, "channel": "c", "webhook_url": "u", "heartbeat": 5}
_DELIVERY = {"id": "d", "received_at": 0, "method": "POST", "path": "", "query": "", "headers": []}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_meta(1, {"versions": [[1], [2]]}), "Hello.versions must be a list of 1 to 16 integers"),
        (_meta(1, {"versions": [{"a": 1}]}), "Hello.versions must be"),
        (_meta(1, {"versions": [True]}), "Hello.versions must be"),
        (_meta(1, {"versions": [1.0, 2]}), "Hello.versions must be"),
        (_meta(1, {"versions": []}), "Hello.versions must be"),
        (_meta(1, {"versions": list(range(17))}), "Hello.versions must be"),
        (_meta(1, {"versions": [2], "timeout": 0}), "Hello.timeout must be a number of seconds"),
        (_meta(1, {"versions": [2], "timeout": -1.5}), "Hello.timeout must be"),
        (_meta(1, {"versions": [2], "timeout": 1e308}), "Hello.timeout must be"),
        (_meta(2, {**_WELCOME, "heartbeat": 0}), "Welcome.heartbeat must be"),
        (_meta(2, {**_WELCOME, "heartbeat": 3601}), "Welcome.heartbeat must be"),
        (_meta(2, {**_WELCOME, "version": 2.0}), "Welcome.version has the wrong type"),
        (_meta(2, {**_WELCOME, "version": True}), "Welcome.version has the wrong type"),
        # Past 64 bits orjson parses an integer as a float: a wrong type, not an overflow.
        (_meta(2, {**_WELCOME, "version": 2**64}), "Welcome.version has the wrong type"),
        (_meta(4, {"id": "r", "status": 99}), "Result.status must be null or 100 to 599"),
        (_meta(4, {"id": "r", "status": 600}), "Result.status must be"),
        (_meta(4, {"id": "r", "status": 10**19}), "Result.status"),
        (
            _frame(3, json.dumps(_DELIVERY).encode().replace(b": 0,", b": 1e400,")),
            "number is infinity",
        ),
        (_meta(3, {**_DELIVERY, "received_at": 1e308}), "Delivery.received_at must be a unix"),
        (_meta(3, {**_DELIVERY, "received_at": -1}), "Delivery.received_at must be a unix"),
        (_frame(5, b'{"sent_at": 1' + b"0" * 400 + b"}"), "not JSON"),
    ],
)
def test_values_a_peer_could_not_use_are_protocol_errors(data: bytes, words: str) -> None:
    """All but the two orjson refuses itself used to decode, and then broke the peer that used
    them: a TypeError on `set(versions)`, a heartbeat of 0 pinging in a busy loop, a 1e308 s
    timeout that is inf as soon as it is scaled to milliseconds, a received_at of 1e308 an
    OverflowError in the listener's log line, a status no HTTP response can have."""
    with pytest.raises(ProtocolError) as exc:
        decode(data)
    assert words in exc.value.reason
    assert len(exc.value.reason) < 200


def test_a_typed_or_two_dimensional_memoryview_is_read_as_its_bytes() -> None:
    data = encode(Delivery("d", 1.0, "POST", "/", "", [("A", "b")], b"body"))
    data += b"\0" * (-len(data) % 4)  # a body may end in anything; pad to whole 4-byte words
    frame = decode(data)
    assert decode(memoryview(data).cast("I")) == frame
    assert decode(memoryview(data).cast("B", shape=[2, len(data) // 2])) == frame
    strided = bytes(byte for pair in zip(data, b"x" * len(data), strict=True) for byte in pair)
    assert decode(memoryview(strided)[::2]) == frame
