"""Pivotal's (Svix's) retry rules as the inspector reports them."""

from __future__ import annotations

import pytest

from hooktap.pivotal.retries import SCHEDULE, describe_retry, next_retry_in, would_retry


def test_schedule_is_svix_published_one() -> None:
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize(
    ("status", "duration_ms", "error", "expected"),
    [
        (200, 30.0, None, False),
        (204, 9_999.0, None, False),
        (299, None, None, False),
        (200, 10_001.0, None, True),
        (301, 5.0, None, True),
        (400, 5.0, None, True),
        (401, 5.0, None, True),
        (500, 5.0, None, True),
        (None, None, "connection refused", True),
        (None, 10_000.0, "timed out", True),
        (None, None, None, True),
    ],
)
def test_would_retry(
    status: int | None, duration_ms: float | None, error: str | None, expected: bool
) -> None:
    assert would_retry(status, duration_ms, error) is expected


def test_next_retry_in_walks_the_schedule() -> None:
    assert [next_retry_in(n) for n in range(1, 9)] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
        None,
    ]
    assert next_retry_in(20) is None
    with pytest.raises(ValueError):
        next_retry_in(0)


def test_describe_retry() -> None:
    assert describe_retry(500, 12.0, None) == (
        "Pivotal would retry: next attempt in ~5 s (500 is not 2xx)"
    )
    assert describe_retry(500, 12.0, None, attempt_number=2).startswith(
        "Pivotal would retry: next attempt in ~5 min"
    )
    assert "~2 h" in describe_retry(None, None, "connection refused", attempt_number=4)
    assert "took 12.0 s, limit 10 s" in describe_retry(200, 12_000.0, None)
    # One reading of Pivotal's two pages (retries.py): a 4xx does not stop retries.
    assert describe_retry(401, 3.0, None) == (
        "Pivotal would retry: next attempt in ~5 s (401 is not 2xx; a 4xx is retried too)"
    )
    assert describe_retry(200, 40.0, None) == "Pivotal would not retry: delivered"
    assert describe_retry(503, 1.0, None, attempt_number=8).startswith(
        "Pivotal would give up: attempt 8 was the last"
    )
