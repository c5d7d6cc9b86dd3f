"""The listener that owns the embedded relay talks to it by function call: same answers,
same queue, same pause, as over a websocket."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from hooktap.listen.events import ListenerEvent, Ready
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.listen.transport.inprocess import InProcessTransport
from hooktap.store import Store
from support.servers import running_handler


async def test_embedded_listener_forwards_pauses_queues_and_resumes(tmp_path: Path) -> None:
    async with running_handler() as handler:
        store = Store(tmp_path / "history.db")
        listener = Listener(ListenerConfig(target=parse_target(handler.url), port=0), store)
        ready: asyncio.Future[Ready] = asyncio.get_running_loop().create_future()

        def on_event(event: ListenerEvent) -> None:
            if isinstance(event, Ready) and not ready.done():
                ready.set_result(event)

        listener.subscribe(on_event)
        task = asyncio.create_task(listener.run())
        try:
            url = (await asyncio.wait_for(ready, 10)).webhook_url
            assert listener.embedded is not None and listener.embedded.owned
            # No websocket: the in-process link carries it.
            assert isinstance(listener.connection, InProcessTransport)
            async with aiohttp.ClientSession() as http:
                handler.status, handler.reply = 418, b"teapot"
                async with http.post(url + "/a?b=1", data=b"live") as resp:
                    assert resp.status == 418 and await resp.read() == b"teapot"
                handler.status, handler.reply = 200, b"ok"
                await listener.set_paused(True)
                for body in (b"held 1", b"held 2"):
                    async with http.post(url, data=body) as resp:
                        assert resp.status == 202
                assert [s.body for s in handler.seen] == [b"live"]
                await listener.set_paused(False)
                await handler.wait_for(3)
                assert [s.body for s in handler.seen] == [b"live", b"held 1", b"held 2"]
                assert handler.seen[0].path_qs == "/a?b=1"

                async def post(i: int) -> int:
                    async with http.post(url, data=f"burst {i}".encode()) as resp:
                        return resp.status

                assert await asyncio.gather(*(post(i) for i in range(40))) == [200] * 40
            await handler.wait_for(43)
            assert len(store.query(None, limit=100)) == 43
        finally:
            await listener.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            store.close()


async def test_embedded_relay_keeps_what_the_listener_cannot_record(tmp_path: Path) -> None:
    """In-process the refusal takes the same road as over the websocket: the sender gets 202
    at once, the relay's queue keeps the delivery, and a resume hands it over once history
    can take it again."""
    (tmp_path / "bodies").write_text("not a folder")
    body = b"y" * 100_000
    async with running_handler() as handler:
        store = Store(tmp_path / "history.db")
        listener = Listener(ListenerConfig(target=parse_target(handler.url), port=0), store)
        ready: asyncio.Future[Ready] = asyncio.get_running_loop().create_future()
        listener.subscribe(
            lambda e: ready.set_result(e) if isinstance(e, Ready) and not ready.done() else None
        )
        task = asyncio.create_task(listener.run())
        try:
            url = (await asyncio.wait_for(ready, 10)).webhook_url
            async with aiohttp.ClientSession() as http, http.post(url, data=body) as resp:
                assert resp.status == 202
                assert "could not record it" in (await resp.json())["reason"]
            assert handler.seen == [] and store.query(None, limit=5) == []
            (tmp_path / "bodies").unlink()
            await listener.set_paused(True)
            await listener.set_paused(False)
            (seen,) = await handler.wait_for(1)
            assert seen.body == body
        finally:
            await listener.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            store.close()
