"""The sessions own both directions: a Ping is answered from inside the session, the
heartbeat is one `beat(now)` call, and a session encodes only frames its side may send.
Clocks are injected, so these run in microseconds and cannot flake."""

from __future__ import annotations

import pytest

from hooktap.protocol import (
    Batch,
    Delivery,
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


def _connected(heartbeat: float = 5.0, now: float = 100.0) -> tuple[RelaySession, ListenerSession]:
    """Both sides after the handshake, at monotonic time `now`."""
    relay = RelaySession(heartbeat, now, queued=lambda: 7)
    listener = ListenerSession()
    relay.receive(listener.hello("test", 10.0), now)
    listener.receive(relay.welcome("ch", "http://r/c/ch", heartbeat), now)
    return relay, listener


def test_a_ping_is_answered_by_the_session_with_the_relays_queue_depth() -> None:
    relay, listener = _connected()
    relay.receive(encode(Ping(123.5)), 101.0)
    (reply,) = relay.data_to_send()
    assert decode(reply) == Pong(123.5, queued=7)
    assert relay.data_to_send() == []  # taken once

    listener.receive(encode(Ping(9.0)), 101.0)
    assert [decode(b) for b in listener.data_to_send()] == [Pong(9.0)]


def test_beat_pings_once_per_interval_and_gives_up_on_a_silent_peer() -> None:
    relay, _ = _connected(heartbeat=5.0, now=100.0)
    first = relay.beat(100.0)
    assert first is not None and decode(first) == Ping(100.0)
    assert relay.beat(102.0) is None  # not due yet
    assert relay.beat(105.0) is not None
    assert relay.beat(114.9) is not None  # silent for 14.9 s: three heartbeats are 15
    with pytest.raises(ProtocolError) as exc:
        relay.beat(115.1)
    assert exc.value.code == "heartbeat-timeout"


def test_any_frame_with_a_time_is_a_sign_of_life() -> None:
    relay, _ = _connected(heartbeat=1.0, now=0.0)
    for t in (2.0, 4.0, 6.0):
        relay.receive(encode(Pong(t)), t)
        relay.beat(t + 2.5)  # would be dead at 3 s of silence without the Pong
    with pytest.raises(ProtocolError):
        relay.beat(9.5)


def test_the_listeners_clock_starts_with_the_welcome_and_takes_its_interval() -> None:
    listener = ListenerSession()
    assert listener.beat(0.0) is None  # no heartbeat agreed yet: nothing to send or judge
    listener.receive(encode(Welcome(2, "ch", "u", 0.5)), 10.0)
    assert listener.liveness is not None and listener.liveness.interval == 0.5
    assert listener.beat(10.0) is not None
    with pytest.raises(ProtocolError):
        listener.beat(11.6)


@pytest.mark.parametrize(
    ("session", "frame"),
    [
        (RelaySession(), Hello()),
        (RelaySession(), Result("d", 200)),
        (RelaySession(), Flow(True)),
        (ListenerSession(), Welcome(2, "c", "u", 5.0)),
        (ListenerSession(), Delivery("d", 1.0, "POST", "/", "", [])),
    ],
)
def test_a_session_encodes_only_what_its_side_sends(session: object, frame: object) -> None:
    with pytest.raises(TypeError):
        session.send(frame)  # type: ignore[attr-defined]


def test_batches_are_sent_only_once_version_2_is_agreed() -> None:
    relay, listener = _connected()
    results = Batch([Result("a", 200), Result("b", 204)])
    assert decode(listener.send(results)) == results
    fresh = ListenerSession()
    with pytest.raises(TypeError):
        fresh.send(results)  # before the Welcome no version is agreed
    deliveries = Batch(
        [Delivery("a", 1.0, "POST", "/", "", []), Delivery("b", 1.0, "POST", "/", "", [])]
    )
    assert decode(relay.send(deliveries)) == deliveries
