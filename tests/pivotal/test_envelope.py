"""Envelope parsing: labels when the body is an event, None (never an exception) otherwise."""

from __future__ import annotations

import json

import pytest

from hooktap.pivotal.envelope import Envelope, parse_envelope


def test_parses_a_pivotal_event() -> None:
    body = json.dumps(
        {
            "id": "evt_1",
            "type": "customer.at_risk",
            "created_at": "2024-05-01T10:00:00Z",
            "data": {"id": "cus_1"},
        }
    ).encode()
    assert parse_envelope(body) == Envelope("evt_1", "customer.at_risk", "2024-05-01T10:00:00Z")


def test_missing_or_odd_id_and_created_at_become_none() -> None:
    assert parse_envelope(b'{"type": "webhook.ping"}') == Envelope(None, "webhook.ping", None)
    assert parse_envelope(b'{"type": "x", "id": 7, "created_at": 1}') == Envelope(None, "x", None)


def test_utf8_text_in_values() -> None:
    body = '{"type": "contact.created", "id": "évt"}'.encode()
    assert parse_envelope(body) == Envelope("évt", "contact.created", None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"\x80",
        b"[]",
        b'"customer.created"',
        b"null",
        b'{"type": 5}',
        b'{"id": "evt_1"}',
        b'{"type": "x"',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"type": "x", "n": ' + b"9" * 5000 + b"}",
        b'{"type": "x", "n": NaN, ',
    ],
)
def test_never_raises_and_says_none(body: bytes) -> None:
    assert parse_envelope(body) is None


def test_large_bodies_are_labelled_from_their_start() -> None:
    import json as _json

    from hooktap.pivotal.envelope import PREFIX_SCAN_OVER, parse_envelope

    doc = {
        "id": "evt_big",
        "type": "customer.updated",
        "created_at": "2026-01-01T00:00:00Z",
        "data": {"blob": "é" * PREFIX_SCAN_OVER},
    }
    env = parse_envelope(_json.dumps(doc, ensure_ascii=False).encode())
    assert env is not None and (env.id, env.type) == ("evt_big", "customer.updated")
    # Labels after a big data object: the prefix cannot tell, the full parse still finds them.
    late = {"data": {"blob": "x" * PREFIX_SCAN_OVER}, "type": "task.completed", "id": "evt_late"}
    env = parse_envelope(_json.dumps(late).encode())
    assert env is not None and env.type == "task.completed"
    # Big but not an envelope, and big but not UTF-8.
    assert parse_envelope(b"[" + b"1," * PREFIX_SCAN_OVER + b"1]") is None
    assert parse_envelope(b'{"type": "x", "junk": "\xff' + b"a" * PREFIX_SCAN_OVER) is None
