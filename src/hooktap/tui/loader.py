"""Reads for the inspector, off the event loop, on a connection of their own.

The listener writes to the store from the same asyncio loop that draws the screen. A text
filter over 100,000 bodies takes tens of milliseconds; run on the loop (or on the listener's
connection, behind its lock) it would stall forwarding. So the inspector reads through a
second SQLite connection (WAL: readers never block the writer) in a worker thread, and the
loop only awaits the result.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hooktap.filters import NOT_FORWARDED, Filter
from hooktap.records import Attempt
from hooktap.replay import describe_replay
from hooktap.store import Store, StoreClosed, StoreError, Summary
from hooktap.tui.feed import Counts
from hooktap.tui.widgets.detail import DetailData
from hooktap.tui.window import PAGE

T = TypeVar("T")
NEW_CAP = 1000  # "1000+ new" is as precise as a counter needs to be


class Loader:
    def __init__(
        self,
        path: Path,
        *,
        secret: str | None,
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[StoreError], None] | None = None,
    ) -> None:
        self.store = Store(path)
        # History that fails under a read (damage deep in the file shows only when a page is
        # read): the app is told once and ends with its message, instead of a traceback.
        self.on_failure = on_failure
        # The detail view says what `r` would do, by the same rule `r` applies: the stored
        # original checked against this secret.
        self.secret = secret
        self.clock = clock  # "signed 3 days ago" must not drift in a snapshot test
        self._closed = False
        # A connection that only asks SQLite whether anyone else committed (a `hooktap replay`
        # in another terminal, the listener): PRAGMA data_version changes when another
        # connection commits, and costs microseconds when nothing did.
        self._watch = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._watch_lock = threading.Lock()
        self._version: int | None = None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.store.close()
            with self._watch_lock:
                self._watch.close()

    def _changed(self) -> bool:
        with self._watch_lock:
            if self._closed:  # as the store's own reads say it (Store.close)
                raise StoreClosed("the inspector closed its history")
            version = int(self._watch.execute("PRAGMA data_version").fetchone()[0])
        changed, self._version = version != self._version, version
        return changed

    async def changed(self) -> bool:
        """Whether the history file was written since the last call (True the first time)."""
        return await self._run(self._changed)

    async def again(self, f: Filter, rows: list[Summary]) -> list[Summary]:
        """`rows` (consecutive in the list, newest first) read afresh: attempts and status as
        the history has them now. One keyset query, however many rows."""
        if not rows:
            return []
        first = rows[0]
        before = (first.received_at, first.seq + 1)  # keyset is exclusive: from `first` on
        return await self._run(self.store.query, f, len(rows), before=before)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn in a worker thread; once the app is closing, the read is simply cancelled."""
        if self._closed:
            raise asyncio.CancelledError
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except StoreClosed:  # closed under a read that was already on its way
            if self._closed:
                raise asyncio.CancelledError from None
            raise
        except StoreError as exc:
            if self.on_failure is None:
                raise
            self.on_failure(exc)
            self._closed = True  # no more reads: the app is ending with the message
            raise asyncio.CancelledError from None

    async def head(self, f: Filter, limit: int = PAGE) -> list[Summary]:
        return await self._run(self.store.query, f, limit)

    async def older(self, f: Filter, cursor: tuple[float, int]) -> list[Summary]:
        return await self._run(self.store.query, f, PAGE, before=cursor)

    async def newer(self, f: Filter, cursor: tuple[float, int]) -> list[Summary]:
        """Rows just newer than `cursor`, oldest first (the order RowWindow.add_newer takes)."""
        return await self._run(self.store.query, f, PAGE, before=cursor, oldest_first=True)

    async def tail(self, f: Filter) -> list[Summary]:
        """The oldest page, newest first like every other page."""
        rows = await self._run(self.store.query, f, PAGE, oldest_first=True)
        return rows[::-1]

    async def new_since(self, f: Filter, cursor: tuple[float, int]) -> int:
        """How many matching rows arrived above `cursor`, capped at NEW_CAP."""
        rows = await self._run(self.store.query, f, NEW_CAP, before=cursor, oldest_first=True)
        return len(rows)

    async def count(self, f: Filter) -> int:
        return await self._run(self.store.count, f)

    def _counts(self) -> Counts:
        expired = self.store.count(Filter(signatures=("expired",)))
        not_forwarded = self.store.count(Filter(statuses=NOT_FORWARDED))
        return Counts.from_stats(self.store.stats(), expired, not_forwarded)

    async def counts(self) -> Counts:
        """The header's counts over the whole history, by the filter's definitions."""
        return await self._run(self._counts)

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        return await self._run(self.store.attempts, delivery_id)

    def _detail(self, delivery_id: str) -> DetailData | None:
        delivery = self.store.get(delivery_id)
        if delivery is None:
            return None
        duplicate = bool(delivery.svix_id) and self.store.seen_svix_id(
            delivery.svix_id or "", before_id=delivery.id
        )
        note = describe_replay(
            delivery, secret_known=bool(self.secret), secret=self.secret, now=self.clock()
        )
        return DetailData(delivery, self.store.attempts(delivery.id), duplicate, note)

    async def detail(self, delivery_id: str) -> DetailData | None:
        return await self._run(self._detail, delivery_id)
