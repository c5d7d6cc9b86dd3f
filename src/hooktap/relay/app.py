"""The relay's aiohttp application: its routes, and the parts they share.

The routes live in their own modules: `ingress` (what senders post to), `listener_ws` (the
listener's websocket), `channels_api` (making channels); `links` is what the relay does with a
listener's link, over a websocket or in-process.

`make_app()` is the one factory shared by `hooktap relay`, the embedded relay inside
`hooktap listen`, and the tests.
"""

from __future__ import annotations

from aiohttp import web

from hooktap import __version__
from hooktap.relay.channels_api import create_channel
from hooktap.relay.config import CONFIG, RelayConfig
from hooktap.relay.db import RelayDB
from hooktap.relay.hub import Hub
from hooktap.relay.ingress import ingress
from hooktap.relay.keys import DB, HUB, METRICS
from hooktap.relay.listener_ws import listener_socket
from hooktap.relay.metrics import RelayMetrics

__all__ = ["SERVICE", "RelayConfig", "make_app"]

SERVICE = "hooktap-relay"


def make_app(config: RelayConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body)
    app[CONFIG] = config
    app[DB] = RelayDB(config.data_dir / "relay.db")
    app[HUB] = Hub()
    app[METRICS] = RelayMetrics(app[DB], app[HUB])
    app.router.add_post("/api/channels", create_channel)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/c/{channel}/ws", listener_socket)
    app.router.add_route("*", "/c/{channel}", ingress)
    app.router.add_route("*", "/c/{channel}/{tail:.*}", ingress)
    app.on_shutdown.append(_close_links)
    app.on_cleanup.append(_close_db)
    return app


async def _close_links(app: web.Application) -> None:
    for link in list(app[HUB].links.values()):
        link.close()
        if link.ws is not None:
            await link.ws.close(code=1001, message=b"relay shutting down")


async def _close_db(app: web.Application) -> None:
    app[DB].close()


# --- channels and health ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"service": SERVICE, "version": __version__, "status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})
