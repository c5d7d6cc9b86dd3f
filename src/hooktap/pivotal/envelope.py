"""The JSON envelope Pivotal wraps every event in: { id, type, created_at, data: { object } }.

Parsing is best-effort and total: the listener labels deliveries with it, and a body that is
not an envelope (a stray health check, a binary upload, a truncated request) must still be
stored and forwarded, just without a label.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

# Beyond this size only the start of the body is read: Pivotal puts id, type and created_at
# before data, and parsing a whole megabyte of JSON to read three labels cost more than
# everything else the listener does with the delivery.
PREFIX_SCAN_OVER = 64 * 1024
_WANTED = ("id", "type", "created_at")
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class Envelope:
    """The labels of one event; `data` (the record, in data.object) stays in the raw body,
    which is the thing we keep."""

    id: str | None
    type: str
    created_at: str | None


def parse_envelope(body: bytes) -> Envelope | None:
    """The envelope of `body`, or None when it is not a JSON object with a string `type`.

    Never raises: invalid UTF-8, invalid JSON, absurd nesting and oversized integers all mean
    "not an envelope".
    """
    fields: dict[str, Any] | None = None
    if len(body) > PREFIX_SCAN_OVER:
        fields = _scan_prefix(body[:PREFIX_SCAN_OVER])
    if fields is None:
        try:
            obj = orjson.loads(body)  # ~4x faster on every delivery
        except orjson.JSONDecodeError:
            # orjson is stricter (lone surrogate escapes, integers past 64 bits, NaN):
            # json gets the last word, so what counts as an envelope does not change.
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError, TypeError):
                return None
        if not isinstance(obj, dict):
            return None
        fields = obj
    kind, event_id, created_at = (fields.get(k) for k in ("type", "id", "created_at"))
    if not isinstance(kind, str):
        return None
    return Envelope(
        id=event_id if isinstance(event_id, str) else None,
        type=kind,
        created_at=created_at if isinstance(created_at, str) else None,
    )


def _scan_prefix(prefix: bytes) -> dict[str, Any] | None:
    """The labels from the top-level members that fit in `prefix`, stopping once all three
    are seen; None when the prefix cannot tell (the caller then parses the whole body)."""
    try:
        text = prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(prefix) - 3:
            return None  # invalid UTF-8 inside, not just a character cut at the end
        text = prefix[: exc.start].decode("utf-8", "ignore")
    try:
        idx = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
        if text[idx : idx + 1] != "{":
            return None
        idx += 1
        found: dict[str, Any] = {}
        while True:
            idx = _SPACE.match(text, idx).end()  # type: ignore[union-attr]
            key, idx = _DECODER.raw_decode(text, idx)
            idx = _SPACE.match(text, idx).end()  # type: ignore[union-attr]
            if not isinstance(key, str) or text[idx : idx + 1] != ":":
                return None
            idx = _SPACE.match(text, idx + 1).end()  # type: ignore[union-attr]
            value, idx = _DECODER.raw_decode(text, idx)
            if key in _WANTED:
                found[key] = value
                if len(found) == len(_WANTED):
                    return found
            idx = _SPACE.match(text, idx).end()  # type: ignore[union-attr]
            if text[idx : idx + 1] != ",":
                return found if text[idx : idx + 1] == "}" else None
            idx += 1
    except (ValueError, RecursionError):
        return None  # ran past the prefix, or not JSON: let the full parse decide
