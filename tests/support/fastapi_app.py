"""Pivotal's FastAPI handler (from its docs), served by uvicorn on 127.0.0.1 port 0.

Two versions. `docs_handler` is the published example as it stands: route /webhooks/pivotal,
svix over the raw body, headers read with [] (a missing one is a KeyError, so a 500), only
WebhookVerificationError answered 401, then `handle(evt)` on every verified delivery: neither
of Pivotal's examples stores processed ids, so a retry is processed again. `correct_handler`
is the same done right: every svix failure is a 401, and an event id seen before is
acknowledged without being processed again ("skip if you've already processed evt.id").

Both read the record where Pivotal's snippet types it, `evt["data"]["object"]`, so a body of
another shape fails them as it would fail a real handler (a KeyError, a 500). Both record what
they processed in a `Handled`, the side effects a test can count and `hooktap check` cannot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from svix.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_" + base64.b64encode(b"pivotal-test-endpoint-key!").decode()
PATH = "/webhooks/pivotal"


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` under uvicorn on 127.0.0.1, port 0; yield its handler URL once it serves."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # surface a startup failure
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Handled:
    """What a handler did with each delivery it processed: (event id, record id) in order."""

    events: list[tuple[str, str]] = field(default_factory=list)

    def times(self, event_id: str) -> int:
        return sum(1 for seen, _ in self.events if seen == event_id)


def _handle(body: bytes, handled: Handled) -> None:
    """The `handle(evt)` of Pivotal's example: state read from data.object, as its RULES say.
    (svix's verify returns None, so the event is parsed from the verified raw body.)"""
    evt = json.loads(body)
    record = evt["data"]["object"]
    handled.events.append((evt["id"], record["id"]))  # on another shape: a crash, a 500


def docs_handler(secret: str = SECRET, handled: Handled | None = None) -> FastAPI:
    """Pivotal's FastAPI example as published: no dedup, headers read with []."""
    app = FastAPI()
    wh = Webhook(secret)
    done = handled if handled is not None else Handled()

    @app.post(PATH)
    async def receive(request: Request) -> str:
        body = await request.body()
        try:
            wh.verify(
                body,
                {
                    "svix-id": request.headers["svix-id"],
                    "svix-timestamp": request.headers["svix-timestamp"],
                    "svix-signature": request.headers["svix-signature"],
                },
            )
        except WebhookVerificationError as exc:
            raise HTTPException(401, "invalid signature") from exc
        _handle(body, done)
        return "ok"

    return app


def correct_handler(secret: str = SECRET, handled: Handled | None = None) -> FastAPI:
    """The example done right: every svix failure is a 401, and an event id processed before
    is acknowledged (2xx, so Pivotal stops retrying) without being processed again."""
    app = FastAPI()
    wh = Webhook(secret)
    done = handled if handled is not None else Handled()

    @app.post(PATH)
    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            wh.verify(
                body,
                {
                    "svix-id": request.headers.get("svix-id", ""),
                    "svix-timestamp": request.headers.get("svix-timestamp", ""),
                    "svix-signature": request.headers.get("svix-signature", ""),
                },
            )
        except (WebhookVerificationError, ValueError) as exc:
            raise HTTPException(401, "invalid signature") from exc
        if done.times(json.loads(body)["id"]):
            return Response("duplicate, already handled")
        _handle(body, done)
        return Response("ok")

    return app
