"""Hand a delivery to the local handler byte-for-byte, over HTTP/1.1 written with h11.

aiohttp's client merges repeated header names and moves Host first; h11 writes exactly the
header list it is given, so order, case and repeats survive. Connections are kept alive and
pooled: a webhook burst should not pay a TCP handshake per delivery.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

from hooktap.listen.target import Target, parse_target

__all__ = ["Forwarder", "Outcome", "Target", "parse_target", "prepare_headers"]

Headers = list[tuple[str, str]]

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
_READ_CHUNK = 1 << 18


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
    Content-Length matches the body, and X-Forwarded-For/-Proto/-Host say where it came from.
    Everything else keeps its position, case and repeats.
    """
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    drop = HOP_BY_HOP | named
    out: Headers = []
    seen_host = seen_length = False
    forwarded: dict[str, int] = {}
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
        elif lower in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"):
            forwarded[lower] = len(out)
        out.append((name, value))
    if not seen_host:
        out.insert(0, ("Host", netloc))
        forwarded = {k: v + 1 for k, v in forwarded.items()}
    if not seen_length and (body or method.upper() in ("POST", "PUT", "PATCH")):
        out.append(("Content-Length", str(len(body))))
    additions = (
        ("x-forwarded-for", "X-Forwarded-For", remote),
        ("x-forwarded-proto", "X-Forwarded-Proto", scheme),
        ("x-forwarded-host", "X-Forwarded-Host", host),
    )
    for lower, canonical, value in additions:
        if not value:
            continue
        if lower in forwarded and lower == "x-forwarded-for":
            idx = forwarded[lower]
            out[idx] = (out[idx][0], f"{out[idx][1]}, {value}")
        elif lower not in forwarded:
            out.append((canonical, value))
    return out


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
        )

    def close(self) -> None:
        self.writer.close()


class Forwarder:
    """Sends requests to one target; the only place the listener opens outbound sockets."""

    def __init__(self, target: Target, timeout: float = 10.0, max_connections: int = 32) -> None:
        self.target = target
        self.timeout = timeout
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
        on_dispatch: Callable[[], None] | None = None,
    ) -> Outcome:
        """Forward one request; never raises for network trouble, it reports it.

        `on_dispatch` runs once, synchronously, after the connection is ready and the request
        is serialized, immediately before its bytes go to the kernel. The listener records
        "handed to the handler" there, so a crash leaves the smallest possible window between
        that record and the handler actually having the request.
        """
        url = self.target.url(tail, query)
        outcome = Outcome(url=url)
        wire_headers = prepare_headers(
            method, headers, body, self.target.netloc, remote=remote, scheme=scheme, host=host
        )
        started = time.perf_counter()
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._exchange(
                        method, tail, query, wire_headers, body, outcome, on_dispatch
                    )
            except TimeoutError:
                outcome.timed_out = True
                outcome.status = None
                outcome.error = (
                    f"the local handler at {url} did not answer within {self.timeout:g} s"
                )
            except (
                OSError,
                h11.ProtocolError,
                asyncio.IncompleteReadError,
                _StaleConnection,
            ) as exc:
                outcome.status = None
                outcome.error = _describe(exc, url)
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        return outcome

    async def _exchange(
        self,
        method: str,
        tail: str,
        query: str,
        headers: Headers,
        body: bytes,
        out: Outcome,
        on_dispatch: Callable[[], None] | None,
    ) -> None:
        request = h11.Request(
            method=method.encode("latin-1"),
            target=self.target.request_target(tail, query).encode("latin-1"),
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        )
        for attempt in range(2):
            conn, reused = await self._acquire()
            try:
                await self._roundtrip(conn, request, body, out, on_dispatch)
                on_dispatch = None
            except (ConnectionError, asyncio.IncompleteReadError, _StaleConnection):
                on_dispatch = None  # it ran (or the write failed after it): never twice
                conn.close()
                # A kept-alive socket the server had already closed: retry once, fresh.
                if reused and attempt == 0 and out.status is None:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return

    async def _roundtrip(
        self,
        conn: _Conn,
        request: h11.Request,
        body: bytes,
        out: Outcome,
        on_dispatch: Callable[[], None] | None,
    ) -> None:
        data = conn.h11.send(request)
        if body:
            data += conn.h11.send(h11.Data(data=body))
        data += conn.h11.send(h11.EndOfMessage())
        if on_dispatch is not None:
            on_dispatch()
        conn.writer.write(data)
        await conn.writer.drain()
        chunks: list[bytes] = []
        got_any = False
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                raw = await conn.reader.read(_READ_CHUNK)
                if not raw and not got_any:
                    raise _StaleConnection
                got_any = True
                conn.h11.receive_data(raw)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                out.status = event.status_code
                out.headers = [
                    (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()
                ]
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                out.body = b"".join(chunks)
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the handler closed the connection mid-response")

    async def _acquire(self) -> tuple[_Conn, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        reader, writer = await asyncio.open_connection(
            self.target.host,
            self.target.port,
            ssl=self._ssl,
            server_hostname=self.target.host if self._ssl else None,
            limit=_READ_CHUNK * 4,
        )
        return _Conn(reader, writer), False

    def _release(self, conn: _Conn) -> None:
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                conn.close()
                return
            self._idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class _StaleConnection(Exception):
    pass


def _describe(exc: BaseException, url: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {url} — is your handler running?"
    if isinstance(exc, h11.ProtocolError):
        if "peer closed" in str(exc):
            return f"the handler at {url} closed the connection without a complete response ({exc})"
        return f"the handler at {url} sent invalid HTTP: {exc}"
    if isinstance(exc, (_StaleConnection, asyncio.IncompleteReadError, ConnectionResetError)):
        return f"the handler at {url} closed the connection without a complete response"
    return f"could not reach {url}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
