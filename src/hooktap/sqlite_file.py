"""Opening one of hooktap's SQLite files: the listener's history (store/) and the relay's queue
(relay/db.py) both come here, so both get the same permissions, pragmas, schema versions and
refusals. Each keeps its own schema, as its list of migrations, and its own wording of errors.

Owner-only: the file is created by us with mode 0600 before SQLite opens it (SQLite would
use the umask's mode, and gives the -wal and -shm files the database file's permissions), and
a file found more open than that is tightened.

Pragmas: WAL, so readers (`hooktap deliveries`, the inspector, a second relay on the same
file) never block the writer nor it them; synchronous=NORMAL, so a commit needs no fsync (WAL
keeps the file sound; a power cut may lose the last commits, not the file); a busy timeout, so
a writer waits for another process's write lock instead of failing at once. Neither database
uses foreign keys. The default 4 KiB pages on purpose: 16 KiB pages wrote a 1 MB body 2.3 ms
faster but made every 1 KB delivery ~125 µs slower (each commit rewrites ~9 whole pages), and
webhooks are mostly small.

Versions: PRAGMA user_version counts the migrations a file has had; migrations[i] takes a file
from version i to i + 1. The ones a file lacks run in one BEGIN IMMEDIATE transaction, after
the version is read again under that write lock: several processes may open one new file at
once, and only the first migrates it. A file from a newer hooktap is refused, not guessed at.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from hooktap.home import folder_in_the_way, is_damage

BUSY_TIMEOUT_MS = 5000

# SQL to run statement by statement, or a function for what SQL alone cannot say (a column
# added only where it is missing); either runs inside the migrating transaction.
Migration = str | Callable[[sqlite3.Connection], None]


class Unusable(Exception):
    """The file cannot be used as this database. `why` completes a sentence that begins with
    the file's path; each database words the rest (what the file is, the way out)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Damaged(Unusable):
    """Not a database, one SQLite finds malformed, or a folder where it or its -wal should be:
    the way out is to set the file aside."""


class TooNew(Unusable):
    """Written by a newer hooktap, which migrated it past what this one knows."""


def open_database(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """A connection to the file at `path` (created owner-only if missing), in autocommit mode
    and usable from any thread, its schema at version len(migrations).

    Damaged or TooNew when the file cannot be used; OSError when it cannot be created;
    sqlite3.Error for a failure of the moment (busy past the timeout, a read-only disk)."""
    in_the_way = folder_in_the_way(path)
    if in_the_way is not None:
        raise Damaged(in_the_way)
    _create_owner_only(path)
    db: sqlite3.Connection | None = None
    try:
        db = connect(path)
        _migrate(db, migrations)
    except BaseException as err:
        if db is not None:
            db.close()
        if isinstance(err, sqlite3.Error) and is_damage(err):
            raise Damaged(damage_why(err)) from None
        raise
    return db


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the pragmas every hooktap database runs with: for open_database, and
    for reopening a database copied elsewhere (home.copy_open_database).

    It reads the schema before anything can write to the file: SQLite then refuses a file that
    is not a database or is cut short (its header counts more pages than the file holds), in
    ~1 ms where `PRAGMA quick_check` reads every page (230 ms for a 226 MB history here).
    Damage deeper inside shows when a query reaches it."""
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def damage_why(err: sqlite3.Error) -> str:
    """How a damaged file is described, whichever query found the damage."""
    return f"is damaged ({err})"


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _create_owner_only(path: Path) -> None:
    """Create the file owner-only, or tighten one found more open, without ever opening an
    existing one: closing any descriptor of a file drops every POSIX lock this process holds
    on it, SQLite's included. A second Store in a process (the inspector's, beside the
    listener's) then left the first unlocked, and the next process to close its last
    connection (`hooktap trigger`, `hooktap deliveries`) took itself for the last user and
    deleted the WAL the listener was still writing to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
        return
    os.close(fd)  # a new, empty file: nobody holds a lock on it yet


def _migrate(db: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    if _pending(db, migrations) == 0:
        return  # the usual open: no write lock taken
    db.execute("BEGIN IMMEDIATE")
    try:
        # Again, under the lock: another process may have migrated it meanwhile.
        lacking = _pending(db, migrations)
        for migration in migrations[len(migrations) - lacking :]:
            if callable(migration):
                migration(db)
            else:
                run_script(db, migration)
        if lacking:
            db.execute(f"PRAGMA user_version = {len(migrations)}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # some errors (disk full) rolled back already
            db.execute("ROLLBACK")
        raise


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run SQL statements inside the open transaction, one by one: executescript() would
    COMMIT it first. Statements are split at every `;`, so none may hold one in a literal."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _pending(db: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """How many migrations the file lacks; TooNew when it has more than we know."""
    found = version(db)
    if found > len(migrations):
        raise TooNew(
            f"was written by a newer hooktap (schema {found}, this one knows {len(migrations)})"
        )
    return len(migrations) - found
