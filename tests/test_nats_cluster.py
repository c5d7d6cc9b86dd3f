"""Relay instances on a real three-node NATS JetStream cluster: SIGKILL of the nats-server a
relay is connected to, and the relays keep serving on the other two nodes.

Two `hooktap relay --nats <all three URLs>` processes, real Listeners and real handlers.
Which node relay B is connected to is read from B's own TCP connections (psutil), and that
node is made the queue stream's leader before it is killed: the deliveries kept while no
listener was connected must come back from the copies on the surviving nodes. The live route
is used again as soon as /readyz says 200 (as a load balancer would), and a listener attaches
right then too: while a stream has no leader yet, the relay's 5xx makes it retry, not end.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import nats
import psutil
import pytest

from hooktap.relay.broker.nats import HANDED_BUCKET, LIVE, STREAM
from hooktap.relay.broker.nats_bytes import BYTES_STREAM
from hooktap.relay.broker.nats_channels import BUCKET
from support.nats_cluster import NatsCluster, Node, running_cluster
from support.procs import Procs
from support.servers import running_handler, running_listener
from test_nats_relay import channel_for

pytestmark = pytest.mark.cluster


async def assert_replicated(cluster: NatsCluster) -> None:
    """The queue and both buckets are kept on all three nodes: one may die."""
    nc = await nats.connect(cluster.urls)
    try:
        js = nc.jetstream()
        for stream in (STREAM, BYTES_STREAM, f"KV_{BUCKET}", f"KV_{HANDED_BUCKET}"):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3, (stream, info.config.num_replicas)
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2, stream
    finally:
        await nc.close()


def node_of(pid: int, cluster: NatsCluster) -> Node:
    """The node the process `pid` holds its NATS connection to."""
    ports = {c.raddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr}
    (node,) = [node for node in cluster.alive() if node.port in ports]
    return node


async def lead_stream_on(cluster: NatsCluster, node: Node) -> None:
    """Move the queue stream's leader to `node` (JetStream's stepdown with a preferred
    placement), so killing `node` also kills the copy the stream was served from."""
    nc = await nats.connect(cluster.urls)
    try:
        js = nc.jetstream()
        for _ in range(50):
            info = await js.stream_info(STREAM)
            assert info.cluster is not None
            if info.cluster.leader == node.name:
                return
            ask = json.dumps({"placement": {"preferred": node.name}}).encode()
            reply = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{STREAM}", ask, 5)
            answer = json.loads(reply.data)
            assert "error" not in answer or answer["error"].get("code") == 503, answer
            await asyncio.sleep(0.2)  # the election takes a few heartbeats; nothing to await
        raise AssertionError(f"{STREAM}'s leader never moved to {node.name}")
    finally:
        await nc.close()


async def until_ready(http: aiohttp.ClientSession, relay: str, timeout: float = 20) -> None:
    """/readyz says 200 again (its NATS connection and JetStream answer)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with http.get(relay + "/readyz") as resp:
            if resp.status == 200:
                return
            why = await resp.text()
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{relay}/readyz: {why}")
        await asyncio.sleep(0.1)


async def test_sigkill_of_the_nats_node_a_relay_is_connected_to(
    tmp_path: Path, procs: Procs
) -> None:
    with running_cluster(tmp_path / "nats") as cluster:
        nats_args = ("--nats", cluster.nats_option)
        a_proc, a = procs.relay(tmp_path / "ha", "--data-dir", str(tmp_path / "a"), *nats_args)
        b_proc, b = procs.relay(tmp_path / "hb", "--data-dir", str(tmp_path / "b"), *nats_args)
        await assert_replicated(cluster)
        assert any("queue (stream HOOKTAP_QUEUE) in 3 replicas" in x for x in a_proc.err_lines)
        async with (
            running_handler() as live_handler,
            running_handler() as kept_handler,
            aiohttp.ClientSession() as http,
        ):

            async def post(relay: str, channel: str, body: str) -> int:
                async with http.post(f"{relay}/c/{channel}", data=body.encode()) as resp:
                    return resp.status

            live = (await channel_for(b)).channel  # its listener on B, its webhooks to A
            kept = (await channel_for(a)).channel  # its webhooks wait for a listener
            kept_db = tmp_path / "kept.db"
            async with running_listener(b, live_handler.url, tmp_path / "live.db"):
                before = [f"before-{i}" for i in range(5)]
                assert [await post(a, live, body) for body in before] == [200] * 5
                statuses = [await post((a, b)[i % 2], kept, f"kept-{i}") for i in range(10)]
                assert statuses == [202] * 10

                victim = node_of(b_proc.popen.pid, cluster)
                assert cluster.holding(LIVE + live) == [victim]
                await lead_stream_on(cluster, victim)
                victim.kill()

                await until_ready(http, a)
                await until_ready(http, b)
                # B took its subscriptions along to a surviving node: A's senders reach the
                # listener on B through NATS again, answered by the handler (not kept).
                assert cluster.holding(LIVE + live) != []
                after = [f"after-{i}" for i in range(5)]
                assert [await post(a, live, body) for body in after] == [200] * 5
                assert [await post(b, live, body) for body in ("on-b",)] == [200]
            # One delivery at a time to the handler: the order it sees is the relay's order.
            async with running_listener(a, kept_handler.url, kept_db, concurrency=1):
                await kept_handler.wait_for(10, timeout=20)
        assert [s.body.decode() for s in live_handler.seen] == [*before, *after, "on-b"]
        assert [s.body.decode() for s in kept_handler.seen] == [f"kept-{i}" for i in range(10)]
        assert len(cluster.alive()) == 2
