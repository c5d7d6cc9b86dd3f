"""Hand a delivery to the local handler byte-for-byte, over HTTP/1.1, in steps the listener
can put its record between: prepare the request, open an exchange (a slot and a connection),
write, read the answer.

The head is built and checked against the HTTP grammar by `http_request` (which says why
by hand). Responses are parsed by httptools (`http_response`). Connections are kept alive and
pooled: a webhook burst should not pay a TCP handshake per delivery. A request is written at
most once: a kept-alive socket found dead before writing is replaced, but one that ends after
the request went out is reported, since the handler may have acted on what it read.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field

from hooktap.listen.http_request import UnsafeRequest, prepare_headers, request_head
from hooktap.listen.http_response import BadResponse, ClosedBeforeAnswer, ResponseParser
from hooktap.listen.target import Target
from hooktap.records import Attempt, Headers

__all__ = ["MAX_RESPONSE_BODY", "Exchange", "Forwarder", "Outcome", "Request"]

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

    def prepare(
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
    ) -> Request:
        """The request as the handler will get it (see prepare_headers), its head checked
        against the HTTP grammar: one that fails is never written, and says why."""
        started = time.perf_counter()
        url = self.target.url(tail, query)
        wire_headers = prepare_headers(
            method, headers, body, self.target.netloc, remote=remote, scheme=scheme, host=host
        )
        try:
            head = request_head(method, self.target.request_target(tail, query), wire_headers)
        except UnsafeRequest as exc:
            return Request(url, b"", body, False, started, str(exc))
        return Request(url, head, body, method == "HEAD", started)

    def open(self, request: Request) -> Exchange:
        """`async with forwarder.open(request) as exchange`: a slot and a connection for it
        (see Exchange)."""
        return Exchange(self, request)

    async def send(
        self, method: str, tail: str, query: str, headers: Headers, body: bytes
    ) -> Outcome:
        """Forward one request and report; never raises for network trouble or a bad request.
        For a sender with nothing to do between connecting and writing (hooktap replay)."""
        async with self.open(self.prepare(method, tail, query, headers, body)) as exchange:
            return await exchange.answer()

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


class Request:
    """One request, prepared: its head built and checked, ready to write. `unsafe` says why
    it may not be written (then `head` is empty and it never is)."""

    __slots__ = ("body", "head", "head_request", "started", "unsafe", "url")

    def __init__(
        self,
        url: str,
        head: bytes,
        body: bytes,
        head_request: bool,
        started: float,
        unsafe: str | None = None,
    ) -> None:
        self.url = url
        self.head = head
        self.body = body
        self.head_request = head_request  # a HEAD: its answer has no body to read
        self.started = started  # perf_counter when prepared: duration_ms counts from here
        self.unsafe = unsafe


class Exchange:
    """One request's turn with the handler, for `async with forwarder.open(request)`.

    Entering waits for a forwarding slot and takes a kept-alive connection or opens one;
    `ready` says whether it has one (not for an unsafe request, nor when connecting failed:
    then `answer()` only reports why, and nothing was sent). Between entering and `answer()`
    the caller may do what must come before the handler can see the request (the listener
    commits its record), and may call `write()`: that time counts against neither `timeout`
    nor `duration_ms`, which are about the handler. Leaving frees the slot; a connection
    nothing was written to goes back to the pool, so an exchange left unanswered costs the
    handler nothing. A request is written at most once, whatever happens.
    """

    __slots__ = (
        "_conn",
        "_deadline",
        "_forwarder",
        "_opened",
        "outcome",
        "ready",
        "request",
        "written",
    )

    def __init__(self, forwarder: Forwarder, request: Request) -> None:
        self._forwarder = forwarder
        self.request = request
        self.outcome = Outcome(url=request.url)
        self.ready = False
        self.written = False
        self._conn: _Conn | None = None  # while this exchange holds one
        self._deadline = 0.0
        self._opened = 0.0

    async def __aenter__(self) -> Exchange:
        forwarder, request = self._forwarder, self.request
        if request.unsafe is not None:
            self.outcome.error = request.unsafe
            self.outcome.duration_ms = (time.perf_counter() - request.started) * 1000
            return self
        await forwarder._slots.acquire()
        try:
            self._deadline = asyncio.get_running_loop().time() + forwarder.timeout
            conn = forwarder._take_idle()
            if conn is None:  # the deadline context only when connecting: it costs ~5 µs
                async with asyncio.timeout_at(self._deadline):
                    conn = await forwarder._connect()
        except BaseException as exc:
            forwarder._slots.release()
            # UnicodeError: a host name the idna codec refuses (`api..local`), from the
            # resolver; a failed delivery like any unreachable handler, not a traceback.
            if not isinstance(exc, (TimeoutError, OSError, UnicodeError)):
                raise
            forwarder._failed(self.outcome, exc, request.started)
            return self
        self._conn = conn
        self.ready = True
        self._opened = time.perf_counter()
        return self

    def write(self) -> None:
        """Put the request on the wire now, synchronously: the listener calls it in the very
        callback that commits its record. Once only; nothing once the exchange is over, nor
        on a socket the handler closed meanwhile (answer() then sends it on a fresh one)."""
        conn = self._conn
        if conn is not None and not self.written and conn.usable():
            self.written = True
            _write(conn.writer, self.request.head, self.request.body)

    async def answer(self) -> Outcome:
        """Write the request unless write() did, read the handler's response, and report it;
        never raises for network trouble. Whatever goes wrong after the first byte is written
        is reported, never retried: the handler may have acted on what it read."""
        outcome, conn = self.outcome, self._conn
        if conn is None:
            return outcome  # never connected (or refused): the outcome says why
        forwarder, request = self._forwarder, self.request
        waited = time.perf_counter() - self._opened  # the caller's time, not the handler's
        started = request.started + waited
        cap = forwarder.max_response_body
        try:
            async with asyncio.timeout_at(self._deadline + waited):
                if not self.written and not conn.usable():
                    # Found dead before a byte of this request was written: replacing it
                    # cannot make the handler see the request twice.
                    self._conn = None
                    conn.close()
                    self._conn = conn = await forwarder._connect()
                response = conn.response
                response.begin(request.head_request)
                writer = conn.writer
                try:
                    if not self.written:
                        self.written = True
                        _write(writer, request.head, request.body)
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
                    self._conn = None
                    conn.close()
                    if isinstance(exc, ConnectionError) and not response.received:
                        raise ClosedBeforeAnswer from exc  # a reset, not a FIN: the same
                    raise
        except (TimeoutError, OSError, BadResponse, ClosedBeforeAnswer) as exc:
            return forwarder._failed(outcome, exc, started)
        self._conn = None
        outcome.status = response.status
        outcome.headers = response.headers
        outcome.body = response.body(cap)
        if response.size > cap:
            # The rest of the body may still be coming: the socket is out of step for good.
            outcome.truncated = True
            conn.close()
        else:
            forwarder._release(conn)
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return outcome

    async def __aexit__(self, *_exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # not answered
            if self.written or not conn.usable():
                conn.close()
            else:
                self._forwarder._idle.append(conn)  # nothing was written: it is still clean
        if self.ready:
            self._forwarder._slots.release()


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
    if isinstance(exc, UnicodeError):
        return f"could not reach {url}: its host is not a valid host name ({exc})"
    return f"could not reach {url}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
