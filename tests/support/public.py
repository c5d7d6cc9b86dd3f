"""The stage for `--public` tests: the real relay app (make_app) served on loopback, a real
Listener connected to it recording into a real SQLite history, and a recording handler; plus
the test-only way to reach a public name that only a stand-in serves."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from hooktap.public.probe import ConnectToResolver
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.keys import RELAY
from support.servers import Handler, RunningListener, running_handler, running_listener, serve

FAKE_CLOUDFLARED = Path(__file__).with_name("fake_cloudflared.py")


@dataclass
class Stage:
    relay_app: web.Application
    relay_url: str
    handler: Handler
    listening: RunningListener

    @property
    def channel(self) -> str:
        assert self.listening.listener.creds is not None
        return self.listening.listener.creds.channel

    def received(self) -> float:
        """Requests the relay counted as deliveries, on any of its doors."""
        value = self.relay_app[RELAY].metrics.registry.get_sample_value(
            "hooktap_relay_deliveries_received_total"
        )
        return value or 0.0

    def queued(self) -> int:
        return self.relay_app[RELAY].depth(self.channel)

    def history(self) -> int:
        return len(self.listening.store.query(None, limit=100))


@contextlib.asynccontextmanager
async def staged(tmp_path: Path) -> AsyncIterator[Stage]:
    app = make_app(RelayConfig(data_dir=tmp_path / "relay"))
    async with (
        running_handler() as handler,
        serve(app) as relay_url,
        running_listener(relay_url, handler.url, tmp_path / "history.db") as listening,
    ):
        yield Stage(app, relay_url, handler, listening)


class Edges(Mapping[str, tuple[str, int]]):
    """Public name -> the local port that serves it, as the stand-ins write them into a
    folder (one file per name). Read at every lookup: a restarted tunnel adds a name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __getitem__(self, host: str) -> tuple[str, int]:
        try:
            ip, _, port = (self.folder / host).read_text().strip().rpartition(":")
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(host) from None
        return ip, int(port)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(p.name for p in self.folder.iterdir()) if self.folder.exists() else [])

    def __len__(self) -> int:
        return len(list(iter(self)))


def client(connect_to: Mapping[str, tuple[str, int]]) -> aiohttp.ClientSession:
    """An HTTP client that reaches the stand-ins' public names (trusting SSL_CERT_FILE)."""
    connector = aiohttp.TCPConnector(
        ssl=ssl.create_default_context(),  # now: aiohttp's default was made at import time
        resolver=ConnectToResolver(connect_to),
        force_close=True,
    )
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15))
