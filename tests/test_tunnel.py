"""The tunnel end to end, in one process: real relay, real listener, real handler, real sockets.

Every test with a listener runs twice: over the websocket, and linked in process to the relay
(what `hooktap listen` does with the relay it embeds)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import pytest

from hooktap.listen.events import DeliveryForwarded
from hooktap.pivotal.signing import sign, signed_headers
from support.servers import TRANSPORTS, running_handler, running_listener, running_relay

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}


async def raw_request(url: str, head_lines: list[str], body: bytes) -> tuple[int, bytes, bytes]:
    """Send exactly these header lines (order, case, repeats) and read the whole response."""
    rest = url.split("://", 1)[1]
    hostport = rest.partition("/")[0]
    host, port = hostport.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "\r\n".join(head_lines).encode("latin-1")
    writer.write(head + b"\r\n\r\n" + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    status_line, _, rest_bytes = data.partition(b"\r\n")
    headers, _, payload = rest_bytes.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), headers, payload


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def tunnel(tmp_path: Path, secret: str, transport: str):
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(
            relay,
            handler.url + "/webhooks/pivotal",
            tmp_path / "history.db",
            transport,
            secret=secret,
        ) as listener,
    ):
        yield handler, relay, listener


BODIES = {
    "json": (b'{"id":"evt_1","type":"customer.updated","data":{"a":  1}}', "application/json"),
    "form": (b"a=1&b=%C3%A9&c=x+y", "application/x-www-form-urlencoded"),
    "binary": (bytes(range(256)) * 4, "application/octet-stream"),
    "non-utf8": (b"caf\xe9 \xff\xfe not utf-8", "text/plain; charset=latin-1"),
    "empty": (b"", "application/json"),
}


@pytest.mark.parametrize("kind", list(BODIES))
async def test_body_method_path_and_headers_arrive_exactly(tunnel, kind: str) -> None:
    handler, _, listener = tunnel
    body, ctype = BODIES[kind]
    path = "/c/" + listener.webhook_url.rsplit("/c/", 1)[1] + "/orders/42?x=1&y=%20z"
    lines = [
        "POST " + path + " HTTP/1.1",
        "Host: hooks.example.com",
        "Content-Type: " + ctype,
        "X-Custom-Case: One",
        "x-dup: first",
        "X-Dup: second",
        "Connection: keep-alive, X-Drop-Me",
        "X-Drop-Me: hop",
        "Keep-Alive: timeout=5",
        "svix-id: msg_abc",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    status, _, reply = await raw_request(listener.webhook_url, lines, body)
    assert status == 200, reply
    seen = (await handler.wait_for(1))[0]
    assert seen.method == "POST"
    assert seen.path_qs == "/webhooks/pivotal/orders/42?x=1&y=%20z"
    assert seen.body == body
    names = [n for n, _ in seen.raw_headers]
    # Order and case survive, repeats stay separate, hop-by-hop (and what Connection names) go.
    kept = [(n, v) for n, v in seen.raw_headers if not n.lower().startswith("x-forwarded")]
    host = handler.url.split("://")[1]
    assert kept == [
        ("Host", host),
        ("Content-Type", ctype),
        ("X-Custom-Case", "One"),
        ("x-dup", "first"),
        ("X-Dup", "second"),
        ("svix-id", "msg_abc"),
        ("Content-Length", str(len(body))),
    ]
    assert not {n.lower() for n in names} & (HOP_BY_HOP | {"x-drop-me"})
    forwarded = dict((n, v) for n, v in seen.raw_headers if n.lower().startswith("x-forwarded"))
    assert forwarded["X-Forwarded-For"] == "127.0.0.1"
    assert forwarded["X-Forwarded-Proto"] == "http"
    assert forwarded["X-Forwarded-Host"] == "hooks.example.com"


async def test_chunked_request_is_forwarded_with_a_content_length(tunnel) -> None:
    handler, _, listener = tunnel
    path = "/c/" + listener.webhook_url.rsplit("/c/", 1)[1]
    lines = [f"PUT {path} HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "Connection: close"]
    status, _, _ = await raw_request(listener.webhook_url, lines, b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 200
    seen = (await handler.wait_for(1))[0]
    assert seen.method == "PUT" and seen.body == b"hello"
    assert ("Content-Length", "5") in seen.raw_headers
    assert not any(n.lower() == "transfer-encoding" for n, _ in seen.raw_headers)


async def test_ten_megabyte_body_is_byte_identical(tunnel) -> None:
    handler, _, listener = tunnel
    body = os.urandom(10 * 1024 * 1024)
    async with aiohttp.ClientSession() as http:
        async with http.post(listener.webhook_url, data=body) as resp:
            assert resp.status == 200
    seen = (await handler.wait_for(1))[0]
    assert len(seen.body) == len(body) and seen.body == body
    stored = listener.listener.store.get(listener.listener.store.query(None, limit=1)[0].id)
    assert stored is not None and stored.body == body


async def test_sender_gets_the_handlers_status_headers_and_body(tunnel) -> None:
    handler, _, listener = tunnel
    handler.status, handler.reply = 401, b"invalid signature"
    handler.reply_headers = {"X-Reason": "bad sig", "Content-Type": "text/plain"}
    async with aiohttp.ClientSession() as http:
        async with http.post(listener.webhook_url + "/x", data=b"{}") as resp:
            assert resp.status == 401
            assert resp.headers["X-Reason"] == "bad sig"
            assert await resp.read() == b"invalid signature"


async def test_handler_down_gives_502_and_is_recorded(tmp_path: Path, transport: str) -> None:
    async with (
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, "127.0.0.1:9", tmp_path / "h.db", transport) as listener,
        aiohttp.ClientSession() as http,
        http.post(listener.webhook_url, data=b"{}") as resp,
    ):
        assert resp.status == 502
        text = await resp.text()
        assert "connection refused" in text and "handler" in text
        summary = listener.store.query(None, limit=1)[0]
        attempt = listener.store.first_attempt(summary.id)
        assert attempt is not None and attempt.status is None
        assert "connection refused" in (attempt.error or "")


async def test_slow_handler_gives_504_after_the_timeout_and_is_recorded(
    tmp_path: Path, transport: str
) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.url, tmp_path / "h.db", transport, timeout=0.3) as listener,
        aiohttp.ClientSession() as http,
    ):
        handler.delay = 2.0
        started = time.monotonic()
        async with http.post(listener.webhook_url, data=b"{}") as resp:
            assert resp.status == 504
            assert "did not answer within 0.3 s" in await resp.text()
        assert time.monotonic() - started < 1.8
        summary = listener.store.query(None, limit=1)[0]
        attempt = listener.store.first_attempt(summary.id)
        assert attempt is not None and attempt.status is None and "0.3 s" in (attempt.error or "")


async def _verdict_of(listener, headers: list[tuple[str, str]], body: bytes) -> str:
    async with aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as http:
        async with http.post(listener.webhook_url, data=body, headers=headers) as resp:
            await resp.read()
    for _ in range(100):
        forwarded = [e for e in listener.events if isinstance(e, DeliveryForwarded)]
        if forwarded:
            listener.events.clear()
            return forwarded[-1].delivery.signature
        await asyncio.sleep(0.02)
    raise AssertionError("no delivery event")


async def test_signature_verdicts(tunnel, secret: str) -> None:
    _, _, listener = tunnel
    body = b'{"id":"evt_9","type":"customer.created","created_at":"x","data":{}}'
    assert await _verdict_of(listener, signed_headers(secret, body), body) == "valid"
    tampered = body.replace(b"evt_9", b"evt_8")
    assert await _verdict_of(listener, signed_headers(secret, body), tampered) == "invalid"
    old = int(time.time()) - 7 * 60
    stale = [
        ("svix-id", "msg_1"),
        ("svix-timestamp", str(old)),
        ("svix-signature", sign(secret, "msg_1", old, body)),
    ]
    assert await _verdict_of(listener, stale, body) == "expired"
    assert await _verdict_of(listener, [], body) == "unsigned"
    non_utf8 = b"\xff\xfe\x00binary"
    assert await _verdict_of(listener, signed_headers(secret, non_utf8), non_utf8) == "valid"
    for garbage in (
        [("svix-id", "x"), ("svix-timestamp", "soon"), ("svix-signature", "v1,abc")],
        [
            ("svix-id", "x"),
            ("svix-timestamp", str(int(time.time()))),
            ("svix-signature", "nocomma"),
        ],
        [("svix-id", "x")],
        [("svix-id", "x"), ("svix-timestamp", "1e400"), ("svix-signature", "v1,=====")],
    ):
        assert await _verdict_of(listener, garbage, body) == "invalid"
    stored = listener.store.query(None, limit=20)
    assert len(stored) == 9


async def test_no_secret_verdict(tmp_path: Path, secret: str, transport: str) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.url, tmp_path / "h.db", transport) as listener,
    ):
        body = b"{}"
        assert await _verdict_of(listener, signed_headers(secret, body), body) == "no-secret"


async def test_relay_never_sees_the_secret(tunnel, tmp_path: Path, secret: str) -> None:
    _, _, listener = tunnel
    body = b'{"type":"webhook.ping"}'
    await _verdict_of(listener, signed_headers(secret, body), body)
    key = secret.removeprefix("whsec_").encode()
    for path in (tmp_path / "relay").iterdir():
        assert key not in path.read_bytes() and secret.encode() not in path.read_bytes()


async def test_channel_token_is_required_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async with running_relay(tmp_path / "relay") as relay, aiohttp.ClientSession() as http:
        async with http.post(f"{relay}/api/channels", json={}) as resp:
            assert resp.status == 201
            created = await resp.json()
        ws_url = relay.replace("http", "ws") + f"/c/{created['channel']}/ws"
        for headers, status, words in (
            ({}, 401, "missing channel token"),
            ({"Authorization": "Bearer htk_wrong"}, 403, "wrong token"),
        ):
            with pytest.raises(InvalidStatus) as refused:
                await connect(ws_url, additional_headers=headers)
            assert refused.value.response.status_code == status
            assert words in json.loads(refused.value.response.body)["error"]
        db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "relay").iterdir())
        assert created["token"].encode() not in db_bytes


async def test_deliveries_never_cross_channels(tmp_path: Path, transport: str) -> None:
    async with (
        running_handler() as handler_a,
        running_handler() as handler_b,
        running_relay(tmp_path / "relay") as relay,
    ):
        os.environ["HOOKTAP_HOME"] = str(tmp_path / "home-a")
        async with running_listener(relay, handler_a.url, tmp_path / "a.db", transport) as a:
            os.environ["HOOKTAP_HOME"] = str(tmp_path / "home-b")
            async with (
                running_listener(relay, handler_b.url, tmp_path / "b.db", transport) as b,
                aiohttp.ClientSession() as http,
            ):
                assert a.webhook_url != b.webhook_url
                for i in range(5):
                    async with http.post(a.webhook_url, data=f"a{i}".encode()) as resp:
                        assert resp.status == 200
                async with http.post(b.webhook_url, data=b"b0") as resp:
                    assert resp.status == 200
                assert [s.body for s in await handler_a.wait_for(5)] == [
                    f"a{i}".encode() for i in range(5)
                ]
                assert [s.body for s in await handler_b.wait_for(1)] == [b"b0"]
                assert len(a.store.query(None, limit=50)) == 5
                assert len(b.store.query(None, limit=50)) == 1


async def test_unknown_channel_and_oversized_body_are_refused_with_reasons(tmp_path: Path) -> None:
    async with (
        running_relay(tmp_path / "relay", max_body=1024) as relay,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{relay}/c/nope1234", data=b"{}") as resp:
            assert resp.status == 404
            assert "no channel 'nope1234'" in (await resp.json())["error"]
        async with http.post(f"{relay}/api/channels", json={}) as resp:
            channel = (await resp.json())["channel"]
        async with http.post(f"{relay}/c/{channel}", data=b"x" * 4096) as resp:
            assert resp.status == 413
            assert "limit of 1024 bytes" in (await resp.json())["error"]
        async with http.post(f"{relay}/api/channels", data=b"{not json") as resp:
            assert resp.status == 400 and "JSON" in (await resp.json())["error"]
        async with http.get(f"{relay}/healthz") as resp:
            assert (await resp.json())["service"] == "hooktap-relay"


@pytest.mark.parametrize(
    "tail",
    [
        "//evil.example/steal",
        "/@evil.example/x",
        "/..%2F..%2Fetc%2Fpasswd",
        "/http://evil.example/",
    ],
)
async def test_no_request_can_redirect_the_listener_to_another_host(tunnel, tail: str) -> None:
    handler, _, listener = tunnel
    channel_path = "/c/" + listener.webhook_url.rsplit("/c/", 1)[1]
    lines = [
        f"POST {channel_path}{tail} HTTP/1.1",
        "Host: evil.example",
        "X-Forwarded-Host: evil.example",
        "Content-Length: 2",
        "Connection: close",
    ]
    status, _, _ = await raw_request(listener.webhook_url, lines, b"{}")
    assert status == 200
    seen = (await handler.wait_for(1))[0]
    # It reached our handler, under the target's path, with the target as Host.
    assert seen.path_qs.startswith("/webhooks/pivotal/")
    assert dict(seen.raw_headers)["Host"] == handler.url.split("://")[1]


async def test_history_that_cannot_be_written_refuses_the_delivery_and_the_relay_keeps_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    """Exactly-once rests on recording a delivery before the handler may have it. If that
    record cannot be written (here `bodies` is a file, so a big body has nowhere to go), the
    delivery is not forwarded, the listener says why in one line and hands it back at once:
    the sender gets 202 from the relay, which keeps it, and once the disk is fixed the next
    listener forwards it, once."""
    (tmp_path / "bodies").write_text("not a folder")
    body = b"x" * 100_000
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        async with running_listener(
            relay, handler.url, tmp_path / "h.db", transport, timeout=30
        ) as first:
            async with http.post(first.webhook_url, data=body) as resp:
                # Not a 504 after the relay gave up waiting (30 s + 5 here): refused, and kept.
                assert resp.status == 202
                reason = (await resp.json())["reason"]
            assert "could not record it in its history" in reason and "bodies" in reason
            assert handler.seen == []
            assert first.store.query(None, limit=5) == []
        (tmp_path / "bodies").unlink()  # the disk is fixed
        async with running_listener(relay, handler.url, tmp_path / "h.db", transport) as second:
            (seen,) = await handler.wait_for(1)
            assert seen.body == body
            (row,) = second.store.query(None, limit=5)
            assert second.store.get(row.id).body == body  # type: ignore[union-attr]
    line = next(r for r in caplog.records if "could not be recorded" in r.getMessage())
    assert line.exc_info is None and "bodies" in line.getMessage()


async def test_an_outcome_that_cannot_be_recorded_still_answers_the_sender(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    """Once the handler has a delivery, the sender must get the handler's answer even if
    history cannot take the outcome: here a trigger makes SQLite refuse every attempt row."""
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.url, tmp_path / "h.db", transport) as listener,
        aiohttp.ClientSession() as http,
    ):
        listener.store._db.execute(
            "CREATE TRIGGER no_attempts BEFORE INSERT ON attempts "
            "BEGIN SELECT RAISE(ABORT, 'disk is full (test)'); END"
        )
        handler.status, handler.reply = 201, b"made it"
        async with http.post(listener.webhook_url, data=b'{"a":1}') as resp:
            assert (resp.status, await resp.read()) == (201, b"made it")
        assert len(handler.seen) == 1
        (row,) = listener.store.query(None, limit=5)
        assert listener.store.get_state(row.id) == "dispatched"
        deadline = time.monotonic() + 10
        while not any(isinstance(e, DeliveryForwarded) for e in listener.events):
            assert time.monotonic() < deadline, "the outputs never heard of the forward"
            await asyncio.sleep(0.01)
        shown = next(e for e in listener.events if isinstance(e, DeliveryForwarded))
        assert (shown.delivery.id, shown.attempt.status) == (row.id, 201)
    line = next(r for r in caplog.records if "outcome could not be recorded" in r.getMessage())
    assert "201" in line.getMessage() and "disk is full (test)" in line.getMessage()
    assert line.exc_info is None
