"""Group commit for the listener's history writes.

Every delivery costs two durable writes: "dispatched" just before its bytes go to the handler,
and its outcome before the relay is told. Committed one by one, SQLite's COMMIT was a quarter
of the listener's CPU under load. Here every write asked for in one event-loop tick waits for
a single shared commit, scheduled with call_soon: at C=1 that adds one loop turn, at C=32 it
turns ~64 commits into a few.

Durability is unchanged: each caller resumes only after its own write is committed. And a
new delivery's `then` (the pipeline's Exchange.write: its request going out) runs
synchronously right after the COMMIT, in the same callback, not when its task next gets a
turn: a crash between the two must stay a matter of microseconds, since a delivery recorded
as handed over is never sent again.

A batch with a body over INLINE_BODY_MAX is committed on a worker thread: writing a megabyte
to its file and the 64 KiB prefix to SQLite takes ~1-3 ms with the GIL released, which the
event loop spends on other deliveries instead of waiting. One commit runs at a time; writes
asked for meanwhile wait for the next. Small batches stay on the loop, where a thread
hand-off (~0.1 ms there and back) would cost more than the commit itself.

That thread is also the listener process's one way to the store for anything else (`call`):
a re-sent delivery answered from history, the inspector's re-send. On the loop, such a call
could wait on the store's lock behind a big commit there, or on SQLite's busy timeout while
another process writes, and stall every delivery. Calls take their turn on the thread with
the commits, and no batch commits on the loop while the thread holds the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hooktap.bodies import INLINE_BODY_MAX
from hooktap.records import Attempt, Delivery
from hooktap.store import Added, Store

_R = TypeVar("_R")


class StoreCall(Protocol):
    """How a caller reaches the store off the event loop: a worker thread (asyncio.to_thread),
    or in the listener's process its history thread (GroupCommit.call), where the call takes
    its turn with the listener's commits instead of waiting on the loop for the store."""

    def __call__(self, fn: Callable[..., _R], /, *args: Any) -> Awaitable[_R]: ...


log = logging.getLogger("hooktap.listen")


Then = Callable[[], None] | None
T = TypeVar("T")


# Per write of a failed batch retried one by one: its result, or what it raised.
_Outcomes = tuple[list[Added | Exception], list[Exception | None]]


@dataclass
class _Batch:
    added: list[tuple[Delivery, asyncio.Future[Added], Then]] = field(default_factory=list)
    finished: list[tuple[str, Attempt, asyncio.Future[None]]] = field(default_factory=list)


class GroupCommit:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._batch: _Batch | None = None
        self._busy = 0  # store calls on (or queued for) the thread: commits and the others
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

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)`, a call on the store, run on the history thread in turn with the
        commits there; a batch asked for meanwhile commits after it."""
        running = self._on_thread(fn, *args)
        running.add_done_callback(lambda _: self._idle())
        # Shielded: a cancelled caller must not mark the thread free while `fn` still runs.
        return await asyncio.shield(running)

    def _on_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="hooktap-history")
        self._busy += 1
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _idle(self) -> None:
        """A call on the thread ended: a batch that waited for the store goes now."""
        self._busy -= 1
        if not self._busy and self._batch is not None:
            self._commit()

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
        if self._busy:
            return  # the batch waits: _idle starts it when the thread lets go of the store
        batch, self._batch = self._batch, None
        if batch is None:
            return
        added = [d for d, _, _ in batch.added]
        finished = [(i, a) for i, a, _ in batch.finished]
        if any(len(d.body) > INLINE_BODY_MAX for d in added):
            running = self._on_thread(self.store.write_batch, added, finished)
            running.add_done_callback(lambda f: self._thread_done(batch, f))
            return
        try:
            results = self.store.write_batch(added, finished)
        except Exception as exc:
            log.debug("group commit failed; retrying its writes one by one", exc_info=exc)
            self._settle_each(batch, self._write_each(batch))
            return
        self._settle(batch, results)

    def _thread_done(self, batch: _Batch, running: asyncio.Future[list[Added]]) -> None:
        why = asyncio.CancelledError() if running.cancelled() else running.exception()
        if why is None:
            self._settle(batch, running.result())
        else:
            log.debug("group commit failed; retrying its writes one by one", exc_info=why)
            # One by one on the thread too: a call queued there may be using the store now.
            retry = self._on_thread(self._write_each, batch)
            retry.add_done_callback(lambda f: self._retry_done(batch, f))
        self._idle()

    def _retry_done(self, batch: _Batch, retry: asyncio.Future[_Outcomes]) -> None:
        if retry.cancelled():
            for future in [f for _, f, _ in batch.added] + [f for _, _, f in batch.finished]:
                future.cancel()
        else:
            self._settle_each(batch, retry.result())
        self._idle()

    def _settle(self, batch: _Batch, results: list[Added]) -> None:
        for (_, future, then), result in zip(batch.added, results, strict=True):
            _committed(future, result, then)
        for _, _, done in batch.finished:
            _resolve(done, None)

    def _write_each(self, batch: _Batch) -> _Outcomes:
        """One bad write must not fail its neighbours: the batch failed, so write them one by
        one, where the batch ran; _settle_each then tells each caller of its own outcome."""
        added: list[Added | Exception] = []
        for delivery, _, _ in batch.added:
            try:
                (result,) = self.store.write_batch([delivery], [])
            except Exception as exc:
                added.append(exc)
            else:
                added.append(result)
        finished: list[Exception | None] = []
        for delivery_id, attempt, _ in batch.finished:
            try:
                self.store.write_batch([], [(delivery_id, attempt)])
            except Exception as exc:
                finished.append(exc)
            else:
                finished.append(None)
        return added, finished

    def _settle_each(self, batch: _Batch, outcomes: _Outcomes) -> None:
        added, finished = outcomes
        for (_, future, then), result in zip(batch.added, added, strict=True):
            if isinstance(result, Exception):
                _fail(future, result)
            else:
                _committed(future, result, then)
        for (_, _, done), failure in zip(batch.finished, finished, strict=True):
            if failure is None:
                _resolve(done, None)
            else:
                _fail(done, failure)


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
