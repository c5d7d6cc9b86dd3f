"""Make the README's screenshots of the inspector from a real session.

A real relay (hooktap.relay.app.make_app), a real Listener and a small handler that verifies
signatures as Pivotal's docs show, all on loopback; realistic Pivotal deliveries from the
event catalog, signed with signed_headers, including the cases the inspector exists for: a
handler bug (500, then Pivotal's retry with the same svix-id), a slow answer, a bad secret,
a stale timestamp. Then the keys a user would press, and an SVG of each screen.

    python scripts/screenshots.py            # writes screenshots/*.svg
"""

from __future__ import annotations

import asyncio
import os
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
}


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


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


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
    handler_app = web.Application()
    handler_app.router.add_post("/webhooks/pivotal", handler.handle)
    relay_runner, relay_url = await serve(make_app(RelayConfig(data_dir=home / "relay")))
    handler_runner, handler_url = await serve(handler_app)
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
    await relay_runner.cleanup()
    for name in FILES.values():
        print(OUT / name)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    sys.exit(asyncio.run(main()))
