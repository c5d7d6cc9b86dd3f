"""The forwarder against raw HTTP servers that misbehave the ways real handlers do.

Every server here is a real socket on 127.0.0.1, port 0, writing hand-made bytes, so what is
tested is what goes over the wire: responses in each framing, broken ones, and the sockets
kept alive between them. The request head has its own file, test_forward_request.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time

import pytest
from raw_http import OK, answer, counter, in_steps, raw_server

from hooktap.listen.forward import Exchange, Forwarder
from hooktap.listen.target import parse_target

# --- framing ---------------------------------------------------------------------------------


async def test_keep_alive_is_reused_and_chunked_responses_are_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with raw_server(answer(chunked)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        for _ in range(3):
            out = await fwd.send("POST", "/x", "", [("Content-Type", "text/plain")], b"hi")
            assert out.status == 200 and out.body == b"hello world" and out.error is None
            # Original order and case, repeats kept; the trailer is not a header.
            assert out.headers == [("Transfer-Encoding", "chunked"), ("X-A", "1"), ("x-a", "2")]
        await fwd.close()
    assert len(server.requests) == 3 and server.connections == 1


async def test_response_headers_are_latin1_in_order_with_repeats() -> None:
    response = (
        b"HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nX-Name: caf\xe9\r\nset-cookie: b=2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with raw_server(answer(response)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await fwd.send("POST", "", "", [], b"{}")
        await fwd.close()
    assert out.status == 201 and out.body == b""
    assert out.headers == [
        ("Set-Cookie", "a=1"),
        ("X-Name", "café"),
        ("set-cookie", "b=2"),
        ("Content-Length", "0"),
    ]


async def test_a_body_delimited_by_close_is_complete_and_the_socket_is_not_reused() -> None:
    async def reply(writer: asyncio.StreamWriter, _req: bytes, _i: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"second part")
        await writer.drain()
        return False  # the close is what ends the body

    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        for _ in range(2):
            out = await fwd.send("POST", "", "", [], b"{}")
            assert out.error is None and out.status == 200
            assert out.body == b"first part, second part"
        await fwd.close()
    assert server.connections == 2 and len(server.requests) == 2


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
    ],
)
async def test_interim_1xx_responses_are_skipped_for_the_final_one(interim: bytes) -> None:
    async def reply(writer: asyncio.StreamWriter, _req: bytes, _i: int) -> bool:
        writer.write(interim)
        await writer.drain()
        await asyncio.sleep(0.01)  # the final response arrives in a read of its own
        writer.write(b"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return True

    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        for _ in range(2):
            out = await fwd.send("POST", "", "", [], b"{}")
            assert out.error is None and out.status == 200 and out.body == b"ok"
            assert out.headers == [("X-Final", "yes"), ("Content-Length", "2")]
        await fwd.close()
    assert server.connections == 1


async def test_interim_and_final_response_in_one_read() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    async with raw_server(answer(data)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await fwd.send("POST", "", "", [], b"{}")
        out2 = await fwd.send("POST", "", "", [], b"{}")
        await fwd.close()
    assert out.status == 202 and out.headers == [("Content-Length", "0")] and out.body == b""
    assert out2.status == 202 and server.connections == 1


async def test_head_response_has_no_body_and_the_connection_is_reused() -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes, _i: int) -> bool:
        if request.startswith(b"HEAD "):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else:
            writer.write(OK)
        await writer.drain()
        return True

    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.error is None and out.status == 200 and out.body == b""
        assert out.headers == [("Content-Length", "1000")]
        # The next exchange on the same socket parses from a clean slate.
        out = await fwd.send("POST", "/p", "", [], b"{}")
        assert out.error is None and out.status == 200 and out.body == b"ok"
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.status == 200 and out.body == b""
        await fwd.close()
    assert server.connections == 1 and len(server.requests) == 3


async def test_head_response_and_connection_close_is_honoured() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
    async with raw_server(answer(head, keep=False)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.status == 200 and out.body == b""
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.status == 200
        await fwd.close()
    assert server.connections == 2


async def test_a_body_sent_after_a_head_response_is_ignored_and_the_socket_dropped() -> None:
    wrong = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"
    async with raw_server(answer(wrong)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.status == 200 and out.body == b"" and out.error is None
        out = await fwd.send("HEAD", "/h", "", [], b"")
        assert out.status == 200 and out.body == b""
        await fwd.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",  # 204 has no body, whatever
    ],
)
async def test_204_and_304_have_no_body_and_keep_the_connection(response: bytes) -> None:
    async with raw_server(answer(response)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=2)
        for _ in range(3):
            out = await fwd.send("POST", "", "", [], b"{}")
            assert out.error is None and out.status in (204, 304) and out.body == b""
        await fwd.close()
    assert server.connections == 1


async def test_connection_close_responses_are_not_pooled() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    for response in (close, http10):
        # keep=True: the server would take another request; the client must not offer one.
        async with raw_server(answer(response, keep=True)) as server:
            fwd = Forwarder(parse_target(server.target), timeout=5)
            for _ in range(2):
                out = await fwd.send("POST", "", "", [], b"{}")
                assert out.status == 200 and out.body == b"ok"
            await fwd.close()
        assert server.connections == 2


async def test_bytes_after_a_complete_response_drop_the_socket() -> None:
    async with raw_server(answer(OK + b"HTTP/1.1 200 OK\r\n")) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        for _ in range(2):
            out = await fwd.send("POST", "", "", [], b"{}")
            assert out.status == 200 and out.body == b"ok" and out.error is None
        await fwd.close()
    assert server.connections == 2


async def test_ten_megabytes_each_way_byte_exact() -> None:
    body = hashlib.sha256(b"seed").digest() * (10 * 1024 * 1024 // 32) + b"tail"

    async def echo(writer: asyncio.StreamWriter, request: bytes, _i: int) -> bool:
        got = request.split(b"\r\n\r\n", 1)[1]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(got) + got)
        await writer.drain()
        return True

    async with raw_server(echo) as server:
        # A cap above the body: the default (1 MiB) would cut the echo short.
        fwd = Forwarder(parse_target(server.target), timeout=30, max_response_body=len(body))
        out = await fwd.send("POST", "/big", "", [("Content-Type", "application/json")], body)
        assert out.error is None and out.status == 200 and not out.truncated
        assert len(out.body) == len(body) and out.body == body
        out = await fwd.send("POST", "/small", "", [], b"{}")  # the socket is still in step
        assert out.body == b"{}"
        await fwd.close()
    assert server.requests[0].endswith(b"\r\n\r\n" + body) and server.connections == 1


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply_bytes", "words"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "invalid HTTP"),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "invalid HTTP"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
            "invalid HTTP",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "invalid HTTP"),
        (b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n", "101"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "invalid HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "without a complete response"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            "without a complete response",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "without a complete response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "without a complete response"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "without a complete response"),
        (b"", "connection closed before an answer"),
    ],
)
async def test_broken_handlers_are_reported_not_raised(reply_bytes: bytes, words: str) -> None:
    async with raw_server(answer(reply_bytes, keep=False)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await fwd.send("POST", "", "", [], b"{}")
        await fwd.close()
    assert out.status is None and out.error is not None and words in out.error, out.error
    assert out.headers == [] and out.body == b""
    assert len(server.requests) == 1  # a fresh socket is never retried


async def test_an_endless_response_head_is_cut_off() -> None:
    async def reply(writer: asyncio.StreamWriter, _req: bytes, _i: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(1200):
            writer.write(b"X-Filler: " + b"x" * 1000 + b"\r\n")
            await writer.drain()
        return False

    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await fwd.send("POST", "", "", [], b"{}")
        await fwd.close()
    assert out.status is None and out.error is not None
    assert "invalid HTTP: its response head is larger than" in out.error


async def test_connection_refused_is_reported_and_the_exchange_is_never_ready() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once it is closed
    fwd = Forwarder(parse_target(f"127.0.0.1:{port}"), timeout=5, max_connections=1)
    for _ in range(2):  # the one slot is free again after a failed connect
        async with fwd.open(fwd.prepare("POST", "", "", [], b"{}")) as exchange:
            assert not exchange.ready
            exchange.write()  # nothing to write to
            out = await exchange.answer()
        assert out.status is None and out.error is not None and "connection refused" in out.error
        assert not exchange.written


async def test_a_handler_that_never_answers_times_out() -> None:
    async def silent(_w: asyncio.StreamWriter, _req: bytes, _i: int) -> bool:
        await asyncio.sleep(5)
        return False

    async with raw_server(silent) as server:
        fwd = Forwarder(parse_target(server.target), timeout=0.2)
        out = await fwd.send("POST", "", "", [], b"{}")
        await fwd.close()
    assert out.timed_out and out.status is None and out.error is not None
    assert "did not answer within 0.2 s" in out.error


# --- keep-alive, dead sockets, and the steps of an exchange -------------------------------------


async def test_a_closed_keep_alive_socket_is_replaced_without_losing_the_request() -> None:
    async with raw_server(answer(b"HTTP/1.1 204 No Content\r\n\r\n", keep=False)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        for _ in range(3):
            out = await fwd.send("POST", "", "", [], b"{}")
            assert out.status == 204, out.error
            await asyncio.sleep(0.05)  # let the server's FIN arrive first
        await fwd.close()
    assert len(server.requests) == 3  # each request reached the handler exactly once
    assert server.connections == 3


@pytest.mark.parametrize("writes_itself", [False, True])
async def test_a_socket_closed_after_the_request_is_reported_not_sent_again(
    writes_itself: bool,
) -> None:
    """gunicorn's max_requests, a crashed worker: the handler read the request on a reused
    socket and closed it without a byte of answer. It may have acted on the request, so the
    forwarder reports it, also when write() was called before answer() as the listener does."""

    async def reply(writer: asyncio.StreamWriter, _req: bytes, index: int) -> bool:
        if index == 1:
            return False  # read the second request, then closed without a byte of answer
        writer.write(OK)
        await writer.drain()
        return True

    calls: list[int] = []

    async def between(exchange: Exchange) -> None:
        await asyncio.sleep(0)
        calls.append(1)
        if writes_itself:
            exchange.write()

    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await in_steps(fwd, fwd.prepare("POST", "/1", "", [], b"{}"), between)
        assert out.status == 200 and calls == [1]
        out = await in_steps(fwd, fwd.prepare("POST", "/2", "", [], b"{}"), between)
        assert out.status is None and not out.timed_out and calls == [1, 1]
        assert out.error is not None
        assert out.error.startswith("connection closed before an answer"), out.error
        assert server.target in out.error
        out = await fwd.send("POST", "/3", "", [], b"{}")  # the dead socket is not reused
        assert out.status == 200, out.error
        await fwd.close()
    assert [r.split(b" ", 2)[1] for r in server.requests] == [b"/1", b"/2", b"/3"]
    assert server.connections == 2


async def test_a_socket_the_handler_closes_before_the_write_is_replaced() -> None:
    """Nothing was written to it yet, so the request goes out once, on a fresh socket."""
    drop_idle = asyncio.Event()

    async def reply(writer: asyncio.StreamWriter, _req: bytes, _index: int) -> bool:
        writer.write(OK)
        await writer.drain()
        await drop_idle.wait()  # then return False: the server closes the idle socket
        return False

    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        assert (await fwd.send("POST", "/1", "", [], b"{}")).status == 200
        (idle,) = fwd._idle  # white-box: only to wait until its FIN has arrived

        async def close_then_write(exchange: Exchange) -> None:
            drop_idle.set()
            deadline = asyncio.get_running_loop().time() + 5
            while not idle.reader.at_eof():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.005)
            exchange.write()  # the socket is dead: this writes nothing
            exchange.write()

        out = await in_steps(fwd, fwd.prepare("POST", "/2", "", [], b"{}"), close_then_write)
        await fwd.close()
    assert out.status == 200 and out.body == b"ok", out.error
    assert [r.split(b" ", 2)[1] for r in server.requests] == [b"/1", b"/2"]
    assert server.connections == 2


async def test_a_socket_idle_past_the_keepalive_expiry_is_not_reused() -> None:
    """A request written as the handler's idle timeout closes the socket cannot be sent
    again, so an idle socket is retired before common handlers' timeouts could hit it."""
    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5, keepalive_expiry=0.05)
        for _ in range(2):  # back to back: the same socket
            assert (await fwd.send("POST", "", "", [], b"{}")).status == 200
        assert server.connections == 1
        await asyncio.sleep(0.1)  # idle past the expiry: time itself is what is tested
        assert (await fwd.send("POST", "", "", [], b"{}")).status == 200
        await fwd.close()
    assert server.connections == 2 and len(server.requests) == 3


async def test_no_retry_once_the_handler_started_answering() -> None:
    async def reply(writer: asyncio.StreamWriter, _req: bytes, index: int) -> bool:
        writer.write(OK if index == 0 else b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok")
        await writer.drain()
        return index == 0

    calls, between = counter()
    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        assert (await fwd.send("POST", "", "", [], b"{}")).status == 200
        out = await in_steps(fwd, fwd.prepare("POST", "", "", [], b"{}"), between)
        await fwd.close()
    assert out.status is None and out.error is not None
    assert "without a complete response" in out.error
    assert len(server.requests) == 2 and calls == [1]


async def test_opening_an_exchange_writes_nothing_before_write_or_answer() -> None:
    seen: list[int] = []
    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)

        async def between(_exchange: Exchange) -> None:
            await asyncio.sleep(0.05)  # long enough for any early bytes to arrive
            seen.append(server.received)

        out = await in_steps(fwd, fwd.prepare("POST", "", "", [], b"{}"), between)
        assert out.status == 200 and seen == [0] and server.connections == 1
        out = await in_steps(fwd, fwd.prepare("POST", "", "", [], b"{}"), between)
        assert out.status == 200 and seen == [0, len(server.requests[0])]
        await fwd.close()


class Abort(OSError):
    """An OSError on purpose: the forwarder must not mistake it for network trouble."""


@pytest.mark.parametrize("warm", [False, True])
async def test_an_exchange_left_unwritten_sends_nothing_and_keeps_the_socket(warm: bool) -> None:
    abort = Abort("listener said no")

    async def refuse(_exchange: Exchange) -> None:
        await asyncio.sleep(0)
        raise abort

    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        if warm:
            assert (await fwd.send("POST", "", "", [], b"{}")).status == 200
        before = server.received
        with pytest.raises(Abort) as raised:
            await in_steps(fwd, fwd.prepare("POST", "/aborted", "", [], b"{}"), refuse)
        assert raised.value is abort
        await asyncio.sleep(0.02)
        assert server.received == before  # nothing of the aborted request was written
        calls, between = counter()
        out = await in_steps(fwd, fwd.prepare("POST", "/next", "", [], b"{}"), between)
        assert out.status == 200 and calls == [1]
        await fwd.close()
    assert server.connections == 1
    assert not any(b"/aborted" in request for request in server.requests)
    assert len(server.requests) == (2 if warm else 1)


async def test_write_sends_at_once_and_only_once() -> None:
    """The listener writes the request in the commit callback itself, before its own task
    resumes: the bytes must be on their way when write() returns, and not sent twice."""
    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)

        async def write_then_wait(exchange: Exchange) -> None:
            exchange.write()
            exchange.write()  # a second call is a no-op
            deadline = asyncio.get_running_loop().time() + 5
            while server.received == 0:  # arrives before answer() is called
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.005)

        out = await in_steps(fwd, fwd.prepare("POST", "/once", "", [], b"{}"), write_then_wait)
        await fwd.close()
    assert out.status == 200
    assert len(server.requests) == 1 and server.requests[0].count(b"POST /once") == 1


async def test_an_exchange_left_after_its_write_drops_the_socket() -> None:
    async def write_then_fail(exchange: Exchange) -> None:
        exchange.write()
        raise Abort("recorded, written, then failed")

    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        with pytest.raises(Abort):
            await in_steps(fwd, fwd.prepare("POST", "/first", "", [], b"{}"), write_then_fail)
        assert (await fwd.send("POST", "/second", "", [], b"{}")).status == 200
        await fwd.close()
    assert server.connections == 2  # the half-used socket was not put back in the pool


async def test_a_write_after_the_exchange_is_over_writes_nothing() -> None:
    """A commit callback that runs after its exchange was left (its task cancelled while the
    record committed) must not write into the socket now back in the pool: the next request
    on that socket would read this one's answer as its own."""
    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        async with fwd.open(fwd.prepare("POST", "/left", "", [], b"{}")) as left:
            assert left.ready
        left.write()
        out = await fwd.send("POST", "/next", "", [], b"{}")
        await fwd.close()
    assert out.status == 200 and not left.written
    assert [r.split(b" ", 2)[1] for r in server.requests] == [b"/next"]
    assert server.connections == 1  # the socket left unwritten was reused, clean


async def test_time_before_answer_counts_against_neither_timeout_nor_duration() -> None:
    async def slow_commit(_exchange: Exchange) -> None:
        await asyncio.sleep(0.3)

    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=0.2)
        out = await in_steps(fwd, fwd.prepare("POST", "", "", [], b"{}"), slow_commit)
        await fwd.close()
    assert out.status == 200 and not out.timed_out, out.error
    assert out.duration_ms < 200


async def test_concurrent_sends_share_a_small_pool() -> None:
    async def reply(writer: asyncio.StreamWriter, _req: bytes, _i: int) -> bool:
        await asyncio.sleep(0.01)
        writer.write(OK)
        await writer.drain()
        return True

    async with raw_server(reply) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5, max_connections=4)
        outs = await asyncio.gather(*(fwd.send("POST", "", "", [], b"{}") for _ in range(20)))
        await fwd.close()
    assert all(out.status == 200 and out.body == b"ok" for out in outs)
    assert len(server.requests) == 20 and server.connections <= 4


async def test_an_outcome_becomes_the_attempt_that_records_it() -> None:
    """Outcome.attempt is what the pipeline and replay both store, failure or answer."""
    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        before = time.time()
        out = await fwd.send("POST", "/x", "", [], b"{}")
        await fwd.close()
    attempt = out.attempt("d1", "forward", note="n")
    assert (attempt.delivery_id, attempt.kind, attempt.note) == ("d1", "forward", "n")
    assert (attempt.target_url, attempt.status, attempt.response_body) == (out.url, 200, b"ok")
    assert attempt.response_headers == out.headers and attempt.duration_ms == out.duration_ms
    # Without a start given, the send began duration_ms before the attempt was made.
    assert before <= attempt.started_at <= time.time() - out.duration_ms / 1000 + 0.001
    assert attempt.request_headers == [] and attempt.request_body is None and attempt.error is None

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fwd = Forwarder(parse_target(f"127.0.0.1:{port}"), timeout=5)
    failed = await fwd.send("POST", "", "", [], b"{}")
    sent = [("Host", f"127.0.0.1:{port}")]
    attempt = failed.attempt(
        "d2", "replay", started_at=1.0, request_headers=sent, request_body=b"e"
    )
    assert (attempt.status, attempt.error) == (None, failed.error) and attempt.error
    assert (attempt.started_at, attempt.request_headers, attempt.request_body) == (1, sent, b"e")
