"""A handler that verifies like the FastAPI example in Pivotal's docs, and stored deliveries
signed in the past: what replay tests need."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.pivotal.signing import signed_headers
from hooktap.records import Delivery

BODY = (
    b'{"id":"evt_123","type":"customer.at_risk","created_at":"2025-06-15T10:00:00Z",'
    b'"data":{"object":{"id":"cus_1","name":"Acme"}}}'
)
HOUR_AGO = 3600


@dataclass
class Received:
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int


@dataclass
class VerifyingHandler:
    """Reads the raw body, asks svix (5-minute tolerance), answers 401 on any failure."""

    secret: str
    url: str = ""
    seen: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        raw = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers]
        try:
            Webhook(self.secret).verify(
                body,
                {
                    "svix-id": request.headers["svix-id"],
                    "svix-timestamp": request.headers["svix-timestamp"],
                    "svix-signature": request.headers["svix-signature"],
                },
            )
            status, text = 200, "ok"
        except (WebhookVerificationError, KeyError):
            status, text = 401, "invalid signature"
        self.seen.append(Received(request.path_qs, raw, body, status))
        return web.Response(status=status, text=text)

    def header(self, index: int, name: str) -> str | None:
        return next((v for n, v in self.seen[index].headers if n.lower() == name), None)


def stored_delivery(
    secret: str, target: str, *, id: str = "dlv_01", age: float = HOUR_AGO, signed: bool = True
) -> Delivery:
    """A delivery as the listener stores it: signed by Pivotal `age` seconds ago."""
    headers = [("Host", "relay.example"), ("User-Agent", "Svix-Webhooks/1.0")]
    if signed:
        svix = signed_headers(secret, BODY, msg_id="msg_original", timestamp=int(time.time() - age))
        headers += [(n, v) for n, v in svix if n.startswith("svix-")]
    headers += [
        ("Content-Type", "application/json"),
        ("X-Trace", "first"),
        ("Content-Length", str(len(BODY))),
    ]
    return Delivery(
        id=id,
        received_at=time.time() - age,
        method="POST",
        path="/tail",
        query="x=1",
        headers=headers,
        body=BODY,
        channel="ch",
        target=target,
        signature="valid" if signed else "unsigned",
        svix_id="msg_original" if signed else None,
        event_id="evt_123",
        event_type="customer.at_risk",
        event_created_at="2025-06-15T10:00:00Z",
        state="dispatched",
    )
