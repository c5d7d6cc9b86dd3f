"""What Pivotal (through Svix) would do after an attempt, so the inspector can say it.

A local handler never sees Pivotal's retries; telling the developer "this 500 would have been
retried in 5 s, and again in 5 min" is how they learn that a bug in their handler means
duplicate deliveries, not lost ones.

Which answers are retried is decided here, once, and every output (`check`'s advice, the rule
lines in listen's log and JSON, the inspector's marks) asks `would_retry` or `failure`.
Pivotal's two pages word it differently:

- the end-user page: "Retries are automatic for the first 24 hours after a delivery fails
  (5xx or timeout) with exponential backoff";
- the developer page's RULES: "Return a 2xx within 10 seconds. Anything else triggers a retry."

hooktap reads it the second way: any answer that is not a 2xx within 10 s (a 4xx included, a
redirect included, no answer at all) is a failed attempt that Pivotal sends again. The RULES
are the contract handlers are written against; they are also what Svix, which sends Pivotal's
webhooks, does (it retries every non-2xx and does not follow redirects); and the end-user
page's "5xx or timeout" reads as examples of failure, not a promise that a 4xx stops retries.
So a handler cannot stop retries by answering 4xx: a refused delivery comes back.
"""

from __future__ import annotations

# Svix's published schedule: the delay before each attempt, counted from the previous failure.
# Attempt 1 is immediate; after attempt 8 fails the message is marked failed for good.
SCHEDULE: tuple[float, ...] = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
TIMEOUT_MS = 10_000  # Pivotal's rule: a 2xx within 10 seconds


def failure(status: int | None, duration_ms: float | None, error: str | None) -> str | None:
    """Why Pivotal would count this attempt as failed, or None if it counts as delivered."""
    if error:
        return f"no response ({error})"
    if status is None:
        return "no response"
    if 400 <= status <= 499:
        return f"{status} is not 2xx; a 4xx is retried too"
    if not 200 <= status <= 299:
        return f"{status} is not 2xx"
    if duration_ms is not None and duration_ms > TIMEOUT_MS:
        return f"took {duration_ms / 1000:.1f} s, limit {TIMEOUT_MS // 1000} s"
    return None


def would_retry(status: int | None, duration_ms: float | None, error: str | None) -> bool:
    """True when Pivotal would send this delivery again: non-2xx (4xx included), no
    response, or slower than 10 s. The reading, and why, is in this module's docstring."""
    return failure(status, duration_ms, error) is not None


def next_retry_in(attempt_number: int) -> float | None:
    """Seconds from the failure of attempt `attempt_number` (1-based) to the next one, or None
    when that was the last attempt."""
    if attempt_number < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt_number}")
    if attempt_number >= len(SCHEDULE):
        return None
    return SCHEDULE[attempt_number]


def _approx(seconds: float) -> str:
    if seconds < 60:
        return f"~{seconds:.0f} s"
    if seconds < 3600:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.0f} h"


def describe_retry(
    status: int | None,
    duration_ms: float | None,
    error: str | None,
    attempt_number: int = 1,
) -> str:
    """One line for humans, e.g. "Pivotal would retry: next attempt in ~5 s (500 is not 2xx)"."""
    why = failure(status, duration_ms, error)
    if why is None:
        return "Pivotal would not retry: delivered"
    wait = next_retry_in(attempt_number)
    if wait is None:
        return (
            f"Pivotal would give up: attempt {attempt_number} was the last ({why}); "
            "replay it by hand"
        )
    return f"Pivotal would retry: next attempt in {_approx(wait)} ({why})"
