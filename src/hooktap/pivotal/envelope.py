"""The JSON envelope Pivotal wraps every event in: { id, type, created_at, data }.

Parsing is best-effort and total: the listener labels deliveries with it, and a body that is
not an envelope (a stray health check, a binary upload, a truncated request) must still be
stored and forwarded, just without a label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Envelope:
    """The labels of one event; `data` stays in the raw body, which is the thing we keep."""

    id: str | None
    type: str
    created_at: str | None


def parse_envelope(body: bytes) -> Envelope | None:
    """The envelope of `body`, or None when it is not a JSON object with a string `type`.

    Never raises: invalid UTF-8, invalid JSON, absurd nesting and oversized integers all mean
    "not an envelope".
    """
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError, TypeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return None
    event_id = obj.get("id")
    created_at = obj.get("created_at")
    return Envelope(
        id=event_id if isinstance(event_id, str) else None,
        type=obj["type"],
        created_at=created_at if isinstance(created_at, str) else None,
    )
