"""The one door a tunnel provider is pointed at: this listener's `/c/<channel>[/tail]`.

The relay's own socket also serves `POST /api/channels`, the listeners' websocket,
`/metrics` and `/healthz`. A tunnel pointed there would publish all of them, and filtering
by path in front of it is one missed case away from a leak. So the public side is a second
aiohttp application on a socket of its own (127.0.0.1, port 0) whose only routes are this
channel's ingress; everything else is a 404 because nothing else exists there.

It shares the relay's state (every object under the relay app's keys): a delivery that
comes in here is the same delivery, in the same queue and the same listener link, as one
posted to the loopback URL. Only the settings differ, in one field (see _LOOPBACK).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re

from aiohttp import web

from hooktap.public.base import AsyncScoped
from hooktap.relay.config import CONFIG, problem
from hooktap.relay.ingress import ingress
from hooktap.relay.server import serve

PROBE_HEADER = "X-Hooktap-Probe"

_CHANNEL = re.compile(r"[A-Za-z0-9_-]+")

# Only the provider's own process connects to this socket, from loopback: its
# X-Forwarded-* describe the real sender (and that the sender used https), so the handler
# is told those rather than "127.0.0.1 over http".
_LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


class PublicIngress(AsyncScoped):
    """Serves `/c/<channel>[/tail]` of `relay_app` alone, on its own loopback socket.

        async with PublicIngress(relay_app, channel) as public:
            ...point the provider at public.url...

    A request that carries `X-Hooktap-Probe: <nonce>` with a nonce from `expect_probe` is
    answered here and goes no further: it never reaches the handler, the history or the
    relay's queue and counters."""

    def __init__(self, relay_app: web.Application, channel: str) -> None:
        if not _CHANNEL.fullmatch(channel):
            raise ValueError(f"not a channel id: {channel!r}")
        self.channel = channel
        self.url = ""
        self._relay_app = relay_app
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        relay = self._relay_app
        config = relay[CONFIG]
        app = web.Application(client_max_size=config.max_body)
        # The relay's service object (its queue, links, counters, limits), and whatever the
        # relay app gains later, is the same object here: this door is the relay's ingress on
        # another socket. Read once the relay is running, so all are set. Only the door's own
        # settings differ.
        for key in relay:
            app[key] = relay[key]
        app[CONFIG] = dataclasses.replace(
            config, trusted_proxies=[*config.trusted_proxies, *_LOOPBACK]
        )
        mine = self.channel  # letters, digits, '-' and '_': nothing a route pattern reads
        app.router.add_route("*", f"/c/{{channel:{mine}}}", self._handle)
        app.router.add_route("*", f"/c/{{channel:{mine}}}/{{tail:.*}}", self._handle)
        app.router.add_route("*", "/c/{channel}", _other_channel)
        app.router.add_route("*", "/c/{channel}/{tail:.*}", _other_channel)
        app.router.add_route("*", "/{tail:.*}", _nothing_here)
        return app

    async def start(self) -> str:
        # What the tunnel forwards from the internet gets the relay's limits and refusals.
        runner = await serve(self.make_app(), "127.0.0.1", 0)
        self._runner = runner
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        for waiter in self._probes.values():
            waiter.cancel()
        self._probes.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- probes --------------------------------------------------------------------------

    def expect_probe(self, nonce: str) -> asyncio.Future[None]:
        """A future that completes when a request carrying `nonce` arrives here."""
        waiter = self._probes.get(nonce)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._probes[nonce] = waiter
        return waiter

    def forget_probe(self, nonce: str) -> None:
        """After this the nonce is an ordinary header again: it is not recognised forever."""
        waiter = self._probes.pop(nonce, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        nonce = request.headers.get(PROBE_HEADER)
        if nonce is not None and nonce in self._probes:
            waiter = self._probes[nonce]
            if not waiter.done():
                waiter.set_result(None)
            return web.json_response({"probe": nonce}, headers={PROBE_HEADER: nonce})
        if request.headers.get("Upgrade", "").strip().lower() == "websocket":
            # The listener's websocket lives on the loopback side only.
            return problem(404, "no websocket is served through the public URL")
        return await ingress(request)


async def _other_channel(request: web.Request) -> web.Response:
    # Worded as the relay words an unknown channel, so a prober learns nothing either way.
    return problem(404, f"no channel {request.match_info['channel']!r} on this relay")


async def _nothing_here(request: web.Request) -> web.Response:
    return problem(404, "nothing is served here through the public URL; webhooks go to /c/...")
