"""History in tests: written the way the listener writes it, through Store.write_batch, the
one write path production has (a delivery recorded, then its forward's outcome), so no test
stores a delivery through a door the listener does not use; and the two things a test of
"never on the event loop" needs: another process mid-write, and a measure of the loop's
stalls."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hooktap.records import Attempt, Delivery
from hooktap.store import Store

T = TypeVar("T")


def record(store: Store, delivery: Delivery) -> bool:
    """Store a delivery as the listener does before forwarding it; False when its id is
    stored already (the relay handed it over again)."""
    (added,) = store.write_batch([delivery], [])
    return added.new


def finish(store: Store, delivery_id: str, attempt: Attempt) -> int:
    """Store a forward's outcome and mark its delivery done, as the listener does once the
    handler answered; the attempt's id. LookupError for a delivery that is not stored."""
    store.write_batch([], [(delivery_id, attempt)])
    assert attempt.id is not None
    return attempt.id


@contextmanager
def another_writer(path: Path, seconds: float) -> Iterator[None]:
    """Another connection holds the history's write lock for `seconds`, as a `hooktap replay`
    in another terminal does mid-commit: a write meanwhile waits on SQLite's busy timeout."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, lambda: other.execute("COMMIT"))
    release.start()
    try:
        yield
    finally:
        release.join()
        other.close()


async def longest_stall(work: Awaitable[T]) -> tuple[T, float]:
    """`work`'s result, and the longest the event loop went without a turn while it ran."""
    task = asyncio.ensure_future(work)
    longest, last = 0.0, time.perf_counter()
    while not task.done():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    return await task, longest
