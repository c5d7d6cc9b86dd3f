"""The shapes rows take on their way out of SQLite, and the headers' JSON text in between."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from hooktap.records import Attempt, Headers


@dataclass(frozen=True)
class Added:
    """What `Store.write_batch` found for one new delivery."""

    new: bool  # False: this id was stored already (a re-sent delivery)
    svix_seen: bool  # another stored delivery carries the same svix-id (a retry)


@dataclass(frozen=True)
class Summary:
    """One listing row: a delivery without its body or headers, plus its original forward."""

    seq: int
    id: str
    received_at: float
    method: str
    path: str
    query: str
    channel: str
    target: str
    signature: str
    signature_reason: str
    svix_id: str | None
    event_id: str | None
    event_type: str | None
    event_created_at: str | None
    state: str
    body_size: int
    status: int | None  # of the original forward; None: no response (or not forwarded yet)
    duration_ms: float | None
    error: str | None
    attempts: int  # forward + replays
    duplicate: bool  # this svix-id arrived before: a Pivotal retry or replay of the same message
    note: str = ""  # of the original forward, e.g. "held 7 min at the relay; re-signed"

    @property
    def cursor(self) -> tuple[float, int]:
        """Pass as `before=` to get the page after this row (keyset pagination)."""
        return (self.received_at, self.seq)


def dump_headers(headers: Headers) -> str:
    try:
        return orjson.dumps(headers).decode()  # on every delivery's path: ~1 µs, not ~6
    except orjson.JSONEncodeError:  # a lone surrogate, say, typed into an edited replay
        return json.dumps(headers, ensure_ascii=False, separators=(",", ":"))


def load_headers(text: str) -> Headers:
    return [(name, value) for name, value in json.loads(text)]


def attempt_from_row(r: tuple[Any, ...]) -> Attempt:
    """An Attempt from a row selected as sql.ATTEMPT_COLUMNS (or ATTEMPT_COLUMNS_A)."""
    return Attempt(
        id=r[0],
        delivery_id=r[1],
        kind=r[2],
        started_at=r[3],
        target_url=r[4],
        status=r[5],
        duration_ms=r[6],
        error=r[7],
        note=r[8],
        request_headers=load_headers(r[9]),
        response_headers=load_headers(r[10]),
        request_body=None if r[11] is None else bytes(r[11]),
        response_body=bytes(r[12]),
    )
