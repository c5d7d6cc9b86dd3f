"""Which local handler a delivery goes to, by its Pivotal event type: `--events` and routes.

    hooktap listen --events 'customer.*,task.completed' \
                   --forward 'customer.*=localhost:8001/hooks' \
                   --forward localhost:8000/webhooks/pivotal

Pure: no I/O, no clock. The listener asks `Routing.decide` once per delivery; `replay`,
`check` and `trigger` use the same rules, so a type goes to the same handler whichever command
sends it. Patterns mean what `type:` means in the filter language (filters.py): a glob over the
event type (`customer.*`, `task.*ed`), or a bare name, which is that type or that object's
types (`customer` is customer and customer.*). The store runs `type:` as SQLite's GLOB, so a
glob here follows GLOB's rules, not the shell's (fnmatch): `[^a]` negates a set, `!` is a
plain character, and a `[` never closed matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from hooktap.filters import is_glob
from hooktap.listen.target import Target, parse_target

# What a pattern is made of, in `PATTERN=TARGET` and --events.
_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]^!-]+").fullmatch

Outcome = Literal["forward", "filtered", "unrouted"]


def type_matches(pattern: str, event_type: str | None) -> bool:
    """`type:` semantics of the filter language, in Python: a glob, or a name and its
    sub-types. A delivery whose body is not a Pivotal envelope has no type and matches none."""
    if event_type is None:
        return False
    if is_glob(pattern):
        tokens = _glob(pattern)
        # GLOB reads its operand as C text, up to the first NUL.
        return tokens is not None and _glob_match(tokens, event_type.partition("\0")[0])
    return event_type == pattern or event_type.startswith(pattern + ".")


# A glob, parsed: "*" (any run), or a test for one character. Sets are kept as their ranges
# (a single member is a range of one) and whether they are negated.
_Token = Literal["*"] | tuple[bool, tuple[tuple[str, str], ...]] | str
_ANY: _Token = (True, ())  # `?`, and `[^]`: a negated empty set takes any one character
_NONE: _Token = (False, ())  # `[]`: an empty set takes none


@lru_cache(maxsize=256)
def _glob(pattern: str) -> tuple[_Token, ...] | None:
    """SQLite's GLOB pattern (patternCompare in its func.c), parsed; None for a pattern that
    matches nothing, one with a `[` never closed."""
    out: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] != "*":  # `**` is `*`
                out.append("*")
        elif c == "?":
            out.append(_ANY)
        elif c != "[":
            out.append(c)
        else:
            invert = pattern.startswith("^", i)
            i += invert
            ranges: list[tuple[str, str]] = []
            if pattern.startswith("]", i):  # first in the set: a member, not its end
                ranges.append(("]", "]"))
                i += 1
            prior = ""  # the last single member, which a following `-x` makes a range
            while i < n and pattern[i] != "]":
                c = pattern[i]
                if c == "-" and prior and i + 1 < n and pattern[i + 1] != "]":
                    high = pattern[i + 1]
                    # GLOB keeps `prior` as a member, and a reversed range adds nothing.
                    if prior <= high:
                        ranges.append((prior, high))
                    prior = ""
                    i += 2
                    continue
                ranges.append((c, c))
                prior = c
                i += 1
            if i >= n:
                return None
            i += 1
            out.append((invert, tuple(ranges)) if ranges else _ANY if invert else _NONE)
    return tuple(out)


def _takes(token: _Token, ch: str) -> bool:
    if isinstance(token, str):
        return token == ch
    invert, ranges = token
    return any(lo <= ch <= hi for lo, hi in ranges) != invert


def _glob_match(tokens: tuple[_Token, ...], text: str) -> bool:
    """Whether `tokens` match all of `text`, in O(len(tokens) * len(text)) at worst.

    A regular expression of `.*` runs backtracks exponentially (`*.*.*ed` against a long
    type took seconds), and the type is the sender's, run on the listener's loop for every
    delivery. Every token but `*` takes exactly one character, so on a mismatch it is enough
    to let the last `*` seen take one more character and go on from there: an earlier `*`
    could only take what the last one can."""
    t = s = 0
    star = -1  # the index of the last `*` seen, and where in `text` it stopped taking
    star_s = 0
    while s < len(text):
        if t < len(tokens) and tokens[t] == "*":
            star, star_s = t, s
            t += 1
        elif t < len(tokens) and _takes(tokens[t], text[s]):
            t += 1
            s += 1
        elif star >= 0:
            star_s += 1
            t, s = star + 1, star_s
        else:
            return False
    return all(token == "*" for token in tokens[t:])


@dataclass(frozen=True)
class Route:
    pattern: str | None  # an event-type pattern; None for the fallback, which takes any type
    target: Target

    def __str__(self) -> str:
        return str(self.target) if self.pattern is None else f"{self.pattern}={self.target}"

    def takes(self, event_type: str | None) -> bool:
        return self.pattern is None or type_matches(self.pattern, event_type)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    target: Target | None  # where it goes; None when filtered or unrouted
    route: Route | None = None

    @property
    def reason(self) -> str:
        """A sentence for the sender's 200 and the history, when not forwarded."""
        return _NOT_FORWARDED.get(self.outcome, "")


# Why a delivery went to no handler, by the state it is stored with (filters.NOT_FORWARDED).
_NOT_FORWARDED = {
    "filtered": "filtered: its event type is not in --events, so it was stored, not forwarded",
    "unrouted": (
        "unrouted: no --forward route matches its event type and there is no fallback route, "
        "so it was stored, not forwarded"
    ),
}


def not_forwarded_reason(state: str) -> str | None:
    """The reason for a delivery stored as "filtered" or "unrouted"; None for any other state.
    What the sender was told, `deliveries show`, trigger and the inspector all say it so."""
    return _NOT_FORWARDED.get(state)


@dataclass(frozen=True)
class Routing:
    """Routes in order (the first match wins; the fallback, at most one, last) and the
    `--events` patterns (empty: every type passes)."""

    routes: tuple[Route, ...]
    events: tuple[str, ...] = ()

    def decide(self, event_type: str | None) -> Decision:
        if self.events and not any(type_matches(p, event_type) for p in self.events):
            return Decision("filtered", None)
        for route in self.routes:
            if route.takes(event_type):
                return Decision("forward", route.target, route)
        return Decision("unrouted", None)

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every distinct target, in route order: what the health check probes."""
        return tuple(dict.fromkeys(r.target for r in self.routes))

    @property
    def fallback(self) -> Target | None:
        return next((r.target for r in self.routes if r.pattern is None), None)

    @property
    def primary(self) -> Target:
        """The one target to name where a single one is shown (the banner's "forwarding
        to", listener.json): the fallback, else the first route's."""
        return self.fallback or self.routes[0].target

    @property
    def simple(self) -> bool:
        """One target for every delivery, as before routes existed."""
        return len(self.routes) == 1 and self.routes[0].pattern is None and not self.events

    def describe(self) -> list[str]:
        return [str(r) for r in self.routes]


def parse_route(text: str) -> Route:
    """`TARGET` (the fallback) or `PATTERN=TARGET`; ValueError says what is wrong."""
    raw = text.strip()
    head, eq, tail = raw.partition("=")
    pattern = head.strip()
    # Left of the first `=` is a pattern unless a target starts there: a host:port, a URL or
    # a path (`localhost:8000/a=b`), or a port (`8000?x=1`, then refused for its query; no
    # event type starts with a digit). Anything else is meant as a pattern and must be one.
    if eq and pattern.isdigit() and _PATTERN(tail.strip()):
        raise ValueError(
            f"route {text!r} puts the port before '='; did you mean "
            f"{tail.strip()}={pattern} (PATTERN=TARGET)?"
        )
    if eq and not (pattern[:1].isdigit() or ":" in pattern or "/" in pattern):
        if not pattern:
            raise ValueError(f"route {text!r} has no event-type pattern before '='")
        _check_pattern(pattern, "route")
        if not tail.strip():
            raise ValueError(
                f"route {text!r} has no target after '='; as in {pattern}=localhost:8001/hooks"
            )
        return Route(pattern, parse_target(tail))
    return Route(None, parse_target(raw))


def parse_events(text: str) -> tuple[str, ...]:
    """`customer.*,task.completed`: patterns separated by commas, or by spaces (`customer.*
    task.completed`, `customer.*, task.completed`), since no pattern holds a space."""
    parts = [p.split() for p in text.split(",")]
    if not all(parts):
        raise ValueError(
            f"--events {text!r} has an empty pattern; give event types or globs separated by "
            "commas, like 'customer.*,task.completed'"
        )
    patterns = tuple(p for part in parts for p in part)
    for p in patterns:
        _check_pattern(p, "--events")
    return patterns


def build_routing(forwards: Sequence[str], events: str | Iterable[str] | None = None) -> Routing:
    """Routes from `--forward` values in order, and `--events`; ValueError says what is wrong:
    no route, two fallbacks, or a fallback that hides the routes after it."""
    if not forwards:
        raise ValueError("no --forward target")
    routes = tuple(parse_route(f) for f in forwards)
    fallbacks = [r for r in routes if r.pattern is None]
    if len(fallbacks) > 1:
        raise ValueError(
            f"two --forward targets without a pattern ({fallbacks[0].target} and "
            f"{fallbacks[1].target}): only one can be the fallback; give the others a "
            "pattern, as in --forward 'customer.*=localhost:8001/hooks'"
        )
    if fallbacks and routes[-1].pattern is not None:
        # The first match wins, so routes after the fallback would never be used: put it
        # last rather than refuse, since flags and hooktap.toml order it either way.
        routes = (*[r for r in routes if r.pattern is not None], fallbacks[0])
    items = [events] if isinstance(events, str) else list(events or ())
    return Routing(routes, tuple(p for item in items for p in parse_events(item)))


def unknown_patterns(routing: Routing, known: Iterable[str]) -> list[str]:
    """Patterns that match none of the known Pivotal event types: most likely a typo, which
    would otherwise route nothing, silently."""
    types = list(known)
    patterns = [*routing.events, *(r.pattern for r in routing.routes if r.pattern)]
    return [p for p in patterns if not any(type_matches(p, t) for t in types)]


def shadowed_routes(routing: Routing, known: Iterable[str]) -> list[Route]:
    """Routes every known type of which an earlier route takes: as the first match wins, they
    never get a delivery (a broad pattern listed before a narrow one, most likely)."""
    types = list(known)
    shadowed = []
    for i, route in enumerate(routing.routes):
        mine = [t for t in types if route.pattern is not None and route.takes(t)]
        if mine and all(any(r.takes(t) for r in routing.routes[:i]) for t in mine):
            shadowed.append(route)
    return shadowed


def _check_pattern(pattern: str, where: str) -> None:
    if not _PATTERN(pattern):
        raise ValueError(
            f"{where} pattern {pattern!r} is not an event type or a glob; use letters, digits, "
            "'.', '_', '-' and the wildcards * ? [ ] ([^...] for none of), as in customer.* "
            "or task.completed"
        )
    if pattern.count("[") != pattern.count("]"):
        raise ValueError(f"{where} pattern {pattern!r} has unbalanced [ ]")
