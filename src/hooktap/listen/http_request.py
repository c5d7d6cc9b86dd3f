"""A request head exactly as the handler gets it: built from the sender's headers, and
checked against the HTTP grammar before a byte of it is written.

The head is written by hand: aiohttp's client merges repeated header names and moves Host
first, so it cannot keep a sender's header list in its original order, case and repeats;
joining the lines ourselves can, and costs a few µs where h11's validation and pure-Python
state machine cost ~60 µs of the listener's ~700 µs per 1 KB delivery. Writing by hand means
this module alone stands between a delivery and request smuggling, so every head is checked
against the grammar (`request_head`).
"""

from __future__ import annotations

import re

from hooktap.http_grammar import HOP_BY_HOP, TARGET_CHAR, TCHAR, VALUE_CHAR, is_token
from hooktap.records import Headers

# What a sender may claim about where a request came from. Dropped on the way to the handler,
# which would believe a client address of the sender's choosing: only the relay's own values
# (the Delivery frame's remote, scheme and host) are sent.
_FORWARDING = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})

# The whole head as `request_head` joins it, with NUL standing in for each ": " separator.
# NUL may appear nowhere else, so every line is exactly one token name, one separator and one
# clean value: a name holding ":" or a value holding CR LF cannot fake a line of its own.
# Possessive quantifiers: nothing here needs backtracking, and they make it a third faster.
_HEAD = re.compile(
    rf"{TCHAR}++ {TARGET_CHAR}++ HTTP/1\.1\r\n(?:{TCHAR}++\x00{VALUE_CHAR}*+\r\n)*+\r\n"
).fullmatch
_BAD_TARGET_CHAR = re.compile(rf"(?!{TARGET_CHAR}).", re.DOTALL).search
_BAD_VALUE_CHAR = re.compile(rf"(?!{VALUE_CHAR}).", re.DOTALL).search


def prepare_headers(
    method: str,
    headers: Headers,
    body: bytes,
    netloc: str,
    *,
    remote: str = "",
    scheme: str = "",
    host: str = "",
) -> Headers:
    """The sender's headers as the handler should see them.

    Hop-by-hop headers (and any the Connection header names) go, Host points at the target,
    Content-Length matches the body. The sender's own X-Forwarded-For/-Proto/-Host and
    Forwarded go too, and X-Forwarded-For/-Proto/-Host carry `remote`, `scheme` and `host`
    verbatim, each only if given: the relay decided them (for a trusted proxy `remote` is
    already the chain "client, proxy"), so nothing is merged here. Everything else keeps its
    position, case and repeats.
    """
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    drop = HOP_BY_HOP | _FORWARDING | named
    out: Headers = []
    seen_host = seen_length = False
    for name, value in headers:
        lower = name.lower()
        if lower in drop:
            continue
        if lower == "host":
            if seen_host:
                continue
            seen_host = True
            value = netloc
        elif lower == "content-length":
            if seen_length:
                continue
            seen_length = True
            value = str(len(body))
        out.append((name, value))
    if not seen_host:
        out.insert(0, ("Host", netloc))
    if not seen_length and (body or method.upper() in ("POST", "PUT", "PATCH")):
        out.append(("Content-Length", str(len(body))))
    if remote:
        out.append(("X-Forwarded-For", remote))
    if scheme:
        out.append(("X-Forwarded-Proto", scheme))
    if host:
        out.append(("X-Forwarded-Host", host))
    return out


class UnsafeRequest(ValueError):
    """A request the forwarder will not write: it would not parse as the request it claims
    to be (a header value with CR LF in it could smuggle a second request to the handler)."""


def request_head(method: str, target: str, headers: Headers) -> bytes:
    """The HTTP/1.1 request head, latin-1, with `headers` exactly as given: order, case and
    repeats. Raises `UnsafeRequest`, having written nothing, if any part breaks the grammar.

    The lines are joined with NUL in place of ": " and the whole head is checked with one
    precompiled regex, then NUL becomes ": " (NUL is refused everywhere else): ~3 µs for a
    Pivotal-sized head, against ~6 µs for two regex calls per header.
    """
    lines = "\r\n".join(map("\0".join, headers))  # C-level loops: no Python per header
    text = (
        f"{method} {target} HTTP/1.1\r\n{lines}\r\n\r\n"
        if headers
        else f"{method} {target} HTTP/1.1\r\n\r\n"
    )
    if _HEAD(text) is None:
        raise UnsafeRequest(_why_unsafe(method, target, headers))
    return text.replace("\0", ": ").encode("latin-1")


def _why_unsafe(method: str, target: str, headers: Headers) -> str:
    """Name the first part of a refused request that breaks the grammar (the slow path)."""
    if not is_token(method):
        return f"refused to forward: method {method!r} is not a valid HTTP token"
    if not target:
        return "refused to forward: the request target is empty"
    if bad := _BAD_TARGET_CHAR(target):
        return f"refused to forward: request target {target!r} contains character {bad.group()!r}"
    for name, value in headers:
        if not is_token(name):
            return f"refused to forward: header name {name!r} is not a valid HTTP token"
        if bad := _BAD_VALUE_CHAR(value):
            return (
                f"refused to forward: header {name!r} has a forbidden character "
                f"{bad.group()!r} in its value (at position {bad.start()})"
            )
    return "refused to forward: the request head is not valid HTTP/1.1"  # pragma: no cover
