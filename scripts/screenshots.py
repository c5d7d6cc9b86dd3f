"""Make the README's screenshots of the inspector from a real session.

A real relay (hooktap.relay.app.make_app), a real Listener and a small handler that verifies
signatures as Pivotal's docs show, all on loopback; realistic Pivotal deliveries from the
event catalog, signed with signed_headers, including the cases the inspector exists for: a
handler bug (500, then Pivotal's retry with the same svix-id), a slow answer, a bad secret,
a stale timestamp. Then the keys a user would press, and an SVG of each screen. A second
session routes by event type to three handlers (one of them not running, so the header says
it is down) with --events leaving some types out.

    python scripts/screenshots.py            # writes screenshots/*.svg
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from svix.webhooks import Webhook, WebhookVerificationError

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "screenshots"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SIZE = (140, 42)
FILES = {
    "list": "inspector-list.svg",
    "small": "inspector-80x24.svg",
    "detail": "inspector-detail.svg",
    "editor": "inspector-editor.svg",
    "help": "inspector-help.svg",
    "routes": "inspector-routes.svg",
}
# The README's example ports for the routes scene, when they are free here.
ROUTE_PORTS = {"customers": 8001, "tasks": 8002, "fallback": 8000}


class SampleHandler:
    """A handler like the FastAPI example in Pivotal's docs, with the bugs we want to show."""

    def __init__(self) -> None:
        self.broken = {"customer.churned"}  # answers 500 until "fixed"
        self.slow = {"task.overdue"}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(SECRET).verify(
                body,
                {
                    k: request.headers.get(k, "")
                    for k in ("svix-id", "svix-timestamp", "svix-signature")
                },
            )
        except WebhookVerificationError:
            return web.json_response({"error": "invalid signature"}, status=401)
        kind = (await request.json()).get("type", "")
        if kind in self.slow:
            await asyncio.sleep(10.4)
        if kind in self.broken:
            return web.Response(status=500, text="KeyError: 'health_score'")
        return web.json_response({"received": True, "type": kind})


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def free_port(preferred: int) -> int:
    """`preferred` when nothing listens there, else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def handler_app(handler: SampleHandler, path: str) -> web.Application:
    app = web.Application()
    app.router.add_post(path, handler.handle)
    return app


async def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="hooktap-screens-"))
    os.environ["HOOKTAP_HOME"] = str(home)
    # Imported after HOOKTAP_HOME is set, like the CLI.
    from hooktap.listen.listener import Listener, ListenerConfig
    from hooktap.listen.target import parse_target
    from hooktap.pivotal import catalog
    from hooktap.pivotal.signing import signed_headers
    from hooktap.relay.app import RelayConfig, make_app
    from hooktap.store import Store
    from hooktap.tui.app import HooktapApp
    from hooktap.tui.screens.editor import EditorScreen
    from hooktap.tui.screens.help import HelpScreen

    handler = SampleHandler()
    relay_runner, relay_url = await serve(make_app(RelayConfig(data_dir=home / "relay")))
    handler_runner, handler_url = await serve(handler_app(handler, "/webhooks/pivotal"))
    store = Store(home / "history.db")
    listener = Listener(
        ListenerConfig(
            target=parse_target(handler_url + "/webhooks/pivotal"),
            relay_url=relay_url,
            secret=SECRET,
            timeout=15,
        ),
        store,
    )
    app = HooktapApp(store, listener)

    async def until(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the session did not get there")
            await pilot.pause(0.05)

    async with aiohttp.ClientSession() as http, app.run_test(size=SIZE) as pilot:
        await until(lambda: app.webhook_url and listener.state == "connected")

        async def deliver(
            kind: str, *, secret: str = SECRET, age: float = 0, msg_id: str | None = None
        ) -> str:
            body = catalog.encode(catalog.sample(kind))
            headers = signed_headers(secret, body, msg_id=msg_id, timestamp=int(time.time() - age))
            async with http.post(app.webhook_url or "", data=body, headers=headers) as resp:
                await resp.read()
            return next(v for n, v in headers if n == "svix-id")

        slow = asyncio.create_task(deliver("task.overdue"))
        for kind in ("webhook.ping", "customer.created", "onboarding.delayed", "contact.updated"):
            await deliver(kind)
        churned = await deliver("customer.churned")
        await deliver("task.completed", secret="whsec_" + "Q" * 32)  # the wrong secret
        await deliver("customer.at_risk", age=7 * 60)  # stale: a replayed old capture
        await deliver("phase.changed")
        await deliver("customer.churned", msg_id=churned)  # Pivotal's retry, same svix-id
        await deliver("task.updated")
        await slow
        await until(lambda: len(app.deliveries.rows) == 11)
        await until(lambda: all(r.status is not None for r in app.deliveries.rows))

        # The list, following the newest; the detail of a failed delivery below it.
        lst = app.deliveries
        while lst.selected is None or lst.selected.event_type != "customer.churned":
            await pilot.press("down")
        await until(lambda: app.detail_settled)
        await pilot.pause(0.3)
        app.save_screenshot(FILES["list"], str(OUT))

        # The same at 80x24: the columns that tell a failure apart, the header on two lines.
        await pilot.resize_terminal(80, 24)
        await until(lambda: app.detail_settled)
        await pilot.pause(0.5)
        app.save_screenshot(FILES["small"], str(OUT))
        await pilot.resize_terminal(*SIZE)
        await pilot.pause(0.3)

        # Fix the handler, re-send with `r`, and look at the Attempts tab.
        handler.broken.clear()
        await pilot.press("r")
        await until(lambda: lst.selected is not None and lst.selected.attempts == 2)
        await until(lambda: "#2  replay" in str(app.detail.query_one("#attempts-body").render()))
        await pilot.pause(0.5)
        app.save_screenshot(FILES["detail"], str(OUT))

        # Edit the body and headers before re-sending.
        await pilot.press("e")
        await until(lambda: isinstance(app.screen, EditorScreen))
        await pilot.press("ctrl+o")
        await pilot.pause(0.3)
        app.save_screenshot(FILES["editor"], str(OUT))
        await pilot.press("escape", "escape")

        await until(lambda: not isinstance(app.screen, EditorScreen))
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.3)
        app.save_screenshot(FILES["help"], str(OUT))
        await pilot.press("escape")
        await app.action_quit()

    store.close()
    await handler_runner.cleanup()
    await routes_scene(home, relay_url)
    await relay_runner.cleanup()
    for name in FILES.values():
        print(OUT / name)


async def routes_scene(home: Path, relay_url: str) -> None:
    """One listener for a whole app: customer.* to one handler, task.* to another that is not
    running (the header says so before a webhook fails on it), the rest to the fallback, and
    --events leaving onboarding and phase events out (stored, dim, "filtered")."""
    from hooktap.listen.listener import Listener, ListenerConfig
    from hooktap.listen.routes import build_routing
    from hooktap.pivotal import catalog
    from hooktap.pivotal.signing import signed_headers
    from hooktap.store import Store
    from hooktap.tui.app import HooktapApp

    ports = {name: free_port(port) for name, port in ROUTE_PORTS.items()}
    customers = await serve(handler_app(SampleHandler(), "/hooks"), ports["customers"])
    fallback = await serve(handler_app(SampleHandler(), "/webhooks/pivotal"), ports["fallback"])
    routing = build_routing(
        [
            f"customer.*=localhost:{ports['customers']}/hooks",
            f"task.*=localhost:{ports['tasks']}/webhooks/pivotal",  # nothing listens there
            f"localhost:{ports['fallback']}/webhooks/pivotal",
        ],
        "customer.*,task.*,webhook.*,contact.*",
    )
    store = Store(home / "routes.db")
    config = ListenerConfig(
        routing=routing, relay_url=relay_url, secret=SECRET, timeout=15, healthcheck=True
    )
    listener = Listener(config, store)
    app = HooktapApp(store, listener)
    down = f"localhost:{ports['tasks']} down"

    async with aiohttp.ClientSession() as http, app.run_test(size=SIZE) as pilot:

        async def until(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise TimeoutError("the routes session did not get there")
                await pilot.pause(0.05)

        await until(lambda: app.webhook_url and listener.state == "connected")
        await until(lambda: listener.health is not None and listener.health.states)
        for kind in (
            "customer.created",
            "webhook.ping",
            "onboarding.delayed",
            "task.completed",
            "contact.updated",
            "customer.at_risk",
            "phase.changed",
            "task.overdue",
        ):
            body = catalog.encode(catalog.sample(kind))
            headers = signed_headers(SECRET, body)
            async with http.post(app.webhook_url or "", data=body, headers=headers) as resp:
                await resp.read()
        rows = app.deliveries
        await until(lambda: len(rows.rows) == 8)
        await until(
            lambda: all(r.status is not None or r.error or r.state == "filtered" for r in rows.rows)
        )
        await until(lambda: down in str(app.header.query_one("#health").render()))
        while rows.selected is None or rows.selected.event_type != "onboarding.delayed":
            await pilot.press("down")
        await until(lambda: app.detail_settled)
        await pilot.pause(0.5)
        app.save_screenshot(FILES["routes"], str(OUT))
        await app.action_quit()
    store.close()
    for runner, _url in (customers, fallback):
        await runner.cleanup()


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    sys.exit(asyncio.run(main()))
