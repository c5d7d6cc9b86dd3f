"""Which of Pivotal's handler RULES a delivery broke, in words, for every output to share.

The log lines, the JSON stream and the inspector all show the same sentences, so a developer
reads the same diagnosis wherever they look.
"""

from __future__ import annotations

from hooktap.pivotal.retries import describe_retry, would_retry


def broken_rules(
    *,
    status: int | None,
    duration_ms: float | None,
    error: str | None,
    signature: str,
    signature_reason: str,
    duplicate: bool,
) -> list[str]:
    """Empty when the delivery went as Pivotal expects; otherwise one sentence per rule."""
    rules: list[str] = []
    if would_retry(status, duration_ms, error):
        # A repeated svix-id means Pivotal is already retrying: this is at least attempt 2.
        rules.append(
            describe_retry(status, duration_ms, error, attempt_number=2 if duplicate else 1)
        )
    if duplicate:
        rules.append(
            "duplicate svix-id: this message arrived before (a retry or a replay); "
            "the handler must treat it idempotently"
        )
    if signature in ("invalid", "expired"):
        rules.append(f"signature {signature}: {signature_reason}")
    rules.extend(_handler_vs_verdict(status, signature))
    return rules


def _handler_vs_verdict(status: int | None, signature: str) -> list[str]:
    """Where the handler's answer contradicts hooktap's verdict, say what that usually means:
    the "why did my handler say 401" question, answered on the spot."""
    if status in (400, 401, 403) and signature == "valid":
        return [
            f"the handler answered {status} to a delivery whose signature is valid for your "
            "secret: check it verifies the raw body bytes (not re-serialized JSON) with the "
            "same whsec_ secret"
        ]
    if status is not None and 200 <= status <= 299 and signature in ("invalid", "expired"):
        return [
            f"the handler accepted a delivery with an {signature} signature: it is not "
            "verifying signatures, or not rejecting failures (Pivotal's rules: verify first)"
        ]
    return []
