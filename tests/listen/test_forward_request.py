"""The request as it leaves the forwarder: the head on the wire exactly as given, requests
that would not parse as what they claim refused before a byte is written, and the headers
the handler gets (hop-by-hop gone, Host and Content-Length right, X-Forwarded-* the
relay's own, never a sender's)."""

from __future__ import annotations

import asyncio

import pytest
from raw_http import OK, answer, counter, in_steps, raw_server

from hooktap.listen.forward import Forwarder
from hooktap.listen.http_request import prepare_headers, request_head
from hooktap.listen.target import parse_target


async def test_the_request_head_arrives_exactly_as_given() -> None:
    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(f"http://{server.target}/hooks"), timeout=5)
        headers = [
            ("X-B", "1"),
            ("x-b", "2"),
            ("host", "public.example"),
            ("content-TYPE", "text/plain"),
            ("X-B", "3\twith tab"),
            ("X-Name", "café"),
            ("svix-signature", "v1,abc= v1,def="),
        ]
        request = fwd.prepare("PUT", "/in/x", "a=1&b=%20", headers, b"hi", remote="1.2.3.4")
        async with fwd.open(request) as exchange:
            out = await exchange.answer()
        await fwd.close()
    assert out.status == 200
    assert server.requests == [
        b"PUT /hooks/in/x?a=1&b=%20 HTTP/1.1\r\n"
        b"X-B: 1\r\n"
        b"x-b: 2\r\n"
        b"host: " + server.target.encode() + b"\r\n"
        b"content-TYPE: text/plain\r\n"
        b"X-B: 3\twith tab\r\n"
        b"X-Name: caf\xe9\r\n"
        b"svix-signature: v1,abc= v1,def=\r\n"
        b"Content-Length: 2\r\n"
        b"X-Forwarded-For: 1.2.3.4\r\n"
        b"\r\n"
        b"hi"
    ]


@pytest.mark.parametrize(
    ("method", "tail", "query", "headers", "words"),
    [
        ("POST", "", "", [("X\r\nY", "1")], "header name 'X\\r\\nY' is not a valid HTTP token"),
        ("POST", "", "", [("X-A", "1\r\nX-Evil: 1")], "header 'X-A' has a forbidden character"),
        ("POST", "", "", [("X-A", "1\nX-Evil: 1")], "'\\n'"),
        ("POST", "", "", [("X-A", "1\rX-Evil: 1")], "'\\r'"),
        ("POST", "", "", [("X-A", "a\x00b")], "'\\x00'"),
        ("POST", "", "", [("X-A", "a\x1bb")], "'\\x1b'"),
        ("POST", "", "", [("X-A", "a\x7fb")], "'\\x7f'"),
        ("POST", "", "", [("X-A", "snow\u2603")], "'☃'"),
        ("POST", "", "", [("X-A: b", "1")], "header name 'X-A: b'"),
        ("POST", "", "", [("X A", "1")], "header name 'X A'"),
        ("POST", "", "", [("", "1")], "header name ''"),
        ("POST", "", "", [("X\x00", "1")], "header name"),
        ("PO ST", "", "", [], "method 'PO ST' is not a valid HTTP token"),
        ("POST\r\n", "", "", [], "method"),
        ("", "", "", [], "method '' is not"),
        ("POST", "/a b", "", [], "request target '/a b' contains character ' '"),
        ("POST", "/a\r\nX-Evil: 1", "", [], "'\\r'"),
        ("POST", "/a", "q=\x00", [], "'\\x00'"),
        ("POST", "/a\x7f", "", [], "'\\x7f'"),
        ("POST", "/a", "q=1 HTTP/1.1\r\n\r\nGET /smuggled", [], "request target"),
    ],
)
async def test_unsafe_requests_are_refused_without_a_byte_written(
    method: str, tail: str, query: str, headers: list[tuple[str, str]], words: str
) -> None:
    calls, between = counter()
    async with raw_server(answer(OK)) as server:
        fwd = Forwarder(parse_target(server.target), timeout=5)
        out = await in_steps(fwd, fwd.prepare(method, tail, query, headers, b"{}"), between)
        await asyncio.sleep(0.02)  # anything written would have reached the server by now
        await fwd.close()
    assert out.status is None and out.error is not None and not out.timed_out
    assert out.error.startswith("refused to forward: ") and words in out.error, out.error
    assert server.connections == 0 and server.received == 0 and server.requests == []
    assert calls == []


def test_request_head_checks_what_it_is_given() -> None:
    assert request_head("GET", "/", []) == b"GET / HTTP/1.1\r\n\r\n"
    head = request_head("POST", "*", [("a", ""), ("A", " x:y ")])
    assert head == b"POST * HTTP/1.1\r\na: \r\nA:  x:y \r\n\r\n"


def test_prepare_headers_keeps_order_case_and_repeats() -> None:
    headers = [
        ("X-Forwarded-For", "10.0.0.1"),
        ("content-type", "application/json"),
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Host", "public.example"),
        ("x-custom", "a"),
        ("host", "second.example"),
        ("X-Custom", "b"),
        ("Content-Length", "999"),
        ("TE", "trailers"),
    ]
    out = prepare_headers(
        "POST", headers, b"{}", "localhost:8000", remote="1.2.3.4", scheme="https", host="h"
    )
    assert out == [
        ("content-type", "application/json"),
        ("Host", "localhost:8000"),
        ("x-custom", "a"),
        ("X-Custom", "b"),
        ("Content-Length", "2"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "h"),
    ]
    # An empty POST still says its length; a GET without a body adds nothing.
    assert ("Content-Length", "0") in prepare_headers("POST", [], b"", "x")
    assert prepare_headers("GET", [], b"", "x") == [("Host", "x")]


SPOOFED = [
    ("x-forwarded-for", "6.6.6.6"),
    ("X-Forwarded-For", "7.7.7.7, 8.8.8.8"),
    ("X-FORWARDED-HOST", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
    ("forwarded", "for=9.9.9.9"),
]


def test_a_senders_forwarding_headers_are_replaced_by_the_relays_values() -> None:
    headers = [("X-A", "1"), *SPOOFED, ("X-B", "2")]
    out = prepare_headers(
        "POST", headers, b"{}", "t", remote="203.0.113.7, 10.0.0.2", scheme="http", host="r:1"
    )
    assert out == [
        ("Host", "t"),
        ("X-A", "1"),
        ("X-B", "2"),
        ("Content-Length", "2"),
        # Verbatim: a chain the relay made for a trusted proxy is not merged with anything.
        ("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "r:1"),
    ]
    # Without the relay's values (a replay), none are sent at all, nor the sender's.
    assert prepare_headers("POST", headers, b"{}", "t") == [
        ("Host", "t"),
        ("X-A", "1"),
        ("X-B", "2"),
        ("Content-Length", "2"),
    ]
    only_remote = prepare_headers("GET", SPOOFED, b"", "t", remote="127.0.0.1")
    assert only_remote == [("Host", "t"), ("X-Forwarded-For", "127.0.0.1")]
