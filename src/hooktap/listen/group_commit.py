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

A batch with a body over INLINE_BODY_MAX is committed on a worker thread: writing a megabyte
to its file and the 64 KiB prefix to SQLite takes ~1-3 ms with the GIL released, which the
event loop spends on other deliveries instead of waiting. One commit runs at a time; writes
asked for meanwhile wait for the next. Small batches stay on the loop, where a thread
hand-off (~0.1 ms there and back) would cost more than the commit itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from hooktap.bodies import INLINE_BODY_MAX
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
        self._on_thread: asyncio.Future[list[Added]] | None = None  # a commit running there
        self._thread: ThreadPoolExecutor | None = None

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

    def close(self) -> None:
        """Let the worker thread go; a commit running on it still completes."""
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    def _commit(self) -> None:
        if self._on_thread is not None:
            return  # the batch waits: _thread_done starts it when the running commit ends
        batch, self._batch = self._batch, None
        if batch is None:
            return
        added = [d for d, _, _ in batch.added]
        finished = [(i, a) for i, a, _ in batch.finished]
        if any(len(d.body) > INLINE_BODY_MAX for d in added):
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="hooktap-history")
            loop = asyncio.get_running_loop()
            running = loop.run_in_executor(self._thread, self.store.write_batch, added, finished)
            self._on_thread = running
            running.add_done_callback(lambda f: self._thread_done(batch, f))
            return
        try:
            results = self.store.write_batch(added, finished)
        except Exception as exc:
            self._commit_each(batch, exc)
            return
        self._settle(batch, results)

    def _thread_done(self, batch: _Batch, running: asyncio.Future[list[Added]]) -> None:
        self._on_thread = None
        if running.cancelled():
            self._commit_each(batch, None)
        elif (exc := running.exception()) is not None:
            self._commit_each(batch, exc)
        else:
            self._settle(batch, running.result())
        if self._batch is not None:
            self._commit()

    def _settle(self, batch: _Batch, results: list[Added]) -> None:
        for (_, future, then), result in zip(batch.added, results, strict=True):
            _committed(future, result, then)
        for _, _, done in batch.finished:
            _resolve(done, None)

    def _commit_each(self, batch: _Batch, why: BaseException | None) -> None:
        """One bad write must not fail its neighbours: the batch failed, so write them one by
        one, and each caller hears only of its own failure."""
        log.debug("group commit failed; retrying its writes one by one", exc_info=why)
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
