"""The history file itself: opening it (through sqlite_file: permissions, pragmas, schema
version; then the history id), the one lock and the transaction helpers every read and write
goes through, closing, and moving it elsewhere.

Opened by several processes at once (`listen` writing, `hooktap deliveries` and the TUI
reading): sqlite_file says why WAL and synchronous=NORMAL. Every write is one short BEGIN
IMMEDIATE transaction: taking the write lock up front lets the busy timeout do its job (a
deferred transaction that upgrades late fails at once instead).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hooktap.bodies import BodyFiles
from hooktap.home import copy_open_database, put_in_place
from hooktap.sqlite_file import BUSY_TIMEOUT_MS as BUSY_TIMEOUT_MS  # store's public name
from hooktap.sqlite_file import Damaged, Migration, TooNew, connect, open_database
from hooktap.store.checkpoint import REWIND_FRAMES, Checkpointer
from hooktap.store.errors import StoreClosed, StoreError, database_failure, history_damaged
from hooktap.store.sql import META_SCHEMA, SCHEMA

# The history's schema, one step per version (sqlite_file runs the ones a file lacks).
MIGRATIONS: tuple[Migration, ...] = (SCHEMA,)
SCHEMA_VERSION = len(MIGRATIONS)

# Every open Store of this process: a history moved to a new file (Store.move_to) takes the
# others open on the same file along (the inspector reads through a Store of its own).
_OPEN: weakref.WeakSet[StoreCore] = weakref.WeakSet()


class StoreCore:
    """The connection and its lock; Store adds the reads and writes (reads.py, writes.py)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._bodies = BodyFiles(self.path)
        self.commits = 0  # write transactions committed through this Store
        self._checkpointer: Checkpointer | None = None
        self._tx_bodies: list[int] = []  # body files written by the open write transaction
        # A random id for this history, made on its first open and kept in the file: it tells
        # one history from another (a fresh HOOKTAP_HOME, say) where a path cannot.
        self.history_id = ""
        self._refusing: str | None = None  # why writes are refused now (refuse_writes)
        self._closed = False
        self._db = self._open()
        # Which file this is (device, inode), to tell later that the path now names another
        # file or none: see listen/home_guard.py.
        self.file_id = _file_id(self.path)
        try:
            self.history_id = self._load_history_id()
        except sqlite3.Error as err:
            self._db.close()
            raise database_failure(self.path, "use", err) from err
        except StoreError:
            self._db.close()
            raise
        _OPEN.add(self)

    def _open(self) -> sqlite3.Connection:
        """The connection, with every way opening fails as a StoreError naming the file."""
        try:
            return open_database(self.path, MIGRATIONS)
        except Damaged as err:
            raise history_damaged(self.path, err.why) from None
        except TooNew as err:
            raise StoreError(
                f"{self.path} {err.why}; upgrade hooktap or point HOOKTAP_HOME elsewhere"
            ) from None
        except OSError as err:
            raise StoreError(f"cannot open {self.path}: {err.strerror or err}") from None
        except sqlite3.Error as err:
            raise database_failure(self.path, "open", err) from err

    def _load_history_id(self) -> str:
        found = self._history_id_row()
        if found is None:
            with self._write() as db:
                db.execute(META_SCHEMA)
                # OR IGNORE: another process opening the same new file may have written it first.
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('history_id', ?)",
                    (secrets.token_hex(16),),
                )
            found = self._history_id_row()
            assert found is not None
        return found

    def _history_id_row(self) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'history_id'").fetchone()
        except sqlite3.OperationalError:  # no meta table: a history made before history ids
            return None
        return None if row is None else str(row[0])

    # Every use of the connection goes through these, so no sqlite3.Error leaves a Store: it
    # becomes a StoreError naming the file (HistoryDamaged for a damaged page found at any
    # query), and StoreClosed for a call that came after close() (a read the inspector had
    # queued as it quit, which tui/loader.py tells from a real failure).

    @contextmanager
    def _using(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with SQLite's errors made StoreErrors."""
        with self._lock:
            if self._closed:
                raise StoreClosed(f"cannot {doing} {self.path}: this history was closed")
            try:
                yield self._db
            except sqlite3.Error as err:
                raise database_failure(self.path, doing, err) from err

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._using("write to") as db:
            if self._refusing is not None:
                raise StoreError(self._refusing)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
                self.commits += 1
            except BaseException:
                # The body files of rows that will not exist go first, while our write lock
                # still keeps any other writer from being handed the same seqs.
                self._bodies.remove(self._tx_bodies)
                if db.in_transaction:  # some errors (disk full) rolled back already
                    db.execute("ROLLBACK")
                raise
            finally:
                self._tx_bodies.clear()

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._using("read") as db:
            return db.execute(sql, params).fetchall()

    def background_checkpoints(self, on: bool) -> None:
        """Checkpoint the WAL from a thread instead of inside our commits (see checkpoint.py):
        for the listener, whose event loop must not stall on an fsync."""
        if on and self._checkpointer is None:
            with self._using("set up") as db:
                # Not off: this is what rewinds the WAL under load (see checkpoint.py).
                db.execute(f"PRAGMA wal_autocheckpoint = {REWIND_FRAMES}")
            self._checkpointer = Checkpointer(self.path, lambda: self.commits)
            self._checkpointer.start()
        elif not on and self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
            with self._using("set up") as db:
                db.execute("PRAGMA wal_autocheckpoint = 1000")  # SQLite's default

    def close(self) -> None:
        _OPEN.discard(self)
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._lock:
            self._closed = True
            self._db.close()

    # -- the file lost under a running process (listen/home_guard.py) -----------------------

    def refuse_writes(self, reason: str | None) -> None:
        """Fail every write with StoreError(reason) from now on; None accepts them again.

        For a history whose file is gone: SQLite goes on committing into the unlinked file,
        and a delivery confirmed on that strength would be lost when the process ends."""
        with self._lock:
            self._refusing = reason

    def move_to(self, path: Path | None = None) -> None:
        """Copy this history to `path` (by default its own path, after its file there was
        deleted or replaced) and carry on there: the Store stays, its connection changes.

        Every Store of this process open on the same file moves along, and all their
        connections to the old file close before anything is created under the new names
        (home.copy_open_database says why). StoreError if the copy cannot be made; then every
        Store goes on as before.
        """
        target = Path(path) if path is not None else self.path
        group = [self, *(s for s in list(_OPEN) if s is not self and s.file_id == self.file_id)]
        checkpointing = [s for s in group if s._checkpointer is not None]
        for store in checkpointing:  # their threads hold connections to the old file too
            store.background_checkpoints(False)
        try:
            with contextlib.ExitStack() as held:
                for store in group:
                    held.enter_context(store._lock)
                try:
                    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    copy = copy_open_database(self._db, target)
                except (OSError, sqlite3.Error) as err:
                    why = getattr(err, "strerror", None) or err
                    raise StoreError(f"cannot copy the history to {target}: {why}") from err
                for store in group:
                    store._db.close()
                where = put_in_place(copy, target)
                for store in group:
                    store._reopen(where)
        finally:
            for store in checkpointing:
                store.background_checkpoints(True)
        if where != target:
            raise StoreError(f"cannot move the history to {target}; it is at {where}")

    def _reopen(self, path: Path) -> None:
        try:
            self._db = connect(path)
        except sqlite3.Error as err:
            raise database_failure(path, "open", err) from err
        self.path = path
        self.file_id = _file_id(path)
        self._bodies = BodyFiles(path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)
