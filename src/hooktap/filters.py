"""The filter language shared by `hooktap deliveries`, `hooktap replay` and the TUI's `/` box.

    type:customer.* status:5xx sig:invalid since:1h acme

One parser for every surface, so a filter typed in the TUI means exactly what the same words mean
on the command line. It is pure (no SQL, no clock unless asked): the store turns a `Filter` into
parameterised SQL, and tests check the language without a database.

Rules: tokens are separated by spaces; values of one key are alternatives (`status:4xx,5xx` or
`status:4xx status:5xx`), different keys must all hold. Bare words and "quoted phrases" must each
appear in the body (ASCII case-insensitive).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

SIGNATURES = ("valid", "invalid", "expired", "unsigned", "no-secret")
# Deliveries stored and answered 200 but sent to no handler (routes, --events): `status:`
# names them by their state, since they have no status code.
NOT_FORWARDED = ("filtered", "unrouted")
_KEY_ALIASES = {
    "type": "type",
    "status": "status",
    "sig": "sig",
    "signature": "sig",
    "since": "since",
}

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_STATUS_CLASS = re.compile(r"([1-5])xx")
_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))')
_KEYED = re.compile(r"([A-Za-z][A-Za-z_-]*):(.*)", re.DOTALL)
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Filter:
    """What to keep. Empty tuples / None mean "no constraint on this field".

    `since` is kept as either a sliding window (`since_seconds`) or a fixed instant
    (`since_at`), so a TUI that re-queries every second keeps showing "the last hour".
    """

    types: tuple[str, ...] = ()  # globs over the Pivotal event type
    statuses: tuple[str, ...] = ()  # "5xx", "401", "err", "filtered", "unrouted"
    signatures: tuple[str, ...] = ()
    since_seconds: float | None = None
    since_at: float | None = None
    text: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    def cutoff(self, now: float | None = None) -> float | None:
        """The earliest received_at that passes, or None for no time limit."""
        if self.since_at is not None:
            return self.since_at
        if self.since_seconds is not None:
            return (time.time() if now is None else now) - self.since_seconds
        return None

    @property
    def empty(self) -> bool:
        return not (
            self.types
            or self.statuses
            or self.signatures
            or self.text
            or self.since_seconds is not None
            or self.since_at is not None
        )


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `1h`, `1.5d`, `1w`, or compounds like `1h30m`, to seconds."""
    value = text.strip().lower()
    pos, total = 0, 0.0
    while pos < len(value):
        match = _DURATION.match(value, pos)
        if match is None:
            raise ValueError(
                f"bad duration {text!r}: use a number and a unit s, m, h, d or w, like 30m or 2d"
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value:
        raise ValueError("empty duration: use a number and a unit, like 30m or 2d")
    return total


def parse_instant(text: str) -> float:
    """An ISO 8601 date or date-time to unix seconds; a naive one is local time."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use a duration like 1h or 2d, or an ISO time like "
            "2024-05-01 or 2024-05-01T14:30"
        ) from None
    return moment.timestamp()


def parse_since(text: str, now: float | None = None) -> float:
    """How many seconds back `text` reaches: a duration (`1h`) or an ISO instant."""
    try:
        return parse_duration(text)
    except ValueError:
        pass
    at = parse_instant(text)
    return (time.time() if now is None else now) - at


def _since_fields(text: str) -> dict[str, float | None]:
    try:
        return {"since_seconds": parse_duration(text), "since_at": None}
    except ValueError:
        pass
    return {"since_seconds": None, "since_at": parse_instant(text)}


def _status_value(value: str) -> str:
    v = value.strip().lower()
    if v == "err" or v in NOT_FORWARDED or _STATUS_CLASS.fullmatch(v):
        return v
    if v.isdigit() and len(v) == 3 and 100 <= int(v) <= 599:
        return v
    raise ValueError(
        f"bad status {value!r}: use a class like 5xx, an exact code like 401, "
        "err (no response: connection error or timeout), or filtered or unrouted "
        "(stored, not forwarded: outside --events, or no route for its type)"
    )


def _signature_value(value: str) -> str:
    v = value.strip().lower()
    if v not in SIGNATURES:
        raise ValueError(f"bad signature verdict {value!r}: use one of {', '.join(SIGNATURES)}")
    return v


def _type_value(value: str) -> str:
    v = value.strip()
    if not v:
        raise ValueError("empty type: use an event type or a glob, like customer.* or task.updated")
    if v.count("[") != v.count("]"):
        raise ValueError(f"bad type pattern {value!r}: unbalanced [ ]")
    return v


def is_glob(pattern: str) -> bool:
    """Whether a type pattern needs GLOB matching rather than an exact/prefix comparison."""
    return any(ch in _GLOB_CHARS for ch in pattern)


def _split_values(value: str) -> list[str]:
    parts = value.split(",")
    if any(not p.strip() for p in parts):
        raise ValueError("empty value; write key:value with no space after the colon")
    return parts


def _tokens(text: str) -> Iterable[tuple[str, bool]]:
    """(token, was_quoted) pairs; an unterminated quote is an error, not a silent guess."""
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"unterminated quote at column {pos + 1}: {text[pos:].strip()!r}")
        quoted, plain = match.group(1), match.group(2)
        if plain is not None and plain.startswith('"'):
            raise ValueError(f"unterminated quote at column {match.start(2) + 1}: {plain!r}")
        if quoted is not None:
            yield re.sub(r"\\(.)", r"\1", quoted), True
        else:
            yield plain, False
        pos = match.end()


def parse_filter(text: str) -> Filter:
    """Parse the `/` box / `--filter` language; ValueError names the offending token."""
    fields: dict[str, list[str]] = {"type": [], "status": [], "sig": []}
    words: list[str] = []
    since: dict[str, float | None] = {}
    for token, quoted in _tokens(text):
        keyed = None if quoted else _KEYED.fullmatch(token)
        if keyed is None:
            if token:
                words.append(token)
            continue
        raw_key, value = keyed.group(1), keyed.group(2)
        key = _KEY_ALIASES.get(raw_key.lower())
        if key is None:
            raise ValueError(
                f"unknown filter {raw_key + ':'!r} in {token!r}: use type:, status:, sig:, since:, "
                'or put the text in quotes ("...") to search for it'
            )
        try:
            if key == "since":
                since = _since_fields(value)
                continue
            values = _split_values(value)
            check = {"type": _type_value, "status": _status_value, "sig": _signature_value}[key]
            fields[key].extend(check(v) for v in values)
        except ValueError as err:
            raise ValueError(f"in {token!r}: {err}") from None
    result = Filter(
        types=tuple(fields["type"]),
        statuses=tuple(fields["status"]),
        signatures=tuple(fields["sig"]),
        text=tuple(words),
        source=text.strip(),
    )
    return replace(result, **since) if since else result


def build_filter(
    expression: str = "",
    *,
    types: Iterable[str] = (),
    statuses: Iterable[str] = (),
    signatures: Iterable[str] = (),
    since: str | None = None,
) -> Filter:
    """A Filter from command-line options plus an optional expression, validated the same way.

    Options may hold comma-separated alternatives, like the language (`--status 4xx,5xx`).
    """
    base = parse_filter(expression)

    def each(values: Iterable[str], check: Callable[[str], str], what: str) -> tuple[str, ...]:
        out: list[str] = []
        for value in values:
            try:
                out.extend(check(v) for v in _split_values(value))
            except ValueError as err:
                raise ValueError(f"--{what} {value!r}: {err}") from None
        return tuple(out)

    extra: dict[str, object] = {
        "types": base.types + each(types, _type_value, "type"),
        "statuses": base.statuses + each(statuses, _status_value, "status"),
        "signatures": base.signatures + each(signatures, _signature_value, "signature"),
    }
    if since is not None:
        try:
            extra.update(_since_fields(since))
        except ValueError as err:
            raise ValueError(f"--since: {err}") from None
    return replace(base, **extra)
