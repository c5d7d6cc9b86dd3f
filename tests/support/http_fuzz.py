"""Hostile HTTP/1.1 for the relay's ingress: a seeded generator of connections (valid and
malformed requests, pipelined or not, whole or cut short), a raw-socket client that sends one
and reads what comes back, and a raw handler that records each request it is forwarded as
bytes, so "byte-exact" is checked on bytes and not on what a parser made of them.

Shared by tests/internet/test_ingress_fuzz.py and benchmarks/abuse.py. Every connection is
drawn from `random.Random(seed)`: a failure reproduces from the seed and the connection's
number, which the test prints.

Each message carries what the relay may do with it. `target` is the request target the
handler must see if the relay accepts it (the path tail after /c/CHANNEL and the query, as
sent), None when it is not for the channel; `body` is the body the handler must get, None
when the framing is ambiguous or broken and accepting it would be a fault (conflicting
Content-Lengths, a space in the target). `clean` marks a request that nothing is wrong with,
which the relay must accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

SEQ_HEADER = "X-Fuzz-Seq"
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Handler: recorded\r\n\r\nok"
_HEAD_LIMIT = 1 << 20


@dataclass
class Message:
    seq: int | None
    method: str
    raw: bytes
    target: str | None  # what the handler must see as the request target; None: not a delivery
    body: bytes | None  # what the handler must get; None: must not be accepted
    complete: bool = True  # whole, so the relay owes it an answer
    clean: bool = False  # nothing wrong with it: the relay must accept it
    label: str = ""


@dataclass
class Connection:
    number: int
    messages: list[Message]
    half_close: bool = False  # shut our side after sending (a client that gives up)
    splits: list[int] = field(default_factory=list)  # write in pieces at these offsets
    # A message the last one's wrong Content-Length leaves in the stream: its answer must not
    # be a delivery (that would be request smuggling).
    leftover: bool = False


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


@dataclass
class Exchange:
    connection: Connection
    responses: list[Response]
    error: str = ""  # the server's bytes were not HTTP (a fault), or how reading ended


# -- the generator -----------------------------------------------------------------------------

_TAILS = [
    "", "/", "/hook", "/a/b/c", "/%0A", "/a%0Ab", "/%00", "/x%00y", "//", "//x//y",
    "/%2F%2e%2e", "/../x", "/./x", "/%", "/%zz", "/;p=1", "/~!$&'()*+,;=:@", "/%C3%A9",
]  # fmt: skip
_QUERIES = ["", "", "", "?a=1", "?", "?a=1&a=2", "?q=%0A%00", "?x=%zz", "?a=b?c=d", "?=&="]
_OTHER_TARGETS = [
    "/c/nope/x", "/c/nope", "/healthz", "/metrics", "/readyz", "/api/channels", "/", "*",
    "/c/", "/c//x", "relative/path", "/favicon.ico", "http://evil/healthz", "/%00", "/c/%0A",
]  # fmt: skip
_METHODS = ["POST"] * 10 + ["PUT", "PATCH", "GET", "DELETE", "OPTIONS"]
# Tokens, so HTTP allows them, but a parser may know only the registered methods.
_ODD_METHODS = ["post", "X-CUSTOM", "PROPFIND", "CONNECT", "TRACE"]
_BAD_METHODS = ["GE T", "", "P\x00ST", "PO(ST", "M" * 1000, "ПОСТ"]
_BAD_VERSIONS = ["HTTP/11", "HTTP", "", "http/1.1", "HTTP/1.1 x", "HTTP/1.1\x00"]
# Well-formed but not 1.1: a server may take them (as 1.x), answer 505, or refuse.
_ODD_VERSIONS = ["HTTP/1.0", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/0.9"]
_FRAMING_FAULTS = [
    "cl-dup", "cl-bad", "cl-conflict", "cl-short", "cl-long", "chunked-bad", "chunked-open",
    "te-and-cl",
]  # fmt: skip
_BAD_LENGTHS = ["abc", "-1", "1e3", "0x10", "+5", "5,6", "9" * 30]
_BAD_NAMES = [b"Bad Name", b"\x00", b"(x)", b"\xc3\xa9", b"", b"X\x7fY", b"{}"]
_BAD_VALUES = [b"a\x00b", b"a\rb", b"\x00"]
_BAD_CHUNKS = [b"zz\r\nab\r\n", b"-1\r\n", b"ffffffffffffffffffff\r\n", b"2\r\nabc\r\n"]
_GARBAGE = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # a TLS ClientHello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"GET / HTTP/1.1",  # never finished
    b"",  # connect, then nothing
    b"\x00" * 64,
    b"POST /c/CH HTTP/1.1\r\nContent-Length: 5\r\n\r\n",  # a body that never comes
]


class Generator:
    """Connections of hostile HTTP for one relay channel, all drawn from one seed."""

    def __init__(self, seed: int, channel: str, host: str, max_body: int = 1 << 20) -> None:
        self.seed = seed
        self.channel = channel
        self.host = host
        self.max_body = max_body  # the relay's --max-body-mb: bodies just past it are drawn
        self.random = random.Random(seed)
        self.count = 0

    def connection(self) -> Connection:
        r = self.random
        number = self.count
        self.count += 1
        if r.random() < 0.08:
            return self._garbage(number)
        messages = [self._message(number * 10)]
        # Pipelined: only behind a message whose end is not in doubt.
        while len(messages) < 3 and _pipelines(messages[-1]) and r.random() < 0.12:
            messages.append(self._message(number * 10 + len(messages)))
        conn = Connection(number, messages)
        last = messages[-1]
        if last.label == "cl-short":
            conn.leftover = True
        if not last.complete or r.random() < 0.05:
            conn.half_close = r.random() < 0.5
        if r.random() < 0.3:
            size = sum(len(m.raw) for m in messages)
            conn.splits = sorted(r.randrange(size + 1) for _ in range(r.randint(1, 3)))
        return conn

    def _garbage(self, number: int) -> Connection:
        r = self.random
        if r.random() < 0.5:
            raw = r.choice(_GARBAGE).replace(b"/c/CH", f"/c/{self.channel}".encode())
        else:
            raw = r.randbytes(r.choice([1, 16, 300, 5000]))
        return Connection(
            number,
            [Message(None, "?", raw, None, None, complete=False, label="garbage")],
            half_close=r.random() < 0.5,
        )

    # -- one message ---------------------------------------------------------------------------

    def _message(self, seq: int) -> Message:
        r = self.random
        method = r.choice(_METHODS) if r.random() < 0.95 else r.choice(["HEAD", *_ODD_METHODS])
        bad = r.random() < 0.03  # a request line that is not HTTP: nothing to deliver
        if bad:
            method = r.choice(_BAD_METHODS)
        raw_target, target, ordinary = self._target()
        bad |= any(c in raw_target for c in b" \t")
        version = "HTTP/1.1"
        if r.random() < 0.03:
            version, bad = r.choice(_BAD_VERSIONS), True
        elif r.random() < 0.05:
            version = r.choice(_ODD_VERSIONS)
        headers: list[tuple[bytes, bytes]] = []
        hosted = r.random() < 0.95  # HTTP/1.1 requires Host; a parser may refuse without it
        if hosted:
            headers.append((b"Host", self.host.encode()))
        headers += [(SEQ_HEADER.encode(), str(seq).encode()), (b"Content-Type", b"text/plain")]
        junk, junk_bad = self._junk_headers()
        headers += junk
        body = b"" if method == "HEAD" else self._body()
        label, framing, wire_body, expected, complete = self._framing(body, version)
        for header in framing:
            headers.insert(r.randrange(len(headers) + 1), header)
        eol = b"\n" if r.random() < 0.03 else b"\r\n"  # bare LF: tolerated by some parsers
        head = f"{method} ".encode() + raw_target + f" {version}".encode() + eol
        head += b"".join(name + b": " + value + eol for name, value in headers) + eol
        bad |= junk_bad
        clean = (
            not bad
            and ordinary
            and method in _METHODS
            and version == "HTTP/1.1"
            and eol == b"\r\n"
            and hosted
            and not junk
            and label in ("cl", "chunked", "none")
            and expected is not None
            and len(body) <= self.max_body
        )
        return Message(
            seq,
            method,
            head + wire_body,
            target,
            None if bad else expected,
            complete,
            clean,
            label,
        )

    def _target(self) -> tuple[bytes, str | None, bool]:
        """The request target as sent; what the handler must see for it (None: not for the
        channel); and whether it is an ordinary one that the relay must deliver."""
        r = self.random
        if r.random() < 0.2:
            other = r.choice(_OTHER_TARGETS)
            if r.random() < 0.1:
                other = "/" + "x" * r.randint(8000, 12000)
            return other.encode(), None, False
        tail = r.choice(_TAILS[:4] if r.random() < 0.7 else _TAILS)
        ordinary = tail in _TAILS[:4]
        pick = r.random()
        if pick < 0.05:
            tail = "/" + "a" * r.randint(1000, 6000)
        elif pick < 0.08:
            # Spaces inside only: a space that ends the target may be read as the separator
            # (RFC 9112 3 lets a parser split on whitespace), and then nothing is wrong.
            tail = "/" + "".join(r.choice("abc%/é\xff ") for _ in range(r.randint(1, 20)))
            tail = tail.rstrip()
            ordinary = False
        elif pick < 0.15:
            tail = "/" + "".join(r.choice("abcXYZ019-._~!$&'()*+,;=:@/") for _ in range(20))
            ordinary = True
        query = r.choice(_QUERIES[:6] if r.random() < 0.6 else _QUERIES)
        ordinary &= query in _QUERIES[:6]
        prefix = f"/c/{self.channel}"
        if r.random() < 0.1:
            prefix = r.choice(["http://evil", "http://evil:80", "HTTP://127.0.0.1:1"]) + prefix
            ordinary = False
        raw = (prefix + tail + query).encode()
        path = tail.encode().decode("latin-1")  # the forwarder writes its head in latin-1
        return raw, (path or "/") + (f"?{query[1:]}" if query[1:] else ""), ordinary

    def _junk_headers(self) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Extra headers, and whether any breaks the grammar (then the request is no delivery)."""
        r = self.random
        out: list[tuple[bytes, bytes]] = []
        bad = False
        for _ in range(r.choice([0, 0, 0, 0, 0, 1, 2, 5])):
            kind = r.random()
            if kind < 0.3:  # a repeat of an ordinary header
                out.append((r.choice([b"Content-Type", b"Accept", b"X-A"]), b"text/plain"))
            elif kind < 0.5:  # svix headers with junk in them
                name = r.choice([b"svix-id", b"svix-timestamp", b"svix-signature", b"webhook-id"])
                out.append((name, r.choice([b"", b"v1,", b"nan", b"msg_" + b"x" * 300])))
            elif kind < 0.65:  # obs-text (bytes 0x80-0xff): legal in a value
                out.append((b"X-Bytes", bytes(r.randrange(0x80, 0x100) for _ in range(8))))
            elif kind < 0.72:
                out.append((b"X-Huge", b"h" * r.choice([4000, 9000, 100_000])))
            elif kind < 0.77:
                out += [(f"X-Many-{i}".encode(), b"1") for i in range(r.choice([50, 150]))]
            elif kind < 0.87:
                out.append((r.choice(_BAD_NAMES), b"v"))
                bad = True
            elif kind < 0.95:
                out.append((b"X-Bad", r.choice(_BAD_VALUES)))
                bad = True
            else:
                out.append((r.choice([b"Connection", b"Expect", b"Upgrade"]), b"x-junk"))
        if r.random() < 0.03:
            out.append((b"Expect", b"100-continue"))
        return out, bad

    def _body(self) -> bytes:
        r = self.random
        pick = r.random()
        if pick < 0.25:
            return b""
        if pick < 0.7:
            return r.randbytes(r.randint(1, 2000))
        if pick < 0.9:
            return b'{"id": "evt_1", "type": "customer.at_risk", "n": %d}' % r.randrange(10**9)
        if pick < 0.98:
            return r.randbytes(r.choice([65_536, 300_000]))
        return r.randbytes(self.max_body + 1)

    def _framing(
        self, body: bytes, version: str
    ) -> tuple[str, list[tuple[bytes, bytes]], bytes, bytes | None, bool]:
        """(label, framing headers, body bytes on the wire, body the handler must get or None,
        whether the message is whole)."""
        r = self.random
        n = len(body)
        if version == "HTTP/1.0":
            label = r.choice(["cl", "none"])  # chunked is HTTP/1.1's
        elif r.random() < 0.7:
            label = r.choice(["cl", "cl", "cl", "chunked", "none"])
        else:
            label = r.choice(_FRAMING_FAULTS)
        cl = b"Content-Length"
        if label == "none" or (not body and label in ("cl-short", "cl-long")):
            return "none", [], b"", b"", True  # no framing: no body, whatever was drawn
        if label == "cl":
            return "cl", [(r.choice([cl, b"content-length"]), str(n).encode())], body, body, True
        if label == "cl-dup":  # the same value twice: RFC 9110 lets a recipient take it
            return label, [(cl, str(n).encode()), (cl, str(n).encode())], body, body, True
        if label == "cl-bad":
            return label, [(cl, r.choice(_BAD_LENGTHS).encode())], body, None, True
        if label == "cl-conflict":
            return label, [(cl, str(n).encode()), (cl, str(n + 1).encode())], body, None, True
        if label == "cl-short":  # what is past the length is the next "request" on the socket
            short = r.randrange(n)
            return label, [(cl, str(short).encode())], body, body[:short], True
        if label == "cl-long":
            return label, [(cl, str(n + r.randint(1, 100)).encode())], body, None, False
        te = (b"Transfer-Encoding", r.choice([b"chunked", b"Chunked", b"CHUNKED"]))
        chunked = _chunked(r, body)
        if label == "chunked":
            return label, [te], chunked, body, True
        if label == "te-and-cl":  # RFC 9112 6.3: chunked wins (or the request is refused)
            lying = (cl, str(len(chunked) + r.randint(-5, 5)).encode())
            return label, [te, lying], chunked, body, True
        if label == "chunked-open":
            return label, [te], chunked[: -len(b"0\r\n\r\n")], None, False
        return label, [te], r.choice(_BAD_CHUNKS) + b"0\r\n\r\n", None, False


def _pipelines(message: Message) -> bool:
    """Whether another request may follow this one on its connection: not after a message
    whose end is in doubt, nor after HEAD (an answer to it has no body, even a refusal)."""
    return message.label in ("cl", "chunked", "cl-dup") and message.method != "HEAD"


def _chunked(r: random.Random, body: bytes) -> bytes:
    out, i = [], 0
    while i < len(body):
        size = r.randint(1, max(1, len(body) // 3 + 1))
        piece = body[i : i + size]
        ext = b";a=b" if r.random() < 0.1 else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        i += size
    trailer = b"X-Trailer: t\r\n" if r.random() < 0.1 else b""
    return b"".join(out) + b"0\r\n" + trailer + b"\r\n"


# -- the client --------------------------------------------------------------------------------


async def exchange(
    host: str, port: int, conn: Connection, wait: float = 15.0, give_up: float = 1.0
) -> Exchange:
    """Send one connection's bytes and read the answers: `wait` s for each whole message's,
    `give_up` s for an unfinished one's (the relay owes it nothing) and for leftovers'."""
    result = Exchange(conn, [])
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=_HEAD_LIMIT), wait
        )
    except (OSError, TimeoutError) as exc:
        result.error = f"connect: {exc!r}"
        return result
    try:
        await _send(writer, conn)
        expected = [*conn.messages, *([None] if conn.leftover else [])]
        for message in expected:
            patience = wait if message is not None and message.complete else give_up
            method = message.method if message is not None else "POST"
            response = await asyncio.wait_for(_read_response(reader, method), patience)
            if response is None:
                break
            result.responses.append(response)
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:  # resets included
        result.error = f"read: {type(exc).__name__}"
    except ValueError as exc:  # not an HTTP response
        result.error = f"not HTTP: {exc}"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return result


async def request(host: str, port: int, data: bytes, timeout: float = 30.0) -> Response | str:
    """One request of raw bytes on its own connection: the answer, or what happened instead
    (a reset, a timeout, a close without an answer), in words."""
    method = data.split(b" ", 1)[0].decode("latin-1")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=_HEAD_LIMIT)
            try:
                writer.write(data)
                await writer.drain()
                response = await _read_response(reader, method)
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        return type(exc).__name__
    return response if response is not None else "closed without an answer"


async def _send(writer: asyncio.StreamWriter, conn: Connection) -> None:
    data = b"".join(m.raw for m in conn.messages)
    start = 0
    for cut in [*conn.splits, len(data)]:
        writer.write(data[start:cut])
        await writer.drain()
        if cut != len(data):
            await asyncio.sleep(0.001)
        start = cut
    if conn.half_close and writer.can_write_eof():
        writer.write_eof()


async def _read_response(reader: asyncio.StreamReader, method: str) -> Response | None:
    """One response; None at a clean end of stream. Interim 1xx answers are skipped."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                cut = exc.partial[:80]
                raise ValueError(f"stream ended inside a response head: {cut!r}") from None
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        # "HTTP/1." only, strictly, though aiohttp echoes a request's "HTTP/2.0" back into
        # its status line: a client could not read that; it is reported, not taken.
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        fields = (line.partition(":") for line in lines[1:] if line)
        headers = [(name.strip(), value.strip()) for name, _, value in fields]
        response = Response(status, headers, b"")
        if 100 <= status < 200 and status != 101:
            continue
        break
    if method == "HEAD" or status in (204, 304) or status < 200:
        return response
    if (response.header("Transfer-Encoding") or "").lower() == "chunked":
        while size := int((await reader.readline()).split(b";")[0], 16):
            response.body += await reader.readexactly(size)
            await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
    elif (length := response.header("Content-Length")) is not None:
        response.body = await reader.readexactly(int(length))
    else:
        response.body = await reader.read()
    return response


# -- the handler -------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def seq(self) -> int | None:
        values = [v for n, v in self.headers if n.lower() == SEQ_HEADER.lower().encode()]
        return int(values[0]) if len(values) == 1 and values[0].isdigit() else None


@dataclass
class RawHandler:
    """Where the listener forwards to: every request as the bytes that arrived, answered 200.
    The listener writes Content-Length on every request with a body, so that is all it reads."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    _open: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open[writer] = asyncio.current_task()  # type: ignore[assignment]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *lines = head[:-4].split(b"\r\n")
                method, target, _ = first.split(b" ", 2)
                headers = [(n.strip(), v.strip()) for n, _, v in (x.partition(b":") for x in lines)]
                length = next((int(v) for n, v in headers if n.lower() == b"content-length"), 0)
                body = await reader.readexactly(length)
                self.requests.append(Recorded(method, target, headers, body))
                writer.write(_OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._open.pop(writer, None)
            writer.close()

    async def close(self) -> None:
        """End the connections the listener keeps open to us: their readers see the end of
        the stream, rather than being cancelled when the loop closes."""
        tasks = list(self._open.values())
        for writer in list(self._open):
            writer.transport.abort()
        await asyncio.wait(tasks, timeout=5) if tasks else None


@contextlib.asynccontextmanager
async def raw_handler() -> AsyncIterator[RawHandler]:
    handler = RawHandler()
    server = await asyncio.start_server(handler._serve, "127.0.0.1", 0, limit=_HEAD_LIMIT)
    handler.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield handler
    finally:
        server.close()
        await handler.close()
        await server.wait_closed()
