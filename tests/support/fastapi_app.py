"""Pivotal's FastAPI handler shape (from its docs), served by uvicorn on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from svix.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_" + base64.b64encode(b"pivotal-test-endpoint-key!").decode()


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` under uvicorn on 127.0.0.1, port 0; yield its URL once it is serving."""
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
        yield f"http://127.0.0.1:{port}/webhooks/pivotal"
    finally:
        server.should_exit = True
        await task
        sock.close()


def correct_handler(secret: str = SECRET) -> FastAPI:
    """The seed doc's FastAPI handler, done right: raw body, every svix failure is a 401,
    and an id seen before is acknowledged without being processed again."""
    app = FastAPI()
    wh = Webhook(secret)
    processed: set[str] = set()

    @app.post("/webhooks/pivotal")
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
        msg_id = request.headers["svix-id"]
        if msg_id in processed:
            return Response("duplicate, already handled")
        processed.add(msg_id)
        json.loads(body)
        return Response("ok")

    return app
