"""Nothing twice, nothing lost after a 2xx: the relay and listener under the faults that broke
those promises. Real relay, real listeners, real handlers on loopback; where a peer must
misbehave (a listener that never reports a result), it is a raw websocket client speaking
hooktap's own protocol, which is what such a peer would be."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import re
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect

from hooktap.cli.history_view import summary_json
from hooktap.listen import channel as channels
from hooktap.listen.channel import RelayRefused
from hooktap.pivotal.signing import signed_headers
from hooktap.protocol import (
    Delivery,
    ListenerSession,
    Ping,
    Pong,
    Result,
    Welcome,
    encode,
)
from hooktap.tui.present import Marks
from support.procs import Procs, free_port
from support.servers import (
    TRANSPORTS,
    running_handler,
    running_listener,
    running_relay,
    serve,
    until,
)
from support.verifying import VerifyingHandler

# --- 2. a listener that answers pings but never reports a result ------------------------------


@contextlib.asynccontextmanager
async def _silent_listener(relay: str, asked_timeout: float):
    """Holds the channel, answers every Ping, takes deliveries and never reports a Result."""
    creds = await channels.create(relay)
    session = ListenerSession()
    taken: list[Delivery] = []
    async with connect(
        creds.websocket_url, additional_headers={"Authorization": f"Bearer {creds.token}"}
    ) as ws:
        await ws.send(session.hello("stuck/1", asked_timeout, instance="stuck"))
        welcome = session.receive(await ws.recv())
        assert isinstance(welcome, Welcome)

        async def pump() -> None:
            async for data in ws:
                frame = session.receive(data)
                if isinstance(frame, Ping):
                    await ws.send(encode(Pong(frame.sent_at)))
                elif isinstance(frame, Delivery):
                    taken.append(frame)

        task = asyncio.create_task(pump())
        try:
            yield creds, welcome, taken
        finally:
            task.cancel()


async def test_a_silent_listener_gets_its_sender_a_504_and_the_relay_does_not_also_keep_it(
    tmp_path: Path,
) -> None:
    """The relay answers 504 or keeps the delivery, never both: both meant the sender's retry
    and the kept copy each reached the handler. And a listener cannot make senders wait longer
    than the relay allows: an hour asked for is capped (1e9 s is refused outright)."""
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay", max_handler_timeout=0.5, result_grace=0.3) as relay,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        async with _silent_listener(relay, asked_timeout=3600) as (creds, welcome, taken):
            assert welcome.timeout == 0.5
            async with http.post(creds.webhook_url, data=b"first") as resp:
                assert resp.status == 504
                assert "not kept" in (await resp.json())["error"]
            assert [d.body for d in taken] == [b"first"]
        async with running_listener(relay, handler.url, tmp_path / "h.db") as real:
            async with http.post(real.webhook_url, data=b"marker") as resp:
                assert resp.status == 200
            # Anything kept would have been handed over on connect, before the marker.
            assert [s.body for s in handler.seen] == [b"marker"]


async def test_a_result_header_http_cannot_carry_is_dropped_not_a_crash(tmp_path: Path) -> None:
    """A listener is a peer the relay does not control: a handler header it reports with CR LF
    in it must not fail the sender's response (aiohttp refuses to write it)."""
    async with (
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        creds = await channels.create(relay)
        session = ListenerSession()
        async with connect(
            creds.websocket_url, additional_headers={"Authorization": f"Bearer {creds.token}"}
        ) as ws:
            await ws.send(session.hello("hostile/1", 5))
            assert isinstance(session.receive(await ws.recv()), Welcome)

            async def answer() -> None:
                async for data in ws:
                    frame = session.receive(data)
                    if isinstance(frame, Delivery):
                        headers = [("X-Ok", "yes"), ("X-Bad", "a\r\nSet-Cookie: x"), ("B d", "1")]
                        await ws.send(encode(Result(frame.id, 201, headers, b"made")))

            task = asyncio.create_task(answer())
            try:
                async with http.post(creds.webhook_url, data=b"{}") as resp:
                    assert (resp.status, await resp.read()) == (201, b"made")
                    assert resp.headers["X-Ok"] == "yes"
                    assert "X-Bad" not in resp.headers and "Set-Cookie" not in resp.headers
            finally:
                task.cancel()


# --- 3. a second listener on the same channel ------------------------------------------------


async def test_a_second_listener_is_refused_while_the_first_is_alive(tmp_path: Path) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.url, tmp_path / "a.db"),
    ):
        # Same HOOKTAP_HOME, so the same channels.json (token), but its own history.
        with pytest.raises(RelayRefused) as refused:
            async with running_listener(relay, handler.url, tmp_path / "b.db"):
                pass
        assert "another listener holds this channel" in str(refused.value)
        assert "--takeover" in str(refused.value)


def test_a_second_hooktap_listen_on_the_embedded_relay_exits_2_naming_takeover(
    procs: Procs, hooktap_home: Path
) -> None:
    port = free_port()
    args = ["listen", "--forward", "localhost:9", "--json", "--port", str(port)]
    first = procs.start(args, hooktap_home)
    assert first.wait_json("ready")["webhook_url"]
    second = procs.start(args, hooktap_home)
    assert second.wait(20) == 2
    _, err = second.rest()
    text = "\n".join(err)
    assert "another listener holds this channel" in text and "--takeover" in text
    assert "Traceback" not in text
    assert first.popen.poll() is None  # the first keeps its channel


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_takeover_sends_no_delivery_twice(tmp_path: Path, transport: str) -> None:
    """Thirty deliveries are in the first listener's hands (its handler is slow) when a second
    listener, with its own history, takes the channel over. The relay keeps them, since their
    senders were never answered; the new listener must not forward what the old one may
    have forwarded. It records them, marked, for the user to check and replay."""
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        handler.delay = 1.0
        bodies = [f'{{"n": {i}}}'.encode() for i in range(30)]
        async with running_listener(relay, handler.url, tmp_path / "a.db", transport) as first:

            async def post(body: bytes) -> int:
                async with http.post(first.webhook_url, data=body) as resp:
                    return resp.status

            senders = [asyncio.create_task(post(b)) for b in bodies]
            await handler.wait_for(30)
            async with running_listener(
                relay, handler.url, tmp_path / "b.db", transport, takeover=True
            ) as second:
                statuses = await asyncio.gather(*senders)
                assert set(statuses) <= {200, 202}
                kept = statuses.count(202)
                assert kept > 0
                await until(lambda: len(second.store.query(None, limit=100)) >= kept)
                handler.delay = 0
                async with http.post(second.webhook_url, data=b"marker") as resp:
                    assert resp.status == 200
                rows = second.store.query(None, limit=100)
                interrupted = [r for r in rows if r.state == "interrupted"]
                assert len(interrupted) == kept
                attempt = second.store.first_attempt(interrupted[0].id)
                assert attempt is not None and "may have it already" in (attempt.error or "")
        counts = collections.Counter(s.body for s in handler.seen)
        assert set(counts) == {*bodies, b"marker"}
        assert max(counts.values()) == 1


# --- 4. held at the relay past svix's tolerance -----------------------------------------------


async def test_a_delivery_held_past_the_tolerance_is_re_signed_when_it_was_genuine(
    tmp_path: Path, secret: str
) -> None:
    handler = VerifyingHandler(secret)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    body = b'{"id":"evt_1","type":"customer.at_risk","data":{"object":{"id":"cus_1"}}}'
    now = int(time.time())
    # Fresh when the relay gets it (299 s old), stale by the time it is forwarded.
    held = signed_headers(secret, body, msg_id="msg_held", timestamp=now - 299)
    # Already stale when it reached the relay: a captured old request, never refreshed.
    stale = signed_headers(secret, body, msg_id="msg_stale", timestamp=now - 900)
    async with (
        serve(app) as handler_url,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        handler.url = handler_url
        creds = await channels.create(relay)
        for headers in (held, stale):
            async with http.post(creds.webhook_url, data=body, headers=headers) as resp:
                assert resp.status == 202
        await until(lambda: time.time() - (now - 299) > 301.5, timeout=10)
        async with running_listener(relay, handler.url, tmp_path / "h.db", secret=secret) as lst:
            await until(lambda: len(handler.seen) == 2)
            assert [r.status for r in handler.seen] == [200, 401]
            assert handler.header(0, "svix-id") == "msg_held"
            assert handler.header(0, "svix-timestamp") != str(now - 299)
            rows = {r.svix_id: r for r in lst.store.query(None, limit=5)}
            fresh = lst.store.first_attempt(rows["msg_held"].id)
            assert fresh is not None and "at the relay; re-signed" in fresh.note
            assert rows["msg_held"].signature == "valid"
            # Marked wherever a delivery is listed: the inspector's row and `deliveries`.
            assert Marks.of(rows["msg_held"]).held and not Marks.of(rows["msg_stale"]).held
            note = summary_json(rows["msg_held"])["note"]
            assert re.fullmatch(r"held \d+ s at the relay; re-signed", note), note
            # What arrived is kept as it arrived: the original timestamp.
            original = lst.store.get(rows["msg_held"].id)
            assert original is not None and (
                dict(original.headers)["svix-timestamp"] == str(now - 299)
            )
            assert rows["msg_stale"].signature == "expired"


async def test_without_a_secret_a_held_delivery_is_sent_as_is_and_the_note_says_why(
    tmp_path: Path, secret: str
) -> None:
    handler = VerifyingHandler(secret)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    body = b'{"id":"evt_2","type":"task.completed","data":{"object":{"id":"t_1"}}}'
    ts = int(time.time()) - 299
    async with (
        serve(app) as handler_url,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        creds = await channels.create(relay)
        headers = signed_headers(secret, body, timestamp=ts)
        async with http.post(creds.webhook_url, data=body, headers=headers) as resp:
            assert resp.status == 202
        await until(lambda: time.time() - ts > 301.5, timeout=10)
        async with running_listener(relay, handler_url, tmp_path / "h.db") as lst:
            await until(lambda: len(handler.seen) == 1)
            assert handler.seen[0].status == 401
            (row,) = lst.store.query(None, limit=5)
            attempt = lst.store.first_attempt(row.id)
            assert attempt is not None
            assert "reject it as expired" in attempt.note and "--secret" in attempt.note


# --- 5. handed back after a refusal ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_delivery_handed_back_is_offered_again_once_the_listener_can_take_it(
    tmp_path: Path, transport: str
) -> None:
    """`bodies` is a file, so a big body cannot be recorded and the listener hands it back.
    Once the disk is fixed, the same connection gets it: no reconnect needed."""
    (tmp_path / "bodies").write_text("not a folder")
    body = b"y" * 100_000
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.url, tmp_path / "h.db", transport) as listener,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(listener.webhook_url, data=body) as resp:
            assert resp.status == 202
        assert handler.seen == []
        (tmp_path / "bodies").unlink()
        (seen,) = await handler.wait_for(1, timeout=15)
        assert seen.body == body
        assert listener.listener.state == "connected"


# --- 6. a channel nobody claims any more ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_channel_no_listener_claimed_for_its_ttl_stops_answering_202(
    tmp_path: Path, transport: str
) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay", channel_ttl=0.3) as relay,
        aiohttp.ClientSession() as http,
    ):
        async with running_listener(relay, handler.url, tmp_path / "h.db", transport) as listener:
            url = listener.webhook_url
            await asyncio.sleep(0.5)  # past the TTL, but a listener is connected
            async with http.post(url, data=b"live") as resp:
                assert resp.status == 200
        statuses: list[int] = []

        async def gone() -> bool:
            async with http.post(url, data=b"late") as resp:
                statuses.append(resp.status)
                if resp.status == 410:
                    assert "no listener has claimed" in (await resp.json())["error"]
                return resp.status == 410

        deadline = time.monotonic() + 5
        while not await gone():
            assert time.monotonic() < deadline, statuses
            await asyncio.sleep(0.1)
        # Early posts, inside the TTL, were kept: they reach the next listener.
        kept = statuses.count(202)
        async with running_listener(relay, handler.url, tmp_path / "h.db", transport):
            await handler.wait_for(1 + kept)
            async with http.post(url, data=b"revived") as resp:
                assert resp.status == 200


# --- 10. forwarding headers from a trusted proxy -------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_forwarding_headers_are_believed_only_from_a_trusted_proxy(
    tmp_path: Path, transport: str
) -> None:
    spoof = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "hooks.example.com",
    }
    for trusted, expect in (
        ([], ("127.0.0.1", "http", None)),
        (
            [ipaddress.ip_network("127.0.0.0/8")],
            ("203.0.113.9, 127.0.0.1", "https", "hooks.example.com"),
        ),
    ):
        async with (
            running_handler() as handler,
            running_relay(tmp_path / f"relay{len(trusted)}", trusted_proxies=trusted) as relay,
            running_listener(
                relay, handler.url, tmp_path / f"h{len(trusted)}.db", transport
            ) as listener,
            aiohttp.ClientSession() as http,
        ):
            async with http.post(listener.webhook_url, data=b"{}", headers=spoof) as resp:
                assert resp.status == 200
            (seen,) = handler.seen
            got = collections.defaultdict(list)
            for name, value in seen.raw_headers:
                got[name.lower()].append(value)
            relay_host = relay.split("://")[1]
            assert got["x-forwarded-for"] == [expect[0]]
            assert got["x-forwarded-proto"] == [expect[1]]
            assert got["x-forwarded-host"] == [expect[2] or relay_host]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_paused_listener_hears_how_many_wait_at_the_relay(
    tmp_path: Path, transport: str
) -> None:
    """The inspector's "paused · N waiting at the relay": a relay in process is asked in
    memory; a relay over the websocket says it in each heartbeat's Pong."""
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay", heartbeat=0.1) as relay,
        running_listener(relay, handler.url, tmp_path / "h.db", transport) as lst,
        aiohttp.ClientSession() as http,
    ):
        await lst.listener.set_paused(True)
        await until(lambda: lst.listener.queued_at_relay() == 0)
        for i in range(3):
            async with http.post(lst.webhook_url, data=f"held {i}".encode()) as resp:
                assert resp.status == 202
        await until(lambda: lst.listener.queued_at_relay() == 3)
        await lst.listener.set_paused(False)
        await handler.wait_for(3)
        await until(lambda: lst.listener.queued_at_relay() == 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_delivery_one_listener_refused_is_forwarded_by_the_next_with_another_history(
    tmp_path: Path, transport: str
) -> None:
    """A refusal means the handler never had it: the next listener, whatever its history,
    forwards it instead of recording it as one the last listener "may have"."""
    (tmp_path / "bodies").write_text("not a folder")  # the first listener cannot record it
    body = b"z" * 100_000
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        async with running_listener(
            relay, handler.url, tmp_path / "a.db", transport, paused=True
        ) as a:
            async with http.post(a.webhook_url, data=body) as resp:
                assert resp.status == 202  # paused: queued
            await a.listener.set_paused(False)  # handed over from the queue, and refused
            await until(lambda: a.listener.queued_at_relay() == 1)
        (tmp_path / "bodies").unlink()
        async with running_listener(relay, handler.url, tmp_path / "b.db", transport) as b:
            (seen,) = await handler.wait_for(1)
            assert seen.body == body
            await until(lambda: [r.state for r in b.store.query(None, limit=5)] == ["done"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_live_delivery_the_relay_gave_up_on_is_not_forwarded_later(
    tmp_path: Path, transport: str
) -> None:
    """One forwarding slot, a slow first delivery: the second waits in the listener past the
    relay's deadline, and its sender gets 504. Forwarding it afterwards would reach the handler
    while the sender retries it: it is recorded, not sent. The relay caps the listener's
    handler timeout (max_handler_timeout) however the listener is linked to it."""
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay", max_handler_timeout=0.5, result_grace=0.1) as relay,
        running_listener(relay, handler.url, tmp_path / "h.db", transport, concurrency=1) as lst,
        aiohttp.ClientSession() as http,
    ):
        handler.delay = 1.5

        async def post(body: bytes) -> int:
            async with http.post(lst.webhook_url, data=body) as resp:
                return resp.status

        first = asyncio.create_task(post(b"slow"))
        await handler.wait_for(1)
        assert await post(b"waits") == 504
        assert await first == 504  # the handler took longer than the relay waits
        await until(lambda: len(lst.store.query(None, limit=5)) == 2)
        rows = {lst.store.get(r.id).body: r for r in lst.store.query(None, limit=5)}  # type: ignore[union-attr]
        assert rows[b"waits"].state == "interrupted"
        attempt = lst.store.first_attempt(rows[b"waits"].id)
        assert attempt is not None and "answered its sender 504" in (attempt.error or "")
        assert [s.body for s in handler.seen] == [b"slow"]
