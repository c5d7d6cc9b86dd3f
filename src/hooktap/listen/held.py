"""Deliveries that waited at the relay (no listener, or paused) long enough for their Svix
timestamp to fall outside the 5-minute tolerance.

Pivotal was answered 202 for them and will never retry, so a handler that rejects one as
expired loses it for good. When the listener has the secret and the signature was good when
the relay received it, hooktap re-signs it with a fresh timestamp (same svix-id, same body)
before forwarding. A signature that was already stale on arrival is not refreshed: that would
turn a captured old request into a fresh one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hooktap.pivotal.signing import (
    DEFAULT_TOLERANCE,
    Verdict,
    describe_age,
    refresh_if_held,
    signature_header,
)
from hooktap.records import Headers


@dataclass
class ToSend:
    """The headers to forward, the verdict to record, and what to tell the user about them."""

    headers: Headers
    verdict: Verdict
    note: str = ""


def prepare(
    secret: str | None,
    headers: Headers,
    body: bytes,
    received_at: float,
    verdict: Verdict,
    now: float | None = None,
) -> ToSend:
    if verdict.status not in ("expired", "no-secret"):
        return ToSend(headers, verdict)  # every fresh delivery: nothing to work out
    clock = time.time() if now is None else now
    held = describe_age(max(0.0, clock - received_at))
    if verdict.status == "expired" and secret:
        fresh = refresh_if_held(secret, headers, body, received_at, now=clock)
        if fresh is not None:
            return ToSend(
                fresh,
                Verdict(
                    "valid",
                    f"signature matched when the relay received it; held {held}, so hooktap "
                    "re-signed it with a fresh timestamp (same svix-id and body)",
                ),
                f"held {held} at the relay; re-signed",
            )
    if verdict.status == "no-secret" and _went_stale_while_held(headers, received_at, clock):
        return ToSend(
            headers,
            verdict,
            f"held {held} at the relay; sent with its original svix-timestamp, which is now "
            "outside svix's 5-minute tolerance, so a verifying handler will reject it as "
            "expired. Give hooktap the endpoint secret (--secret or PIVOTAL_WEBHOOK_SECRET) "
            "and it re-signs held deliveries; `hooktap replay ID --secret ...` sends this one",
        )
    return ToSend(headers, verdict)


def _went_stale_while_held(headers: Headers, received_at: float, now: float) -> bool:
    stamp = signature_header(headers, "timestamp")
    try:
        signed_at = float(stamp or "")
    except ValueError:
        return False
    return received_at - signed_at <= DEFAULT_TOLERANCE < now - signed_at
