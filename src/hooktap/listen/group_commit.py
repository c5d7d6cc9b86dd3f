"""Group commit for the listener's history writes.

Every delivery costs two durable writes: "dispatched" just before its bytes go to the handler,
and its outcome before the relay is told. Committed one by one, SQLite's COMMIT was a quarter
of the listener's CPU under load. Here every write asked for in one event-loop tick waits for
a single shared commit, scheduled with call_soon: at C=1 that adds one loop turn, at C=32 it
turns ~64 commits into a few.

Durability is unchanged: each caller resumes only after its own write is committed. And a
new delivery's `then` (the forwarder writing its request) runs synchronously right after the
COMMIT, in the same callback, not when its task next gets a turn: a crash between the two must
stay a matter of microseconds, since a delivery recorded as handed over is never sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from hooktap.records import Attempt, Delivery
from hooktap.store import Added, Store

log = logging.getLogger("hooktap.listen")


Then = Callable[[], None] | None


@dataclass
class _Batch:
    added: list[tuple[Delivery, asyncio.Future[Added], Then]] = field(default_factory=list)
    finished: list[tuple[str, Attempt, asyncio.Future[None]]] = field(default_factory=list)


class GroupCommit:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._batch: _Batch | None = None

    def add(self, delivery: Delivery, then: Then = None) -> asyncio.Future[Added]:
        """Store a new delivery; the future resolves once it is committed.

        `then` runs immediately after the commit if the delivery was new. It must not raise
        (an exception is logged and dropped). A future rather than a coroutine, so a caller
        cancelled while it waits can still learn, through asyncio.shield, what became of it.
        """
        future: asyncio.Future[Added] = asyncio.get_running_loop().create_future()
        self._pending().added.append((delivery, future, then))
        return future

    def finish(self, delivery_id: str, attempt: Attempt) -> asyncio.Future[None]:
        """Store a forward's outcome and mark its delivery done; resolves once committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending().finished.append((delivery_id, attempt, future))
        return future

    def _pending(self) -> _Batch:
        if self._batch is None:
            self._batch = _Batch()
            asyncio.get_running_loop().call_soon(self._commit)
        return self._batch

    def _commit(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        try:
            results = self.store.write_batch(
                [d for d, _, _ in batch.added], [(i, a) for i, a, _ in batch.finished]
            )
        except Exception:
            # One bad write must not fail its neighbours: write them one by one instead.
            log.debug("group commit failed; retrying its writes one by one", exc_info=True)
            self._commit_each(batch)
            return
        for (_, future, then), result in zip(batch.added, results, strict=True):
            _committed(future, result, then)
        for _, _, done in batch.finished:
            _resolve(done, None)

    def _commit_each(self, batch: _Batch) -> None:
        for delivery, future, then in batch.added:
            try:
                (result,) = self.store.write_batch([delivery], [])
            except Exception as exc:
                _fail(future, exc)
            else:
                _committed(future, result, then)
        for delivery_id, attempt, done in batch.finished:
            try:
                self.store.write_batch([], [(delivery_id, attempt)])
            except Exception as exc:
                _fail(done, exc)
            else:
                _resolve(done, None)


def _committed(future: asyncio.Future[Added], result: Added, then: Then) -> None:
    if result.new and then is not None:
        try:
            then()
        except Exception:
            log.exception("post-commit hook failed")
    _resolve(future, result)


def _resolve(future: asyncio.Future, value: object) -> None:
    if not future.done():  # its waiter may have been cancelled
        future.set_result(value)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
