"""The relay's aiohttp application: its routes, and the parts they share.

The routes live in their own modules: `ingress` (what senders post to), `listener_ws` (the
listener's websocket), `channels_api` (making channels). Their state is one object,
`service.RelayService` under `keys.RELAY`: what the relay does with a delivery and with a
listener's link, over a websocket or in-process.

`make_app()` is the one factory shared by `hooktap relay`, the embedded relay inside
`hooktap listen`, and the tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from hooktap import __version__
from hooktap.relay.broker import KeepFailed
from hooktap.relay.broker.nats_connect import NatsConnect
from hooktap.relay.channels_api import create_channel
from hooktap.relay.config import CONFIG, RelayConfig
from hooktap.relay.drain import release
from hooktap.relay.ingress import ingress
from hooktap.relay.keys import RELAY
from hooktap.relay.listener_ws import listener_socket
from hooktap.relay.service import RelayService

__all__ = ["SERVICE", "RelayConfig", "make_app"]

SERVICE = "hooktap-relay"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    config: RelayConfig, nats: list[str] | None = None, nats_connect: NatsConnect | None = None
) -> web.Application:
    """`nats`: NATS server URLs, for instances sharing a JetStream cluster (`hooktap relay
    --nats`); connected as the app starts, with `nats_connect`'s credentials and TLS. None:
    the SQLite queue in `config.data_dir`."""
    app = web.Application(client_max_size=config.max_body)
    # The door's settings (what serve() and the proxy headers read; the --public door has
    # its own), and the relay itself, which every door shares.
    app[CONFIG] = config
    app[RELAY] = RelayService(config, nats, nats_connect)
    app.router.add_post("/api/channels", create_channel)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/c/{channel}/ws", listener_socket)
    app.router.add_route("*", "/c/{channel}", ingress)
    app.router.add_route("*", "/c/{channel}/{tail:.*}", ingress)
    app.on_startup.append(_start)
    app.on_shutdown.append(release)
    app.on_cleanup.append(_close)
    return app


async def _start(app: web.Application) -> None:
    await app[RELAY].start()


async def _close(app: web.Application) -> None:
    await app[RELAY].close()


# --- channels and health ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP, and (with --nats) has a NATS client that may
    connect. Whether it should get traffic is /readyz. A client that NATS closed for good
    (nats-py never reconnects it; the broker builds a new one, relay/broker/nats_revive.py)
    fails this too, so an orchestrator may restart a relay that stays that way."""
    dead = getattr(request.app[RELAY].broker, "dead", None)  # only JetStreamBroker has one
    if dead is not None:
        return _not_ready("nats-closed", dead)
    return web.json_response({"service": SERVICE, "version": __version__, "status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the relay can keep a delivery (its database answers, its write lock can be
    taken; with --nats, its NATS connection and JetStream answer) and is not stopping. A
    load balancer sends senders elsewhere on a 503. With --nats, `replicas` says how many
    NATS nodes keep the queue, so a health page shows one (lost with its node) as degraded."""
    relay = request.app[RELAY]
    if relay.drain.draining:
        return _not_ready("draining", "the relay is stopping (draining)")
    try:
        await relay.broker.ping()
    except KeepFailed as exc:
        return _not_ready("db-error" if relay.nats is None else "nats-error", str(exc))
    body: dict[str, object] = {"service": SERVICE, "version": __version__, "status": "ready"}
    replicas = getattr(relay.broker, "replicas", None)  # only JetStreamBroker keeps copies
    if replicas is not None:
        body["replicas"] = replicas
    return web.json_response(body)


def _not_ready(status: str, reason: str) -> web.Response:
    body = {"service": SERVICE, "version": __version__, "status": status, "error": reason}
    return web.json_response(body, status=503)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[RELAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
