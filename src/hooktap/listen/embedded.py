"""The relay `hooktap listen` runs for itself on loopback when no --relay is given.

If the port already serves a hooktap relay (another `hooktap listen` on this machine), we
join it; if something else holds the port, the user is told which option picks another.
"""

from __future__ import annotations

import errno
import json

import aiohttp
from aiohttp import web

from hooktap.home import relay_data_dir
from hooktap.listen.channel import RelayRefused
from hooktap.relay.embed import (
    SERVICE,
    InProcessRelay,
    RelayConfig,
    make_app,
    serve,
    stop_relay,
)

EMBEDDED_DRAIN = 1.0  # seconds


class EmbeddedRelay:
    def __init__(self, port: int, heartbeat: float = 5.0) -> None:
        self.port = port
        self.heartbeat = heartbeat
        self.url = f"http://127.0.0.1:{port}"
        self._runner: web.AppRunner | None = None
        self._relay: InProcessRelay | None = None

    @property
    def owned(self) -> bool:
        return self._runner is not None

    @property
    def app(self) -> web.Application:
        """The relay app this process serves (only when `owned`): --public's ingress."""
        assert self._runner is not None
        return self._runner.app

    @property
    def relay(self) -> InProcessRelay:
        """The relay this process serves (only when `owned`), for the in-process link: the
        same object for as long as the same app is served."""
        app = self.app
        if self._relay is None or self._relay.app is not app:
            self._relay = InProcessRelay(app)
        return self._relay

    async def start(self) -> None:
        """Serve on the port, or join the hooktap relay already there."""
        if await self.try_serve():
            return
        if not await is_hooktap_relay(self.url):
            raise RelayRefused(
                f"port {self.port} is in use by another program, not a hooktap relay; "
                "choose a free one with --port"
            )

    async def try_serve(self) -> bool:
        """Bind the port ourselves; False when it is taken (by a relay we can join or not)."""
        # A short drain: `hooktap listen` stops its own deliveries before its relay, so the
        # wait is only for listeners that joined this relay from other processes.
        config = RelayConfig(
            data_dir=relay_data_dir(), heartbeat=self.heartbeat, drain_timeout=EMBEDDED_DRAIN
        )
        try:
            runner = await serve(make_app(config), "127.0.0.1", self.port)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise RelayRefused(f"cannot serve the relay on port {self.port}: {exc}") from None
        self._runner = runner
        if self.port == 0:  # tests ask for any free port; the URL follows the real one
            self.port = runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{self.port}"
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await stop_relay(self._runner)
            self._runner = None


async def is_hooktap_relay(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5)) as http,
            http.get(f"{url}/healthz") as resp,
        ):
            body = json.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return isinstance(body, dict) and body.get("service") == SERVICE
