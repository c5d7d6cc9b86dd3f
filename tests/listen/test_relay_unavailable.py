"""A relay that answers 5xx while a listener connects is unavailable for now, not refusing it:
the listener keeps retrying with its backoff and connects once the relay can serve it.

Seen on relays sharing NATS: right after a NATS node died, a listener whose channel the relay
could not read was told 403 on /ws, re-claimed its channel by token, and that re-claim was
answered 504 (the channels bucket had no leader yet); the listener took it for a refusal and
ended. Here the relay is a real one on SQLite whose store cannot be written for a while (the
test holds its write lock, as a backup would), with real parts throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path

from hooktap.listen import channel as channels
from hooktap.listen.events import ConnectionChanged, ListenerEvent, Ready
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.store import Store
from support.servers import running_handler, running_relay


async def test_a_relay_that_cannot_give_the_channel_back_yet_is_retried(tmp_path: Path) -> None:
    async with (
        running_relay(tmp_path / "first") as first,
        running_relay(tmp_path / "relay") as relay,
        running_handler() as handler,
    ):
        # The listener keeps a channel this relay does not know (made elsewhere, or its data
        # was lost): /ws answers 403 and the listener re-claims the channel by its token.
        creds = await channels.create(first)
        channels.remember(dataclasses.replace(creds, relay=relay))
        locked = sqlite3.connect(tmp_path / "relay" / "relay.db", isolation_level=None)
        locked.execute("BEGIN IMMEDIATE")  # the re-claim cannot write: 5xx after its wait

        store = Store(tmp_path / "history.db")
        config = ListenerConfig(target=parse_target(handler.url), relay_url=relay)
        listener = Listener(config, store)
        events: list[ListenerEvent] = []
        retrying, ready = asyncio.Event(), asyncio.Event()

        def collect(event: ListenerEvent) -> None:
            events.append(event)
            if isinstance(event, ConnectionChanged) and event.state == "disconnected":
                retrying.set()
            if isinstance(event, Ready):
                ready.set()

        listener.subscribe(collect)
        task = asyncio.create_task(listener.run())
        try:

            async def until(event: asyncio.Event) -> None:
                waiter = asyncio.create_task(event.wait())
                await asyncio.wait({task, waiter}, timeout=20, return_when="FIRST_COMPLETED")
                waiter.cancel()
                assert not task.done(), f"the listener ended: {task.exception()!r}"
                assert event.is_set(), events

            await until(retrying)
            locked.rollback()  # the relay's store can be written again
            await until(ready)
            gone = next(
                e for e in events if isinstance(e, ConnectionChanged) and e.state == "disconnected"
            )
            assert "could not give this listener its channel back" in gone.detail, gone
            assert gone.retry_in is not None
        finally:
            locked.close()
            await listener.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            store.close()
