"""The one way a relay app is served: `hooktap relay`, the relay embedded in `hooktap listen`,
and the `--public` ingress a tunnel exposes all call `serve()`.

aiohttp's own site trusts its peers: it keeps a silent connection for an hour, accepts until
the process runs out of file descriptors (and then /healthz is refused with everyone else),
and logs a traceback for each malformed request. Here, on the same public aiohttp classes:

- a connection must send a complete request head within `idle_timeout` of opening or of its
  last answer, or it is closed. aiohttp's keep-alive timer does it: it runs from the moment
  a connection opens and fires while no complete head has arrived, so slow heads (slowloris)
  and idle keep-alives both end at it. A TLS handshake gets as long.
- open connections are capped, with headroom under the open-file limit (raised to its hard
  limit first, as Go does). At the cap a new connection closes the connection that has been
  idle longest (no request being handled or answered: never a listener's websocket or a
  sender waiting on its answer), so /healthz and senders still get in; if every connection
  is busy, the newcomer is answered 503 and closed.
- a request aiohttp cannot parse is answered with the relay's JSON and one rate-limited log
  line, not an HTML page and a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

from aiohttp import HttpVersion, HttpVersion10, HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError

from hooktap.relay import logs
from hooktap.relay.config import CONFIG, problem
from hooktap.relay.logs import note

# File descriptors kept free of connections: the database, the listening sockets, TLS
# handshakes not yet counted, outgoing connections (NATS), the log.
HEADROOM = 128
SHUTDOWN_TIMEOUT = 1.0
# A connection refused at the cap is kept this long to read its request (see _turn_away), and
# no more than this many at once: past it they are closed at once, reset or not.
LINGER = 1.0
MAX_LINGERING = 32

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
RequestFactory = Callable[..., web.BaseRequest]


def raise_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one (the kernel caps it anyway): ask for a
    # generous finite number instead.
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(asked: int | None) -> int:
    """`asked` (--max-connections), or what the open-file limit allows less headroom."""
    soft = raise_file_limit()
    allowed = soft - min(HEADROOM, soft // 2) if soft != resource.RLIM_INFINITY else 1 << 20
    if asked is None:
        return allowed
    if asked > allowed:
        note(
            logging.WARNING,
            "connection-cap",
            f"--max-connections {asked} is more than the open-file limit ({soft}) allows "
            f"with headroom; using {allowed}. Raise `ulimit -n` to allow more.",
            asked=asked,
            cap=allowed,
        )
        return allowed
    return asked


class Connections:
    """The open connections of one site, and which of them are idle, least recently active
    first: the order in which they are closed to make room."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: set[RelayProtocol] = set()
        self.idle: dict[RelayProtocol, None] = {}  # insertion order: least recently active first
        self.evicted = 0
        self.refused = 0
        self.lingering = 0  # refused connections reading what their client already sent

    def admit(self, conn: RelayProtocol) -> bool:
        """Make room for `conn` if need be; False if every open connection is busy."""
        while len(self.open) >= self.cap:
            if not self.idle:
                return False
            oldest = next(iter(self.idle))
            self.forget(oldest)
            oldest.force_close()
            self.evicted += 1
            _crowded(self, "closed the longest-idle connection to make room")
        self.open.add(conn)
        self.idle[conn] = None
        return True

    def forget(self, conn: RelayProtocol) -> None:
        self.open.discard(conn)
        self.idle.pop(conn, None)

    def busy(self, conn: RelayProtocol) -> None:
        self.idle.pop(conn, None)

    def active(self, conn: RelayProtocol) -> None:
        """`conn` is idle and was just heard from: the last to be closed now."""
        if conn in self.idle:
            del self.idle[conn]
            self.idle[conn] = None

    def rested(self, conn: RelayProtocol) -> None:
        if conn in self.open:
            self.idle[conn] = None


def _full(cap: int) -> bytes:
    body = json.dumps(
        {"error": f"all {cap} connections this relay allows are busy; retry in a moment"}
    ).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


class RelayProtocol(web.RequestHandler):
    """aiohttp's connection handler, counted against the site's cap and quiet on bad input."""

    def __init__(self, manager: web.Server, *, connections: Connections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._connections = connections
        self._busy = 0
        self._turned_away = False
        self._linger: asyncio.TimerHandle | None = None
        self._logged: web.BaseRequest | None = None

    # --- the cap -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._connections.admit(self):
            self._turn_away(cast(asyncio.Transport, transport))  # uvloop's is not a subclass
            return
        super().connection_made(transport)

    def _turn_away(self, transport: asyncio.Transport) -> None:
        """A raw 503; the connection is never handed to aiohttp."""
        conns = self._connections
        self._turned_away = True
        conns.refused += 1
        transport.write(_full(conns.cap))
        _crowded(conns, "answered a new connection 503")
        if conns.lingering < MAX_LINGERING and transport.can_write_eof():
            # Closing with the client's request unread makes the kernel send a reset, which
            # can destroy the 503 before the client reads it. So: half-close, discard what
            # comes, and close when the client does or LINGER s later.
            transport.write_eof()
            conns.lingering += 1
            self._linger = asyncio.get_running_loop().call_later(LINGER, transport.close)
        else:
            transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._turned_away:
            if self._linger is not None:
                self._linger.cancel()
                self._connections.lingering -= 1
            return
        self._connections.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._turned_away:
            return
        self._connections.active(self)
        super().data_received(data)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Held while a request is handled and while its answer is written: the connection
        is not closed to make room then."""
        self._busy += 1
        self._connections.busy(self)
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._connections.rested(self)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        with self.busy():
            return await super().finish_response(request, resp, start_time)

    # --- refusals and failures -----------------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: an answer has begun, none can follow
            raise ConnectionError("the response was already started; cannot send an error")
        if isinstance(exc, HttpProcessingError):
            reason = f"malformed request: {_first_clause(message or exc.message)}"
            logs.refused(status, reason, request.remote or "")
            self._logged = request  # its access line would say "UNKNOWN /" a second time
        elif status == 504:
            reason = "the relay timed out handling this request"
        else:
            reason = "the relay failed handling this request; the failure is in its log"
            self.log_exception("Error handling %s %s", request.method, request.path, exc_info=exc)
        resp = problem(status, reason)
        resp.force_close()
        return resp

    def log_access(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        if request is not self._logged:
            super().log_access(request, response, time)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A failure is a bug worth its traceback, but never a flood of them."""
        if logs.failures.allow():
            super().log_exception(*args, **kw)


def _first_clause(message: str) -> str:
    """The parser's reason without the bytes it quotes (which may hold a header's value)."""
    line = message.strip().splitlines()[0] if message.strip() else "unreadable request"
    return line.split(": ", 1)[0].rstrip(":.")[:200]


def _crowded(connections: Connections, what: str) -> None:
    if logs.crowding.allow():
        note(
            logging.WARNING,
            "connections-full",
            f"{what}: the relay is at its cap of {connections.cap} open connections "
            f"({connections.evicted} idle ones closed, {connections.refused} refused so far)",
            cap=connections.cap,
            evicted=connections.evicted,
            refused=connections.refused,
        )


class RelaySite(web.BaseSite):
    """A TCP site whose connections are `RelayProtocol`s under one cap."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        idle_timeout: float,
        cap: int,
        handler_kwargs: dict[str, Any],
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port = host, port
        self._idle_timeout = idle_timeout
        self._handler_kwargs = handler_kwargs
        self.connections = Connections(cap)

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None

        def connection() -> RelayProtocol:
            return RelayProtocol(
                manager, loop=loop, connections=self.connections, **self._handler_kwargs
            )

        tls = {"ssl_handshake_timeout": self._idle_timeout} if self._ssl_context else {}
        self._server = await loop.create_server(
            connection, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog, **tls
        )


def _tracking(handler: Handler) -> Handler:
    """The app's request handler, with its connection marked busy while it runs, and every
    refusal in the relay's shape: a request in an HTTP version the relay does not speak gets
    505, and aiohttp's own refusals (no route: 404, wrong method: 405, a body over the limit:
    413, an `Expect` other than 100-continue: 417), raised before or inside the app's
    middlewares, become `{"error": reason}` instead of a text/plain page."""

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        asked = request.get(ASKED_VERSION)
        if asked is not None:
            resp = problem(
                505, f"HTTP/{asked.major}.{asked.minor} is not spoken here; send HTTP/1.1"
            )
            resp.force_close()
            return resp
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            return _refusal(request, exc)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        conn = request.protocol
        if not isinstance(conn, RelayProtocol):
            return await answer(request)
        with conn.busy():
            return await answer(request)

    return handle


# The version a request asked for, when the relay does not speak it (see _in_http_11).
ASKED_VERSION = web.RequestKey("asked_version", HttpVersion)
_SPOKEN = (HttpVersion10, HttpVersion11)


def _in_http_11(factory: RequestFactory) -> RequestFactory:
    """aiohttp answers in the version a request line names, so `POST / HTTP/2.0` would get
    `HTTP/2.0 200` back, which no client reads. Such a request is made an HTTP/1.1 one that
    closes its connection, and remembers what it asked for, to be refused 505."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        asked = message.version
        if asked in _SPOKEN:
            return factory(message, payload, protocol, writer, task)
        message = message._replace(version=HttpVersion11, should_close=True)
        request = factory(message, payload, protocol, writer, task)
        request[ASKED_VERSION] = asked
        return request

    return make


# What a refusal's answer keeps from aiohttp's exception: the rest describe aiohttp's body.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Location")


def _refusal(request: web.BaseRequest, exc: web.HTTPException) -> web.Response:
    reason = _reason(request, exc)
    resp = problem(exc.status, reason)
    for name in _KEPT_HEADERS:
        if name in exc.headers:
            resp.headers[name] = exc.headers[name]
    if exc.status == 417:
        resp.force_close()  # the body the sender holds back is never read
    return resp


def _reason(request: web.BaseRequest, exc: web.HTTPException) -> str:
    path = request.rel_url.raw_path  # as sent, so a %0A shows as itself, not as a line break
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{exc.method} is not allowed on {path}; allowed: {allowed}"
    if exc.status == 404:
        return (
            f"nothing is served at {path}: webhooks go to /c/<channel>[/path], with no "
            "control characters in the path"
        )
    if exc.status == 417:
        return "the only Expect this relay meets is 100-continue"
    default = f"{exc.status}: {exc.reason}"
    return exc.text if exc.text and exc.text != default else exc.reason


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    access_log: bool = False,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
) -> web.AppRunner:
    """Serve `app` (one carrying a RelayConfig under CONFIG) on host:port under its limits;
    stop it with `drain.stop(runner)` or `runner.cleanup()`."""
    config = app[CONFIG]
    cap = connection_cap(config.max_connections)
    handler_kwargs: dict[str, Any] = {
        "keepalive_timeout": config.idle_timeout,
        "access_log": logging.getLogger("hooktap.relay.access") if access_log else None,
        "access_log_class": logs.AccessLogger,
    }
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=shutdown_timeout, **handler_kwargs
    )
    await runner.setup()
    try:
        assert runner.server is not None
        runner.server.request_handler = _tracking(runner.server.request_handler)
        runner.server.request_factory = _in_http_11(runner.server.request_factory)
        site = RelaySite(
            runner,
            host,
            port,
            ssl_context=ssl_context,
            idle_timeout=config.idle_timeout,
            cap=cap,
            handler_kwargs=handler_kwargs,
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
