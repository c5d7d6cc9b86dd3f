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
    return rules
