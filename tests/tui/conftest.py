"""Fixtures for the inspector's tests: a real relay, handler and listener per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from history import fixed_history
from tui_helpers import Session

from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.store import Store
from support.servers import in_process_relay, running_handler, running_relay


@pytest.fixture
def transport() -> str:
    """How the session's listener reaches the relay: test_live.py runs over each of
    support.servers.TRANSPORTS."""
    return "websocket"


@pytest.fixture
async def session(tmp_path: Path, secret: str, transport: str) -> AsyncIterator[Session]:
    async with (
        running_relay(tmp_path / "relay") as relay_url,
        running_handler() as handler,
        aiohttp.ClientSession() as http,
    ):
        store = Store(tmp_path / "history.db")
        config = ListenerConfig(
            target=parse_target(handler.url + "/webhooks/pivotal"),
            relay_url=relay_url,
            secret=secret,
        )
        in_process = in_process_relay(relay_url) if transport == "in-process" else None
        listener = Listener(config, store, in_process=in_process)
        try:
            yield Session(relay_url, handler, store, listener, secret, http)
        finally:
            await listener.stop()
            store.close()


@pytest.fixture
def history(tmp_path: Path) -> Iterator[Store]:
    """The fixed history of tests/tui/history.py, in a fresh file."""
    store = fixed_history(tmp_path / "history.db")
    yield store
    store.close()
