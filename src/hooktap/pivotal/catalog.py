"""The catalog of Pivotal event types, and realistic samples of each for `trigger` and `check`.

The events, their sample envelopes and the record schemas live in catalog.json, as data: adding
an event type Pivotal ships later is an edit to that file, not to code.
"""

from __future__ import annotations

import copy
import difflib
import json
import secrets
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class UnknownEventType(ValueError):
    """An event type that is not in the catalog; the message lists the ones that are."""

    def __init__(self, event_type: str, known: list[str]) -> None:
        self.event_type = event_type
        self.known = known
        close = difflib.get_close_matches(event_type, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        super().__init__(
            f"unknown event type {event_type!r}{hint}; known types: {', '.join(known)}"
        )


class BadOverride(ValueError):
    """An override that cannot be applied: bad syntax, or a path through a non-object."""


@cache
def _catalog() -> dict[str, Any]:
    text = resources.files("hooktap.pivotal").joinpath("catalog.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _events() -> dict[str, dict[str, Any]]:
    return {e["type"]: e for e in _catalog()["events"]}


def event_types() -> list[str]:
    """Every known event type, in catalog order (grouped by object)."""
    return [e["type"] for e in _catalog()["events"]]


def events() -> list[dict[str, Any]]:
    """The catalog entries (type, object, documented, description, sample), as copies."""
    return copy.deepcopy(_catalog()["events"])


def schemas() -> dict[str, dict[str, Any]]:
    """JSON-schema-like definitions of each object's record, keyed by object name."""
    return copy.deepcopy(_catalog()["schemas"])


def _fresh_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_override(text: str) -> tuple[str, Any]:
    """Split "data.health_score=12" into a path and a value; the value is JSON when it parses
    as JSON (12, true, null, {"a": 1}) and the literal string otherwise."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise BadOverride(f"expected KEY=VALUE (e.g. data.health_score=12), got {text!r}")
    return path, _coerce(raw)


def _coerce(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def apply_override(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in `doc`, creating missing objects on the way; numeric segments
    index into lists, so data.tags.0=vip works."""
    parts = path.split(".")
    if any(p == "" for p in parts):
        raise BadOverride(f"bad path {path!r}: empty segment")
    node: Any = doc
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, dict):
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if nxt is None:
                    nxt = node[part] = {}
                node = nxt
        elif isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise BadOverride(
                    f"bad path {path!r}: {where} is not an index of a {len(node)}-item list"
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            parent = ".".join(parts[:depth])
            raise BadOverride(f"bad path {path!r}: {parent} is {node!r}, not an object")


def sample(event_type: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """A fresh sample envelope for `event_type`, as Pivotal would send it now.

    Each call gets its own event id and created_at (the record's updated_at follows it), so
    repeated triggers look like distinct events to an idempotent handler. `overrides` maps
    dotted paths to values, applied last so they can change anything, id and type included.
    String values are JSON-parsed when possible, as `--set` passes them.
    """
    entry = _events().get(event_type)
    if entry is None:
        raise UnknownEventType(event_type, event_types())
    doc: dict[str, Any] = copy.deepcopy(entry["sample"])
    doc["id"] = _fresh_id("evt_")
    doc["created_at"] = _now_iso()
    data = doc.get("data")
    if isinstance(data, dict) and "updated_at" in data:
        data["updated_at"] = doc["created_at"]
    for path, raw in (overrides or {}).items():
        apply_override(doc, path, _coerce(raw) if isinstance(raw, str) else raw)
    return doc


# Go's encoding/json escapes these inside strings; so do we, for the reason in `encode`.
_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def encode(doc: dict[str, Any]) -> bytes:
    """Serialize an event the way a typical API backend puts it on the wire: compact, raw UTF-8,
    with <, > and & escaped as \\u003c, \\u003e, \\u0026 (Go's encoding/json default).

    The point is that neither Python's json.dumps nor JavaScript's JSON.stringify reproduces
    these bytes after parsing them, so a handler that verifies a re-stringified payload fails
    on our samples exactly as it would on real traffic, instead of passing by luck.
    """
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.translate(_HTML_ESCAPES).encode("utf-8")
