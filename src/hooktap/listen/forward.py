"""Hand a delivery to the local handler byte-for-byte, over HTTP/1.1.

The request head is written by hand: aiohttp's client merges repeated header names and moves
Host first, so it cannot keep a sender's header list in its original order, case and
repeats; joining the lines ourselves can, and costs a few µs where h11's validation and
pure-Python state machine cost ~60 µs of the listener's ~700 µs per 1 KB delivery. Writing
by hand means this module alone stands between a delivery and request smuggling, so every
head is checked against the HTTP grammar before a byte is written (`request_head`).

Responses are parsed by httptools (`http_response`). Connections are kept alive and pooled: a
webhook burst should not pay a TCP handshake per delivery. A request is written at most once:
a kept-alive socket found dead before writing is replaced, but one that ends after the
request went out is reported, since the handler may have acted on what it read.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hooktap.http_grammar import TARGET_CHAR, TCHAR, VALUE_CHAR, is_token
from hooktap.listen.http_response import BadResponse, ClosedBeforeAnswer, ResponseParser
from hooktap.listen.target import Target, parse_target
from hooktap.records import Attempt, Headers

__all__ = [
    "MAX_RESPONSE_BODY",
    "Dispatch",
    "Forwarder",
    "Outcome",
    "Target",
    "UnsafeRequest",
    "parse_target",
    "prepare_headers",
    "request_head",
]

# The listener's hook around writing a request: given `write`, it records, then writes.
Dispatch = Callable[[Callable[[], None]], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# What a sender may claim about where a request came from. Dropped on the way to the handler,
# which would believe a client address of the sender's choosing: only the relay's own values
# (the Delivery frame's remote, scheme and host) are sent.
_FORWARDING = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})
_READ_CHUNK = 1 << 18
# The most of a handler's response body kept: a handler streaming an endless body (or one
# announcing a huge Content-Length) must not grow the listener without bound. It is checked
# after each read, so at most one read chunk more is ever held.
MAX_RESPONSE_BODY = 1 << 20
# How long a kept-alive socket may sit idle and still be reused. A request written just as
# the handler's idle timeout closes the socket cannot be sent again (the handler may have
# read it), so sockets are retired well before common servers' timeouts (gunicorn 2 s,
# uvicorn and Node 5 s); a burst of webhooks still shares them.
KEEPALIVE_EXPIRY = 1.0
# Bodies up to this size go out in one write with the head (one send, one small copy);
# bigger ones are written separately so a 10 MB body is not copied just to prepend a head.
_COALESCE = 1 << 16

# The whole head as `request_head` joins it, with NUL standing in for each ": " separator.
# NUL may appear nowhere else, so every line is exactly one token name, one separator and one
# clean value: a name holding ":" or a value holding CR LF cannot fake a line of its own.
# Possessive quantifiers: nothing here needs backtracking, and they make it a third faster.
_HEAD = re.compile(
    rf"{TCHAR}++ {TARGET_CHAR}++ HTTP/1\.1\r\n(?:{TCHAR}++\x00{VALUE_CHAR}*+\r\n)*+\r\n"
).fullmatch
_BAD_TARGET_CHAR = re.compile(rf"(?!{TARGET_CHAR}).", re.DOTALL).search
_BAD_VALUE_CHAR = re.compile(rf"(?!{VALUE_CHAR}).", re.DOTALL).search


@dataclass
class Outcome:
    """What the handler answered, or why it could not: failures are data, not exceptions."""

    url: str
    status: int | None = None
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    duration_ms: float = 0.0
    error: str | None = None
    timed_out: bool = False
    # The body passed the forwarder's cap: `body` is its first bytes and the rest was not
    # read (the handler's status and headers are still its own).
    truncated: bool = False

    def attempt(
        self,
        delivery_id: str,
        kind: str,
        *,
        started_at: float | None = None,
        request_headers: Headers | None = None,
        request_body: bytes | None = None,
        note: str = "",
    ) -> Attempt:
        """This outcome as history: the one place a forward's or a replay's answer becomes an
        Attempt. Without `started_at`, the send began `duration_ms` ago."""
        if started_at is None:
            started_at = time.time() - self.duration_ms / 1000
        return Attempt(
            delivery_id=delivery_id,
            kind=kind,
            started_at=started_at,
            target_url=self.url,
            request_headers=[] if request_headers is None else request_headers,
            request_body=request_body,
            status=self.status,
            response_headers=self.headers,
            response_body=self.body,
            duration_ms=self.duration_ms,
            error=self.error,
            note=note,
        )


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


class _Conn:
    __slots__ = ("idle_since", "reader", "response", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response = ResponseParser()
        self.idle_since = time.monotonic()  # a handler's idle timer runs from the accept, too

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Forwarder:
    """Sends requests to one target; the only place the listener opens outbound sockets."""

    def __init__(
        self,
        target: Target,
        timeout: float = 10.0,
        max_connections: int = 32,
        max_response_body: int = MAX_RESPONSE_BODY,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.max_response_body = max_response_body
        self.keepalive_expiry = keepalive_expiry
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._ssl = ssl.create_default_context() if target.scheme == "https" else None

    async def send(
        self,
        method: str,
        tail: str,
        query: str,
        headers: Headers,
        body: bytes,
        *,
        remote: str = "",
        scheme: str = "",
        host: str = "",
        on_dispatch: Dispatch | None = None,
    ) -> Outcome:
        """Forward one request; never raises for network trouble or a bad request, it reports.

        `on_dispatch(write)` is awaited once, after the connection is ready and the request's
        bytes are built, and is handed `write`, which writes them. The listener records
        "handed to the handler" (group-committed with the deliveries of the same loop tick)
        and calls `write` synchronously right after that commit, so the record is durable
        before the handler can have the request and a crash between the two is a matter of
        microseconds. If it returns without calling `write`, the request is written then;
        if `write` finds the socket already closed by the handler, it writes nothing and the
        request goes out after on_dispatch returns, on a fresh socket. Once written, a
        request is never written again: a socket that ends before an answer is reported
        (status None, "connection closed before an answer"). It is not awaited if the request
        is refused or no connection could be made: nothing was sent. If it raises before
        calling `write`, nothing was sent either: the connection goes back to the pool and
        the exception propagates unchanged, which is how the listener aborts a send. Its wait
        counts against neither `timeout` nor `duration_ms`: both are about the handler.
        """
        url = self.target.url(tail, query)
        outcome = Outcome(url=url)
        started = time.perf_counter()
        wire_headers = prepare_headers(
            method, headers, body, self.target.netloc, remote=remote, scheme=scheme, host=host
        )
        try:
            head = request_head(method, self.target.request_target(tail, query), wire_headers)
        except UnsafeRequest as exc:
            outcome.error = str(exc)
            outcome.duration_ms = (time.perf_counter() - started) * 1000
            return outcome
        async with self._slots:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            conn = self._take_idle()
            if conn is None:  # the deadline context only when connecting: it costs ~5 µs
                try:
                    async with asyncio.timeout_at(deadline):
                        conn = await self._connect()
                except (TimeoutError, OSError) as exc:
                    return self._failed(outcome, exc, started)
            written = False
            if on_dispatch is not None:
                ready = conn

                def write() -> None:
                    # A socket the handler closed while on_dispatch waited gets nothing:
                    # the request then goes out once, on a fresh socket, after it returns.
                    nonlocal written
                    if not written and ready.usable():
                        written = True
                        _write(ready.writer, head, body)

                paused = time.perf_counter()
                try:
                    await on_dispatch(write)
                except BaseException:
                    if written or not conn.usable():
                        conn.close()
                    else:
                        self._idle.append(conn)  # nothing was written: it is still clean
                    raise
                waited = time.perf_counter() - paused
                started += waited
                deadline += waited
            try:
                async with asyncio.timeout_at(deadline):
                    if not written and not conn.usable():
                        # Found dead before a byte of this request was written: replacing
                        # it cannot make the handler see the request twice.
                        conn.close()
                        conn = await self._connect()
                    await self._exchange(conn, head, body, method == "HEAD", outcome, written)
            except (TimeoutError, OSError, BadResponse, ClosedBeforeAnswer) as exc:
                return self._failed(outcome, exc, started)
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return outcome

    def _failed(self, outcome: Outcome, exc: Exception, started: float) -> Outcome:
        """The outcome of a send that got no complete answer, saying why."""
        outcome.status = None
        outcome.headers = []
        outcome.body = b""
        if isinstance(exc, TimeoutError):
            outcome.timed_out = True
            outcome.error = (
                f"the local handler at {outcome.url} did not answer within {self.timeout:g} s"
            )
        else:
            outcome.error = _describe(exc, outcome.url)
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return outcome

    async def _exchange(
        self,
        conn: _Conn,
        head: bytes,
        body: bytes,
        head_request: bool,
        out: Outcome,
        written: bool,
    ) -> None:
        """Write the request (unless on_dispatch did) and read its response, exactly once:
        whatever goes wrong after the first byte is written is reported, never retried."""
        response = conn.response
        response.begin(head_request)
        writer = conn.writer
        cap = self.max_response_body
        try:
            if not written:
                _write(writer, head, body)
            await writer.drain()
            read = conn.reader.read
            while not response.done:
                data = await read(_READ_CHUNK)
                if data:
                    response.feed(data)
                    if response.size > cap:
                        break
                else:
                    response.feed_eof()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, ConnectionError) and not response.received:
                raise ClosedBeforeAnswer from exc  # a reset, not a FIN: the same for the sender
            raise
        out.status = response.status
        out.headers = response.headers
        out.body = response.body(cap)
        if response.size > cap:
            # The rest of the body may still be coming: the socket is out of step for good.
            out.truncated = True
            conn.close()
        else:
            self._release(conn)

    def _take_idle(self) -> _Conn | None:
        idle = self._idle
        oldest = time.monotonic() - self.keepalive_expiry
        while idle and idle[0].idle_since < oldest:  # the oldest are first
            idle.pop(0).close()
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(
            self.target.host,
            self.target.port,
            ssl=self._ssl,
            server_hostname=self.target.host if self._ssl else None,
            limit=_READ_CHUNK * 4,
        )
        return _Conn(reader, writer)

    def _release(self, conn: _Conn) -> None:
        response = conn.response
        if not response.keep_alive or response.dirty or not conn.usable():
            conn.close()
            return
        if response.head_request:
            # The parser still expects the body the HEAD response's Content-Length announced.
            conn.response = ResponseParser()
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _write(writer: asyncio.StreamWriter, head: bytes, body: bytes) -> None:
    if len(body) <= _COALESCE:
        writer.write(head + body if body else head)
    else:
        writer.write(head)
        writer.write(body)


def _describe(exc: BaseException, url: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {url} — is your handler running?"
    if isinstance(exc, BadResponse):
        return f"the handler at {url} sent invalid HTTP: {exc}"
    if isinstance(exc, ClosedBeforeAnswer):
        return (
            f"connection closed before an answer: the handler at {url} closed it after the "
            "request was written; not sent again, since the handler may have acted on it"
        )
    if isinstance(exc, ConnectionResetError):
        return f"the handler at {url} closed the connection without a complete response"
    return f"could not reach {url}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
