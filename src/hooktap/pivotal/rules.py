"""Which of Pivotal's handler RULES a delivery broke, in words, for every output to share.

The log lines, the JSON stream and the inspector all show the same sentences, so a developer
reads the same diagnosis wherever they look.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from hooktap.pivotal.retries import describe_retry, would_retry

# Where both of Pivotal's handler examples (Express and FastAPI) mount their route.
PIVOTAL_PATH = "/webhooks/pivotal"


def broken_rules(
    *,
    status: int | None,
    duration_ms: float | None,
    error: str | None,
    signature: str,
    signature_reason: str,
    duplicate: bool,
    target_url: str = "",
) -> list[str]:
    """Empty when the delivery went as Pivotal expects; otherwise one sentence per rule.

    `target_url` is the URL the handler was called at (the attempt's); with it, a 404 or 405
    is explained as a wrong path, with the --forward that would fix it.
    """
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
    if target_url and (advice := path_advice(status, target_url, "restart with")):
        path = urlsplit(target_url).path or "/"
        rules.append(f"your handler answered {status} for {path}: {advice}")
    return rules


def path_advice(status: int | None, url: str, action: str) -> str | None:
    """For a 404 or 405 answered at `url`, what to check and the --forward to `action` (e.g.
    "try"); None for any other answer. Shared by the rule lines and `hooktap check`."""
    if status not in (404, 405):
        return None
    parts = urlsplit(url)
    if (parts.path or "/").rstrip("/") == PIVOTAL_PATH:
        if status == 405:
            return (
                f"the route at {PIVOTAL_PATH} does not take POST, and Pivotal only POSTs; "
                "make it a POST route"
            )
        return (
            f"is the port right? Nothing on {parts.netloc} serves {PIVOTAL_PATH}: check which "
            "server listens there and where your handler mounts its route"
        )
    where = parts.netloc if parts.scheme == "http" else f"{parts.scheme}://{parts.netloc}"
    method = "no POST route there; " if status == 405 else ""
    return (
        f"{method}is the path right? Pivotal's handlers live at {PIVOTAL_PATH}; "
        f"{action} --forward {where}{PIVOTAL_PATH}"
    )


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
