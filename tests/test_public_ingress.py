"""The public ingress on its own loopback socket, and the probe, with no provider in between:
the real relay app, a real Listener and history, a recording handler."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hooktap.listen.events import Ready
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.public import PROBE_HEADER, PublicIngress, PublicUnavailable, probe
from hooktap.store import Store
from support.procs import free_port
from support.public import staged
from support.servers import running_handler, serve


async def test_only_this_channels_ingress_is_served(tmp_path: Path) -> None:
    async with (
        staged(tmp_path) as stage,
        PublicIngress(stage.relay_app, stage.channel) as door,
        aiohttp.ClientSession() as http,
    ):
        assert door.url.startswith("http://127.0.0.1:") and door.url != stage.relay_url
        mine = f"{door.url}/c/{stage.channel}"
        async with http.put(mine + "/deep/tail?q=1", data=b"one") as resp:
            assert resp.status == 200 and await resp.read() == b"ok"
        async with http.post(mine, data=b"two") as resp:
            assert resp.status == 200
        # /ws under this channel is a delivery path there, not the listener's socket.
        async with http.post(mine + "/ws", data=b"three") as resp:
            assert resp.status == 200
        assert [(s.method, s.path_qs, s.body) for s in stage.handler.seen] == [
            ("PUT", "/deep/tail?q=1", b"one"),
            ("POST", "/", b"two"),
            ("POST", "/ws", b"three"),
        ]
        assert stage.history() == 3
        for method, path in [
            ("POST", "/api/channels"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
            ("POST", "/c/another"),
            ("POST", "/c/another/tail"),
            ("GET", "/"),
        ]:
            async with http.request(method, door.url + path, json={}) as resp:
                assert resp.status == 404, path
                assert isinstance((await resp.json())["error"], str)
        # Another channel is refused in the words the relay uses for one it does not have.
        async with (
            http.post(f"{door.url}/c/another") as via_door,
            http.post(f"{stage.relay_url}/c/another") as via_relay,
        ):
            assert await via_door.json() == await via_relay.json()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                mine + "/ws",
                headers={"Authorization": f"Bearer {stage.listening.listener.creds.token}"},  # type: ignore[union-attr]
            )
        assert refused.value.status == 404
        assert len(stage.handler.seen) == 3


async def test_probe_is_answered_by_the_door_and_goes_no_further(tmp_path: Path) -> None:
    async with (
        staged(tmp_path) as stage,
        PublicIngress(stage.relay_app, stage.channel) as door,
        aiohttp.ClientSession() as http,
    ):
        mine = f"{door.url}/c/{stage.channel}"
        assert await probe(mine, door, timeout=5) >= 0
        assert stage.handler.seen == []
        assert (stage.received(), stage.queued(), stage.history()) == (0, 0, 0)

        # The header alone opens nothing: a nonce the door did not issue is a delivery.
        async with http.post(mine, data=b"forged", headers={PROBE_HEADER: "guess"}) as resp:
            assert resp.status == 200 and await resp.read() == b"ok"
        # Nor does an issued one, once its probe is over.
        door.expect_probe("spent")
        door.forget_probe("spent")
        async with http.post(mine, data=b"late", headers={PROBE_HEADER: "spent"}) as resp:
            assert resp.status == 200
        assert [s.body for s in stage.handler.seen] == [b"forged", b"late"]
        assert stage.history() == 2


async def test_probe_failures_say_what_came_back(tmp_path: Path) -> None:
    """A URL that answers, but not from this listener, and one nobody serves."""

    async def imposter(request: web.Request) -> web.Response:
        return web.Response(text="a parked domain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", imposter)
    async with (
        staged(tmp_path) as stage,
        PublicIngress(stage.relay_app, stage.channel) as door,
        serve(app) as elsewhere,
    ):
        with pytest.raises(PublicUnavailable, match="HTTP 200: a parked domain") as failed:
            await probe(f"{elsewhere}/c/{stage.channel}", door, timeout=0.6)
        assert failed.value.kind == "failed"
        with pytest.raises(PublicUnavailable, match="did not come back"):
            await probe(f"http://127.0.0.1:{free_port()}/c/x", door, timeout=0.6)
        assert stage.handler.seen == []


async def test_the_embedded_relays_app_serves_the_door_too(tmp_path: Path) -> None:
    """What `hooktap listen --public` has: the relay it embeds, linked in process."""
    async with running_handler() as handler:
        store = Store(tmp_path / "history.db")
        listener = Listener(ListenerConfig(target=parse_target(handler.url), port=0), store)
        ready = asyncio.Event()
        listener.subscribe(lambda event: ready.set() if isinstance(event, Ready) else None)
        creds = await listener.prepare()
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(ready.wait(), 10)
            assert listener.embedded is not None and listener.embedded.owned
            async with (
                PublicIngress(listener.embedded.app, creds.channel) as door,
                aiohttp.ClientSession() as http,
            ):
                mine = f"{door.url}/c/{creds.channel}"
                await probe(mine, door, timeout=5)
                async with http.post(mine, data=b"in process") as resp:
                    assert resp.status == 200 and await resp.read() == b"ok"
            assert [s.body for s in handler.seen] == [b"in process"]
            assert len(store.query(None, limit=10)) == 1
        finally:
            await listener.stop()
            await asyncio.wait_for(task, 10)
            store.close()


def test_a_channel_id_is_checked() -> None:
    with pytest.raises(ValueError, match="not a channel id"):
        PublicIngress(web.Application(), "a}/{b")
