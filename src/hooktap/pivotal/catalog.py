"""The catalog of Pivotal event types, and realistic samples of each for `trigger` and `check`.

The events, their sample envelopes and the record schemas live in catalog.json, as data: adding
an event type Pivotal ships later is an edit to that file, not to code. The record sits in
`data.object`, where Pivotal's handler snippet types it ({ id, type, data: { object } }) and its
RULES tell handlers to read state from; so overrides address it as data.object.health_score.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import secrets
from collections.abc import Iterable
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
    """An override that cannot be applied: bad syntax, a value that is not sendable JSON, or
    a path through a non-object."""


class UnknownField(BadOverride):
    """A path the event's schema does not have: almost always a typo, which would otherwise
    send an event with the intended field unchanged and a stray one beside it."""

    def __init__(self, path: str, where: str, event_type: str, suggestion: str | None) -> None:
        self.path = path
        self.suggestion = suggestion
        hint = f" (did you mean {suggestion}?)" if suggestion else ""
        super().__init__(f"{event_type} events have no field {where!r}{hint}")


# Pivotal's records are four levels deep at most (data.object.phase.name); a longer path is a
# mistake, and thousands of segments would nest past what the JSON encoder can write.
MAX_PATH_SEGMENTS = 32


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


def event_schema(event_type: str) -> dict[str, Any]:
    """The schema of a whole `event_type` body: the envelope, its record's schema in
    data.object."""
    entry = _entry(event_type)
    record = _catalog()["schemas"][entry["object"]]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("$record") is True:
                return copy.deepcopy(record)
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(_catalog()["envelope"])
    return resolved


def _entry(event_type: str) -> dict[str, Any]:
    entry = _events().get(event_type)
    if entry is None:
        raise UnknownEventType(event_type, event_types())
    return entry


def _fresh_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_override(text: str) -> tuple[str, Any]:
    """Split "data.object.health_score=12" into a path and a value; the value is JSON when it
    parses as JSON (12, true, null, {"a": 1}) and the literal string otherwise."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise BadOverride(f"expected KEY=VALUE (e.g. data.object.health_score=12), got {text!r}")
    return path, _coerce(raw)


class NotJson(BadOverride):
    """Text that is not JSON; NaN and Infinity included, which Python's json reads and JSON
    does not have."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        # Refused rather than kept as the text "1e999": a field that silently changes type is
        # the kind of surprise --set is careful to avoid; the user can quote it for text.
        raise BadOverride(
            f"{text} is too large for a JSON number: parsers read it as Infinity, which is "
            f"not JSON; to send it as text, quote it: '\"{text}\"'"
        )
    return number


def _no_constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def parse_json(text: str, what: str | None = None) -> Any:
    """`text` as strict JSON that hooktap can send again: raises NotJson when it is not JSON,
    BadOverride when it is but could not be written back (a number past a double, nesting
    past the parser's depth, a lone surrogate). `what` names it in messages."""
    name = what or "value"
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise NotJson(f"{name} is not JSON: {exc}") from None
    except RecursionError:
        raise BadOverride(f"{name} is nested too deep to send") from None
    except BadOverride as exc:  # from _finite or _no_constant
        raise type(exc)(f"{what}: {exc}" if what else str(exc)) from None
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
        raise BadOverride(f"{name} cannot be read: {exc}") from None
    check_sendable(value, name)
    return value


def _coerce(raw: str) -> Any:
    """`raw` as JSON if it is JSON, else as text; refused if it cannot be sent as JSON."""
    try:
        return parse_json(raw)
    except NotJson:
        check_sendable(raw, "value")
        return raw


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def check_sendable(value: Any, what: str) -> None:
    """Refuse strings UTF-8 cannot carry (a lone surrogate, from a \\ud800 escape or from
    undecodable bytes on the command line): the body could not be written at all."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise BadOverride(
            f"{what} holds a lone surrogate ({bad!r}), which is not Unicode text and cannot "
            "be sent as UTF-8"
        ) from None
    except RecursionError:
        raise BadOverride(f"{what} is nested too deep to send") from None


def _split(path: str) -> list[str]:
    parts = path.split(".")
    if len(parts) > MAX_PATH_SEGMENTS:
        raise BadOverride(
            f"path {_short(path)} has {len(parts):,} segments; at most {MAX_PATH_SEGMENTS}"
        )
    if any(p == "" for p in parts):
        raise BadOverride(f"bad path {_short(path)}: empty segment")
    check_sendable(path, f"path {_short(path)}")
    return parts


def _is_list(node: Any, schema: dict[str, Any] | None) -> bool:
    return isinstance(node, list) or (schema or {}).get("type") == "array"


def _fields(node: Any, schema: dict[str, Any] | None) -> set[str] | None:
    """The field names known at `node`: those it has and those its schema allows; None when
    any name is allowed (no schema, or a free-form object such as custom_fields)."""
    if schema is None:
        return None
    have = set(node) if isinstance(node, dict) else set()
    kinds = schema.get("type", "object")
    if "object" not in ([kinds] if isinstance(kinds, str) else kinds):
        return have  # a string or number field has no fields of its own
    props = schema.get("properties")
    if props is None and schema.get("additionalProperties") is not False:
        return None
    return set(props or ()) | have


def _child(node: Any, schema: dict[str, Any] | None, part: str) -> tuple[Any, Any]:
    """The value at `part` under `node` (None when absent) and its schema (None: unknown)."""
    if _is_list(node, schema):
        index = int(part) if part.isdigit() else -1
        child = node[index] if isinstance(node, list) and 0 <= index < len(node) else None
        return child, (schema or {}).get("items")
    child = node.get(part) if isinstance(node, dict) else None
    return child, ((schema or {}).get("properties") or {}).get(part)


def _suggest(node: Any, schema: dict[str, Any] | None, parts: list[str]) -> list[str] | None:
    """The nearest path the schema has: each unknown name replaced by a close match, or found
    one level down in `object` (where the record lives). None when nothing is near."""
    if not parts:
        return []
    part, rest = parts[0], parts[1:]
    known = None if _is_list(node, schema) else _fields(node, schema)
    if known is None or part in known:
        tail = _suggest(*_child(node, schema, part), rest)
        return None if tail is None else [part, *tail]
    for name in difflib.get_close_matches(part, sorted(known), n=3):
        tail = _suggest(*_child(node, schema, name), rest)
        if tail is not None:
            return [name, *tail]
    if "object" in known:
        tail = _suggest(*_child(node, schema, "object"), parts)
        if tail is not None:
            return ["object", *tail]
    return None


def check_path(doc: dict[str, Any], path: str, schema: dict[str, Any], event_type: str) -> None:
    """Raise UnknownField when `schema` (see event_schema) has no field at `path` and `doc`
    does not have it either (a --data-file record may carry fields of its own)."""
    parts = _split(path)
    node: Any = doc
    sub: dict[str, Any] | None = schema
    for depth, part in enumerate(parts):
        if node is not None and not isinstance(node, dict | list):
            return  # through a string or number: apply_override says so, with the value
        known = None if _is_list(node, sub) else _fields(node, sub)
        if known is not None and part not in known:
            near = _suggest(doc, schema, parts)
            where = ".".join(parts[: depth + 1])
            raise UnknownField(path, where, event_type, ".".join(near) if near else None)
        node, sub = _child(node, sub, part)


def apply_override(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in `doc`, creating missing objects on the way; numeric segments
    index into lists, so data.object.tags.0=vip works. Any path goes: check_path first to
    hold it to the event's schema."""
    parts = _split(path)
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


def override(
    doc: dict[str, Any],
    event_type: str,
    overrides: Iterable[tuple[str, Any]],
    *,
    allow_new_fields: bool = False,
) -> None:
    """Apply (path, value) pairs in order, each path held to the event's schema unless
    `allow_new_fields`; values are taken as given (parse_override has parsed them)."""
    schema = event_schema(event_type)
    for path, value in overrides:
        if not allow_new_fields:
            check_path(doc, path, schema, event_type)
        apply_override(doc, path, value)


def sample(
    event_type: str,
    overrides: dict[str, Any] | None = None,
    *,
    allow_new_fields: bool = False,
) -> dict[str, Any]:
    """A fresh sample envelope for `event_type`, as Pivotal would send it now.

    Each call gets its own event id and created_at (the record's updated_at follows it), so
    repeated triggers look like distinct events to an idempotent handler. `overrides` maps
    dotted paths to values, applied last so they can change anything, id and type included.
    String values are JSON-parsed when possible, as `--set` passes them. A path the event's
    schema does not have raises UnknownField unless `allow_new_fields`.
    """
    doc: dict[str, Any] = copy.deepcopy(_entry(event_type)["sample"])
    doc["id"] = _fresh_id("evt_")
    doc["created_at"] = _now_iso()
    record = doc["data"]["object"]
    if "updated_at" in record:
        record["updated_at"] = doc["created_at"]
    pairs = [(p, _coerce(v) if isinstance(v, str) else v) for p, v in (overrides or {}).items()]
    override(doc, event_type, pairs, allow_new_fields=allow_new_fields)
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
