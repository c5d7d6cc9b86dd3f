"""Parsing a local handler's HTTP/1.1 response, for the forwarder.

httptools (llhttp, the C parser uvicorn uses) is strict about framing (Content-Length vs
chunked, duplicate lengths, bare LFs), so a confused handler is reported rather than misread.
This module only interprets bytes; the forwarder's read loop decides when to stop reading.
"""

from __future__ import annotations

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from hooktap.records import Headers

# The most a handler may send before its response head ends (h11's limit was the same):
# a handler streaming endless header lines must not grow the listener without bound.
MAX_HEAD = 1 << 20


class BadResponse(Exception):
    """The handler's bytes are not an HTTP/1.1 response (the message says what is wrong)."""


class ClosedBeforeAnswer(Exception):
    """The connection ended before a single response byte. The request was written, so the
    handler may have acted on it: it is reported, never written again (a kept-alive socket
    that a handler closes after reading, as gunicorn's max_requests does, would otherwise
    get every such delivery twice)."""


class ResponseParser:
    """One connection's response parser: the httptools callbacks fill in one exchange.

    It lives as long as the connection, so a delivery allocates no parser. Callbacks only set
    fields; the forwarder's read loop decides what they mean.
    """

    __slots__ = (
        "chunks",
        "dirty",
        "done",
        "head_request",
        "headers",
        "keep_alive",
        "parser",
        "pending_head",
        "received",
        "size",
        "status",
    )

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.begin(False)

    def begin(self, head_request: bool) -> None:
        """Forget the last exchange: a new request is about to be written."""
        self.head_request = head_request
        self.status = 0  # the final (non-1xx) status once its head is complete
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.size = 0  # body bytes in `chunks`, so the reader can stop an endless body
        self.done = False  # the final response is complete
        self.keep_alive = False  # the handler will take another request on this socket
        self.dirty = False  # bytes arrived after the response: the socket can't be trusted
        self.received = False  # any byte at all: the handler got the request
        self.pending_head = 0  # bytes read while no final head was complete

    def feed(self, data: bytes) -> None:
        """Parse bytes read from the socket; raises `BadResponse` if they are not HTTP."""
        self.received = True
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            raise BadResponse(
                "it answered 101 Switching Protocols, which a forwarded request never asks for"
            ) from None
        except HttpParserError as exc:
            if not self.done:
                raise BadResponse(str(exc) or type(exc).__name__) from None
            self.dirty = True  # junk after a complete response: answer it, then drop the socket
        if not self.status:
            self.pending_head += len(data)
            if self.pending_head > MAX_HEAD:
                raise BadResponse(f"its response head is larger than {MAX_HEAD} bytes")

    def feed_eof(self) -> None:
        """The handler closed its side: that either ends the body or breaks the response.

        httptools has no way to be told of EOF (llhttp_finish is not exposed), so a response
        with neither Content-Length nor chunked framing, whose body ends at EOF, is finished
        here by hand.
        """
        if not self.received:
            raise ClosedBeforeAnswer
        if self.status and ends_at_eof(self.headers):
            self.done = True
            self.keep_alive = False
            return
        raise ConnectionResetError("the handler closed the connection mid-response")

    def body(self, limit: int) -> bytes:
        """The body read so far, at most `limit` bytes of it."""
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return body if len(body) <= limit else body[:limit]

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            self.dirty = True  # a second response nobody asked for
        elif self.headers:
            self.headers = []  # the last message was an interim 1xx: its headers don't count

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.status:  # not trailers, and nothing after the response
            self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200 or self.status:
            # 1xx (100 Continue, 103 Early Hints): llhttp completes it as a body-less message
            # and parses the next one; 101 raises HttpParserUpgrade or an error in feed_data.
            return
        self.status = status
        if self.head_request:
            # llhttp cannot be told a response answers HEAD, so it would wait for the body
            # Content-Length announces: the response ends here, and the connection gets a
            # fresh parser before it is reused (`Forwarder._release`).
            self.keep_alive = self.parser.should_keep_alive()
            self.done = True

    def on_body(self, body: bytes) -> None:
        if self.done:
            self.dirty = True  # a body after a HEAD response's head
        else:
            self.chunks.append(body)
            self.size += len(body)

    def on_message_complete(self) -> None:
        if self.status and not self.done:
            # Asked now: once this callback returns llhttp resets its flags, and afterwards
            # should_keep_alive() is False even for a kept-alive response.
            self.keep_alive = self.parser.should_keep_alive()
            self.done = True


def ends_at_eof(headers: Headers) -> bool:
    """Whether a response's body is delimited by the connection closing (RFC 9112 §6.3):
    no Content-Length and no Transfer-Encoding ending in chunked."""
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length":
            return False
        if lower == "transfer-encoding" and value.rsplit(",", 1)[-1].strip().lower() == "chunked":
            return False
    return True
