"""SQLite history of deliveries and attempts, shared by the listener, the CLI and the TUI.

One file under HOOKTAP_HOME, opened at the same time by several processes (`listen` writing,
`hooktap deliveries` and the TUI reading), hence WAL: readers never block the writer and the
writer never blocks readers. synchronous=NORMAL keeps a commit free of fsync (WAL makes that
safe against corruption; a power cut may lose the last commits, not the file).

Layout choices, all for the listener's hot path and the TUI's paging:
- Bodies and headers live in `payloads`, apart from the narrow `deliveries` rows, so a listing,
  a count or a filter over 100,000 deliveries reads a few pages, not 100,000 overflow chains.
- A body over INLINE_BODY_MAX (64 KiB) lives in a file beside the database, its row keeping
  only the first 64 KiB: writing 1 MB into SQLite cost ~15 times a plain file (bodies.py).
- `deliveries.forward_attempt` points at the original forward, so a listing joins one row by
  primary key instead of searching attempts.
- Every write is one short BEGIN IMMEDIATE transaction: taking the write lock up front lets the
  busy timeout do its job (a deferred transaction that upgrades late fails at once instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from hooktap.bodies import INLINE_BODY_MAX, BodyFiles
from hooktap.checkpoint import REWIND_FRAMES, Checkpointer
from hooktap.filters import Filter
from hooktap.home import copy_open_database, put_in_place
from hooktap.records import Attempt, Delivery, Headers
from hooktap.store_sql import (
    ATTEMPT_COLUMNS,
    ATTEMPT_COLUMNS_A,
    ATTEMPT_FIELDS,
    META_SCHEMA,
    SCHEMA,
    SUMMARY_COLUMNS,
    SVIX_SEEN,
    filter_joins,
    filter_where,
    prefix_upper,
)

SCHEMA_VERSION = 1
DEFAULT_RETENTION_DAYS = 90.0  # Pivotal's own Deliveries tab keeps 90 days
BUSY_TIMEOUT_MS = 5000

# Every open Store of this process: a history moved to a new file (Store.move_to) takes the
# others open on the same file along (the inspector reads through a Store of its own).
_OPEN: weakref.WeakSet[Store] = weakref.WeakSet()


class StoreError(Exception):
    """The history cannot be used: not a database, written by a newer hooktap, or a big
    delivery's body file missing or unwritable. The message names the file."""


class BodyMissing(StoreError, LookupError):
    """A big delivery's body file is gone, cut short or not its own. A LookupError too, so
    that code skipping deliveries it cannot find skips this one with its message."""


class AmbiguousId(LookupError):
    """An id prefix that matches more than one delivery; the message lists some of them."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        shown = ", ".join(candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        super().__init__(f"id prefix {prefix!r} matches several deliveries: {shown}")
        self.prefix = prefix
        self.candidates = candidates


@dataclass(frozen=True)
class Added:
    """What `Store.write_batch` found for one new delivery."""

    new: bool  # False: this id was stored already (a re-sent delivery)
    svix_seen: bool  # another stored delivery carries the same svix-id (a retry)


@dataclass(frozen=True)
class Summary:
    """One listing row: a delivery without its body or headers, plus its original forward."""

    seq: int
    id: str
    received_at: float
    method: str
    path: str
    query: str
    channel: str
    target: str
    signature: str
    signature_reason: str
    svix_id: str | None
    event_id: str | None
    event_type: str | None
    event_created_at: str | None
    state: str
    body_size: int
    status: int | None  # of the original forward; None: no response (or not forwarded yet)
    duration_ms: float | None
    error: str | None
    attempts: int  # forward + replays
    duplicate: bool  # this svix-id arrived before: a Pivotal retry or replay of the same message
    note: str = ""  # of the original forward, e.g. "held 7 min at the relay; re-signed"

    @property
    def cursor(self) -> tuple[float, int]:
        """Pass as `before=` to get the page after this row (keyset pagination)."""
        return (self.received_at, self.seq)


def _dump_headers(headers: Headers) -> str:
    try:
        return orjson.dumps(headers).decode()  # on every delivery's path: ~1 µs, not ~6
    except orjson.JSONEncodeError:  # a lone surrogate, say, typed into an edited replay
        return json.dumps(headers, ensure_ascii=False, separators=(",", ":"))


def _load_headers(text: str) -> Headers:
    return [(name, value) for name, value in json.loads(text)]


class Store:
    """The history database. Safe to share between threads of one process (one lock)."""

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file ourselves, owner-only, before SQLite does with the umask's mode;
        # SQLite gives the -wal and -shm files the database file's permissions. The chmod
        # covers a umask that strips bits we asked for and a file left too open by anyone.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        try:
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as err:
            raise StoreError(f"cannot open {self.path}: {err}") from err
        # Which file this is (device, inode), to tell later that the path now names another
        # file or none: see listen/home_guard.py.
        self.file_id = _file_id(self.path)
        try:
            self._setup()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise StoreError(f"cannot use {self.path}: {err}") from err
        except StoreError:
            self._db.close()
            raise
        _OPEN.add(self)

    def _setup(self) -> None:
        self._pragmas()
        if self._version() != SCHEMA_VERSION:
            self._create_schema()
        self.history_id = self._load_history_id()

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

    def _create_schema(self) -> None:
        db = self._db
        with self._write():
            version = self._version()  # again, under the write lock: another process may have won
            if version == 0:
                # Statement by statement: executescript() would COMMIT our transaction first.
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer hooktap (schema {version}, this one "
                    f"knows {SCHEMA_VERSION}); upgrade hooktap or point HOOKTAP_HOME elsewhere"
                )

    def _pragmas(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The default 4 KiB pages on purpose: 16 KiB pages wrote a 1 MB body 2.3 ms faster but
        # made every 1 KB delivery ~125 µs slower (each commit rewrites ~9 whole pages), and
        # webhooks are mostly small.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._refusing is not None:
                raise StoreError(self._refusing)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
                self.commits += 1
            except BaseException:
                # The body files of rows that will not exist go first, while our write lock
                # still keeps any other writer from being handed the same seqs.
                self._bodies.remove(self._tx_bodies)
                if self._db.in_transaction:  # some errors (disk full) have rolled back already
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._tx_bodies.clear()

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def background_checkpoints(self, on: bool) -> None:
        """Checkpoint the WAL from a thread instead of inside our commits (see checkpoint.py):
        for the listener, whose event loop must not stall on an fsync."""
        if on and self._checkpointer is None:
            with self._lock:
                # Not off: this is what rewinds the WAL under load (see checkpoint.py).
                self._db.execute(f"PRAGMA wal_autocheckpoint = {REWIND_FRAMES}")
            self._checkpointer = Checkpointer(self.path, lambda: self.commits)
            self._checkpointer.start()
        elif not on and self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
            with self._lock:
                self._db.execute("PRAGMA wal_autocheckpoint = 1000")  # SQLite's default

    def close(self) -> None:
        _OPEN.discard(self)
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._lock:
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
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._pragmas()
        except sqlite3.Error as err:
            raise StoreError(f"cannot open {path}: {err}") from err
        self.path = path
        self.file_id = _file_id(path)
        self._bodies = BodyFiles(path)

    def missing_bodies(self) -> int:
        """How many deliveries over INLINE_BODY_MAX have no body file (their folder was lost):
        history keeps only their first 64 KiB."""
        rows = self._read("SELECT seq FROM deliveries WHERE body_size > ?", (INLINE_BODY_MAX,))
        return sum(1 for (seq,) in rows if not self._bodies.path(seq).exists())

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writes: the listener's hot path ---------------------------------------------------

    def add_delivery(self, d: Delivery) -> bool:
        """Store a delivery; False if its id is already stored (the relay handed it over again)."""
        with self._write() as db:
            return self._insert_delivery(db, d)

    def write_batch(
        self, added: list[Delivery], finished: list[tuple[str, Attempt]]
    ) -> list[Added]:
        """New deliveries and finished forwards in one transaction, one commit.

        The listener gathers what each event-loop tick produced and writes it here: under load
        a commit (~30-50 µs) is shared by every delivery in flight instead of paid twice by
        each. Returns, per added delivery in order, whether it was new and whether its svix-id
        was already stored (a Pivotal retry of a message we have).

        StoreError when SQLite cannot write (disk full, a read-only file): the listener's one
        signal that history is unwritable, whatever layer noticed it.
        """
        out: list[Added] = []
        try:
            with self._write() as db:
                for d in added:
                    seen = bool(d.svix_id) and bool(db.execute(SVIX_SEEN, (d.svix_id,)).fetchone())
                    out.append(Added(self._insert_delivery(db, d), seen))
                self._finish_in(db, finished)
        except sqlite3.Error as err:
            raise StoreError(f"cannot write to {self.path}: {err}") from err
        return out

    def _insert_delivery(self, db: sqlite3.Connection, d: Delivery) -> bool:
        cur = db.execute(
            "INSERT INTO deliveries (id, received_at, method, path, query, channel, target, "
            "signature, signature_reason, svix_id, event_id, event_type, event_created_at, "
            "state, body_size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (id) DO NOTHING",
            (
                d.id,
                d.received_at,
                d.method,
                d.path,
                d.query,
                d.channel,
                d.target,
                d.signature,
                d.signature_reason,
                d.svix_id,
                d.event_id,
                d.event_type,
                d.event_created_at,
                d.state,
                len(d.body),
            ),
        )
        if cur.rowcount == 0:
            return False
        seq = cur.lastrowid
        assert seq is not None
        big = len(d.body) > INLINE_BODY_MAX
        stored = memoryview(d.body)[:INLINE_BODY_MAX] if big else d.body  # what text filters see
        db.execute(
            "INSERT INTO payloads (seq, headers, body) VALUES (?,?,?)",
            (seq, _dump_headers(d.headers), stored),
        )
        if big:
            self._write_body(seq, d)
        return True

    def _write_body(self, seq: int, d: Delivery) -> None:
        """The whole body to its file, inside the transaction: a committed row has its file.

        An OSError becomes a StoreError so that no caller mistakes a full disk for a network
        failure (the listener's OSError handlers mean an unreachable relay).
        """
        self._tx_bodies.append(seq)  # before writing: a half-written file is removed too
        try:
            self._bodies.write(seq, d.body)
        except OSError as err:
            raise StoreError(
                f"cannot write the body of delivery {d.id} to {self._bodies.path(seq)}: "
                f"{err.strerror or err}"
            ) from err

    def finish(self, delivery_id: str, attempt: Attempt) -> int:
        """Record the forward attempt and mark the delivery done, atomically.

        Either both happen or neither, so a crash never leaves "done" without its outcome.
        Returns the attempt id (also set on `attempt.id`).
        """
        with self._write() as db:
            self._finish_in(db, [(delivery_id, attempt)])
        assert attempt.id is not None
        return attempt.id

    def _finish_in(self, db: sqlite3.Connection, finished: list[tuple[str, Attempt]]) -> None:
        for delivery_id, attempt in finished:
            attempt_id = self._insert_attempt(db, attempt)
            cur = db.execute(
                # An interrupted delivery stays so: its attempt says why it was not sent.
                "UPDATE deliveries SET state = iif(state = 'interrupted', state, 'done'), "
                "forward_attempt = coalesce(forward_attempt, ?) WHERE id = ?",
                (attempt_id, delivery_id),
            )
            if cur.rowcount == 0:
                raise LookupError(f"no delivery {delivery_id!r} to finish")
            attempt.id = attempt_id

    def add_attempt(self, attempt: Attempt) -> int:
        """Record another attempt (a replay) linked to its delivery; the original stays as is."""
        with self._write() as db:
            exists = db.execute(
                "SELECT 1 FROM deliveries WHERE id = ?", (attempt.delivery_id,)
            ).fetchone()
            if exists is None:
                raise LookupError(f"no delivery {attempt.delivery_id!r} for this attempt")
            attempt_id = self._insert_attempt(db, attempt)
        attempt.id = attempt_id
        return attempt_id

    @staticmethod
    def _insert_attempt(db: sqlite3.Connection, a: Attempt) -> int:
        cur = db.execute(
            f"INSERT INTO attempts ({ATTEMPT_FIELDS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                a.delivery_id,
                a.kind,
                a.started_at,
                a.target_url,
                a.status,
                a.duration_ms,
                a.error,
                a.note,
                _dump_headers(a.request_headers),
                _dump_headers(a.response_headers),
                a.request_body,
                a.response_body,
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def mark(self, delivery_id: str, state: str) -> None:
        """Set a delivery's state, e.g. "interrupted" for one dispatched before a crash."""
        with self._write() as db:
            db.execute("UPDATE deliveries SET state = ? WHERE id = ?", (state, delivery_id))

    # -- reads -------------------------------------------------------------------------------

    def get_state(self, delivery_id: str) -> str | None:
        rows = self._read("SELECT state FROM deliveries WHERE id = ?", (delivery_id,))
        return rows[0][0] if rows else None

    def resolve(self, id_or_prefix: str) -> str | None:
        """The full id for an exact id or a unique prefix; AmbiguousId if several match."""
        if not id_or_prefix:
            return None
        if self._read("SELECT 1 FROM deliveries WHERE id = ?", (id_or_prefix,)):
            return id_or_prefix
        rows = self._read(
            "SELECT id FROM deliveries WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
            (id_or_prefix, prefix_upper(id_or_prefix)),
        )
        if len(rows) > 1:
            raise AmbiguousId(id_or_prefix, [r[0] for r in rows])
        return rows[0][0] if rows else None

    def get(self, id_or_prefix: str) -> Delivery | None:
        """One whole delivery (headers and body) by id or unique id prefix.

        A body over INLINE_BODY_MAX is read from its file; StoreError if that file is gone or
        damaged, rather than a delivery with a silently shortened body.
        """
        full = self.resolve(id_or_prefix)
        if full is None:
            return None
        rows = self._read(
            "SELECT d.id, d.received_at, d.method, d.path, d.query, p.headers, p.body, "
            "d.channel, d.target, d.signature, d.signature_reason, d.svix_id, d.event_id, "
            "d.event_type, d.event_created_at, d.state, d.seq, d.body_size "
            "FROM deliveries d JOIN payloads p ON p.seq = d.seq WHERE d.id = ?",
            (full,),
        )
        if not rows:
            return None
        r = rows[0]
        body = bytes(r[6])
        if r[17] > len(body):
            body = self._read_body(r[0], r[16], body, r[17])
            if body is None:
                return None
        return Delivery(
            id=r[0],
            received_at=r[1],
            method=r[2],
            path=r[3],
            query=r[4],
            headers=_load_headers(r[5]),
            body=body,
            channel=r[7],
            target=r[8],
            signature=r[9],
            signature_reason=r[10],
            svix_id=r[11],
            event_id=r[12],
            event_type=r[13],
            event_created_at=r[14],
            state=r[15],
        )

    def _read_body(self, delivery_id: str, seq: int, prefix: bytes, size: int) -> bytes | None:
        """A big delivery's whole body from its file; None if the delivery was pruned meanwhile.

        The file is checked against the row (its size, its first bytes) so that a stray file,
        one from another copy of the history say, is never served, or replayed, as this body.
        """
        path = self._bodies.path(seq)
        why = f"(stored separately because it is over {INLINE_BODY_MAX // 1024} KiB)"
        try:
            body = self._bodies.read(seq)
        except FileNotFoundError:
            # Retention in another process may have deleted the row, then the file, since we
            # read the row: then the delivery is simply gone.
            if not self._read("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)):
                return None
            raise BodyMissing(f"body of delivery {delivery_id} is missing: {path} {why}") from None
        except OSError as err:
            raise BodyMissing(
                f"cannot read the body of delivery {delivery_id} from {path}: "
                f"{err.strerror or err} {why}"
            ) from err
        if len(body) < size:
            raise BodyMissing(
                f"body of delivery {delivery_id} is cut short: {path} holds {len(body)} of its "
                f"{size} bytes {why}"
            )
        if len(body) != size or not body.startswith(prefix):
            raise BodyMissing(
                f"body of delivery {delivery_id} does not match its file: {path} holds "
                f"{len(body)} bytes that are not this delivery's {size}-byte body {why}"
            )
        return body

    def attempts(self, delivery_id: str) -> list[Attempt]:
        """Every attempt for a delivery, oldest first: the forward, then each replay."""
        rows = self._read(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ? ORDER BY id",
            (delivery_id,),
        )
        return [_attempt(r) for r in rows]

    def first_attempt(self, delivery_id: str) -> Attempt | None:
        """The original forward attempt, or None while it has not finished."""
        rows = self._read(
            f"SELECT {ATTEMPT_COLUMNS_A} "
            "FROM deliveries d JOIN attempts a ON a.id = d.forward_attempt WHERE d.id = ?",
            (delivery_id,),
        )
        return _attempt(rows[0]) if rows else None

    def query(
        self,
        f: Filter | None = None,
        limit: int | None = 50,
        *,
        before: tuple[float, int] | None = None,
        offset: int = 0,
        oldest_first: bool = False,
        now: float | None = None,
    ) -> list[Summary]:
        """Listing rows, newest first (or oldest first, the order replays go in).

        Page with `before=last_row.cursor` (stable while new rows arrive) or with `offset`.
        """
        f = f or Filter()
        where, params = filter_where(f, now)
        if before is not None:
            op = ">" if oldest_first else "<"
            where.append(f"(d.received_at {op} ? OR (d.received_at = ? AND d.seq {op} ?))")
            params += [before[0], before[0], before[1]]
        order = "ASC" if oldest_first else "DESC"
        sql = (
            f"WITH page AS (SELECT d.seq FROM deliveries d {filter_joins(f)} "
            f"WHERE {' AND '.join(where) or '1'} "
            f"ORDER BY d.received_at {order}, d.seq {order} LIMIT ? OFFSET ?) "
            f"SELECT {SUMMARY_COLUMNS} FROM page JOIN deliveries d ON d.seq = page.seq "
            "LEFT JOIN attempts f ON f.id = d.forward_attempt "
            f"ORDER BY d.received_at {order}, d.seq {order}"
        )
        params += [-1 if limit is None else limit, offset]
        return [
            Summary(*r[:-2], duplicate=bool(r[-2]), note=r[-1] or "")
            for r in self._read(sql, params)
        ]

    def count(self, f: Filter | None = None, *, now: float | None = None) -> int:
        f = f or Filter()
        where, params = filter_where(f, now)
        condition = " AND ".join(where) or "1"
        sql = f"SELECT count(*) FROM deliveries d {filter_joins(f)} WHERE {condition}"
        return int(self._read(sql, params)[0][0])

    def seen_svix_id(self, svix_id: str, before_id: str | None = None) -> bool:
        """Whether `svix_id` arrived on a delivery earlier than `before_id` (or at all)."""
        if before_id is None:
            return bool(self._read(SVIX_SEEN, (svix_id,)))
        rows = self._read(
            "SELECT 1 FROM deliveries e, deliveries d WHERE d.id = ? AND e.svix_id = ? "
            "AND (e.received_at < d.received_at OR (e.received_at = d.received_at "
            "AND e.seq < d.seq)) LIMIT 1",
            (before_id, svix_id),
        )
        return bool(rows)

    def stats(self, since: float | None = None) -> dict[str, int]:
        """Counts for the TUI header: received, forwarded_ok, failed, invalid_signatures, pending.

        `failed` is a forward that got a non-2xx or no response, or was interrupted;
        `invalid_signatures` counts invalid and expired verdicts.
        """
        row = self._read(
            "SELECT count(*), "
            "coalesce(sum(f.status BETWEEN 200 AND 299), 0), "
            "coalesce(sum((f.id IS NOT NULL AND (f.status IS NULL OR f.status NOT BETWEEN 200 "
            "AND 299)) OR d.state = 'interrupted'), 0), "
            "coalesce(sum(d.signature IN ('invalid', 'expired')), 0), "
            "coalesce(sum(d.state IN ('received', 'dispatched')), 0) "
            "FROM deliveries d LEFT JOIN attempts f ON f.id = d.forward_attempt "
            "WHERE d.received_at >= ?",
            (-1e300 if since is None else since,),
        )[0]
        keys = ("received", "forwarded_ok", "failed", "invalid_signatures", "pending")
        return dict(zip(keys, (int(v) for v in row), strict=True))

    # -- retention ---------------------------------------------------------------------------

    def prune(
        self, older_than_days: float = DEFAULT_RETENTION_DAYS, now: float | None = None
    ) -> int:
        """Delete deliveries (payloads, attempts, body files) received before the window; count.

        Only deliveries over INLINE_BODY_MAX have a file, so only their seqs are looked up.
        """
        if older_than_days < 0:
            raise ValueError("retention must be zero or more days")
        cutoff = (time.time() if now is None else now) - older_than_days * 86400
        with self._write() as db:
            old = "SELECT {} FROM deliveries WHERE received_at < ?"
            files = [
                seq
                for (seq,) in db.execute(
                    old.format("seq") + " AND body_size > ?", (cutoff, INLINE_BODY_MAX)
                )
            ]
            db.execute(f"DELETE FROM attempts WHERE delivery_id IN ({old.format('id')})", (cutoff,))
            db.execute(f"DELETE FROM payloads WHERE seq IN ({old.format('seq')})", (cutoff,))
            deleted = db.execute("DELETE FROM deliveries WHERE received_at < ?", (cutoff,)).rowcount
            top = db.execute("SELECT coalesce(max(seq), 0) FROM deliveries").fetchone()[0]
        if files:
            self._remove_bodies(files, top)
        return deleted

    def _remove_bodies(self, seqs: list[int], top: int) -> None:
        """Delete the files of deleted deliveries, after the commit that deleted their rows.

        SQLite numbers a new row max(seq) + 1, so a freed seq at or below `top` (the newest
        surviving row) is not handed out again and its file can go at once. One above it may
        be reused by the very next insert, a listener's in another process say, whose file
        must survive: those few are deleted under the write lock, sparing any seq now taken.
        """
        self._bodies.remove(seq for seq in seqs if seq <= top)
        reusable = [seq for seq in seqs if seq > top]
        if not reusable:
            return
        with self._write() as db:
            taken = {s for (s,) in db.execute("SELECT seq FROM deliveries WHERE seq > ?", (top,))}
            self._bodies.remove(seq for seq in reusable if seq not in taken)


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _attempt(r: tuple[Any, ...]) -> Attempt:
    return Attempt(
        id=r[0],
        delivery_id=r[1],
        kind=r[2],
        started_at=r[3],
        target_url=r[4],
        status=r[5],
        duration_ms=r[6],
        error=r[7],
        note=r[8],
        request_headers=_load_headers(r[9]),
        response_headers=_load_headers(r[10]),
        request_body=None if r[11] is None else bytes(r[11]),
        response_body=bytes(r[12]),
    )
