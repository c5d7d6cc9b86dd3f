"""The sessions' handshake: hostile Hellos and Welcomes are refusals, not crashes, and the
optional fields of later releases travel both ways while older peers still interoperate."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import pytest

from hooktap.protocol import (
    Batch,
    Delivery,
    Hello,
    ListenerSession,
    ProtocolError,
    RelaySession,
    Welcome,
    decode,
    encode,
)


def _raw(kind: int, meta: dict[str, object]) -> bytes:
    data = json.dumps(meta).encode()
    return struct.pack(">BI", kind, len(data)) + data


def _reason(receive: Callable[[bytes], object], data: bytes) -> str:
    """Why `receive` refused `data`; a refusal is a ProtocolError and nothing else."""
    with pytest.raises(ProtocolError) as exc:
        receive(data)
    return exc.value.reason


@pytest.mark.parametrize(
    "versions",
    [[[1], [2]], [{"a": 1}], [True], [True, False], [], "12", None],
)
def test_a_hello_with_unusable_versions_is_refused_not_a_crash(versions: object) -> None:
    """`[[1], [2]]` used to raise TypeError in `set(frame.versions)`, and `[true]` was taken
    for version 1 (True == 1) and agreed on as the version `True`."""
    relay = RelaySession()
    assert "Hello.versions" in _reason(relay.receive, _raw(1, {"versions": versions}))
    assert relay.hello is None and relay.version is None


@pytest.mark.parametrize("timeout", [0, -1, -0.5, 1e308, 86_401])
def test_a_hello_with_an_unusable_timeout_is_refused(timeout: float) -> None:
    data = _raw(1, {"versions": [2], "timeout": timeout})
    assert "Hello.timeout must be a number of seconds" in _reason(RelaySession().receive, data)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"heartbeat": 0}, "Welcome.heartbeat must be"),
        ({"heartbeat": -5}, "Welcome.heartbeat must be"),
        ({"heartbeat": 1e308}, "Welcome.heartbeat must be"),
        ({"version": "2"}, "Welcome.version has the wrong type"),
        ({"timeout": 0}, "Welcome.timeout must be"),
        ({"timeout": 1e308}, "Welcome.timeout must be"),
        ({"timeout": "10"}, "Welcome.timeout has the wrong type"),
        ({"timeout": True}, "Welcome.timeout has the wrong type"),
    ],
)
def test_a_welcome_the_listener_could_not_live_with_is_refused(
    change: dict[str, object], words: str
) -> None:
    listener = ListenerSession()
    welcome = {"version": 2, "channel": "c", "webhook_url": "u", "heartbeat": 5.0, **change}
    assert words in _reason(listener.receive, _raw(2, welcome))
    assert listener.welcome is None


def test_the_new_handshake_fields_travel_both_ways() -> None:
    listener = ListenerSession()
    relay = RelaySession()
    hello = relay.receive(
        listener.hello("hooktap/t", 30.0, True, instance="run-1", history="hist-1", takeover=True)
    )
    assert hello == Hello([1, 2], "hooktap/t", 30.0, True, "run-1", "hist-1", True)
    welcome = listener.receive(relay.welcome("c", "http://r/c/c", 5.0, 3, timeout=10.0))
    assert welcome == Welcome(2, "c", "http://r/c/c", 5.0, 3, 10.0)
    assert listener.welcome is welcome


def test_the_old_call_signatures_and_defaults_still_work() -> None:
    """The relay and listener call these positionally; new arguments are keyword-only."""
    relay = RelaySession()
    hello = relay.receive(ListenerSession().hello("hooktap/t", 10.0))
    assert isinstance(hello, Hello)
    assert (hello.instance, hello.history, hello.takeover) == ("", "", False)
    welcome = decode(relay.welcome("c", "u", 5.0, 0))
    assert isinstance(welcome, Welcome) and welcome.timeout is None
    assert decode(relay.welcome("c", "u", 5.0)) == welcome
    assert Delivery("d", 0.0, "GET", "/", "", []).handed_before is False


def test_frames_from_an_older_peer_take_the_defaults_of_the_new_fields() -> None:
    """An older listener sends no instance, history or takeover; an older relay no timeout
    and no handed_before. Their frames decode with the defaults that mean just that."""
    hello = decode(_raw(1, {"versions": [1, 2], "client": "old", "timeout": 10, "paused": False}))
    assert hello == Hello([1, 2], "old", 10, False, "", "", False)
    welcome = decode(_raw(2, {"version": 2, "channel": "c", "webhook_url": "u", "heartbeat": 5}))
    assert welcome == Welcome(2, "c", "u", 5, 0, None)
    meta = {"id": "d", "received_at": 1.0, "method": "GET", "path": "", "query": "", "headers": []}
    delivery = decode(_raw(3, meta))
    assert isinstance(delivery, Delivery) and delivery.handed_before is False


def test_fields_a_newer_peer_adds_are_still_ignored() -> None:
    meta = {"versions": [2], "instance": "i", "future": {"nested": [1, 2]}, "takeover": False}
    assert decode(_raw(1, meta)) == Hello([2], instance="i")


def test_handed_before_survives_a_batch_and_reaches_the_listener() -> None:
    listener = ListenerSession()
    listener.receive(encode(Welcome(2, "c", "u", 5.0, timeout=10.0)))
    sent = Batch([Delivery("a", 1.0, "POST", "/", "", [], b"1", handed_before=True)] * 2)
    assert listener.receive(encode(sent)) == sent


@pytest.mark.parametrize(
    ("kind", "meta", "words"),
    [
        (1, {"versions": [2], "instance": 7}, "Hello.instance has the wrong type"),
        (1, {"versions": [2], "history": None}, "Hello.history has the wrong type"),
        (1, {"versions": [2], "takeover": 1}, "Hello.takeover has the wrong type"),
        (1, {"versions": [2], "takeover": "yes"}, "Hello.takeover has the wrong type"),
        (
            3,
            {
                "id": "d",
                "received_at": 0,
                "method": "GET",
                "path": "",
                "query": "",
                "headers": [],
                "handed_before": 0,
            },
            "Delivery.handed_before has the wrong type",
        ),
    ],
)
def test_the_new_fields_have_exact_types(kind: int, meta: dict[str, object], words: str) -> None:
    assert words in _reason(decode, _raw(kind, meta))
