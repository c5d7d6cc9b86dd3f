"""Where hooktap keeps its files: HOOKTAP_HOME, or the platform's user data dir.

Also the two steps that put a SQLite database back at its path after the file was deleted (or
replaced) under an open connection, for the listener's history and the embedded relay's queue
(listen/home_guard.py). On Linux an unlinked file lives on while a connection holds it, so
everything committed since is still readable through that connection, and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import platformdirs


def home_path() -> Path:
    """The data folder's path, without creating it: for code that must notice it is gone."""
    env = os.environ.get("HOOKTAP_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("hooktap"))


def home_dir() -> Path:
    """The data folder, created owner-only on first use: it holds channel tokens and history."""
    path = home_path()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def history_db() -> Path:
    return home_dir() / "history.db"


def relay_data_dir() -> Path:
    path = home_dir() / "relay"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def copy_open_database(db: sqlite3.Connection, path: Path) -> Path:
    """Copy what `db` holds into a new owner-only file beside `path` and return that file.

    SQLite's backup API reads through the connection, so the copy has every committed row
    even when the connection's own file (and its WAL) were unlinked. The copy is made under a
    name of its own and only later moved over `path` (put_in_place), after the caller has
    closed every connection to the old file: SQLite deletes `<db>-wal` and `<db>-shm` BY NAME
    when the last connection to a database closes, which would delete the new file's.
    OSError or sqlite3.Error when it cannot; then nothing is left behind and `db` is intact.
    """
    tmp = path.with_name(f".{path.name}.rescue-{os.getpid()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    try:
        copy = sqlite3.connect(tmp)
        try:
            db.backup(copy)
        finally:
            copy.close()  # the last connection to the copy: its own -wal goes, it is complete
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def put_in_place(copy: Path, path: Path) -> Path:
    """Move a copy_open_database() copy to `path`; where the data is now (the copy's own name
    if the move failed, so that the caller can still open it rather than lose it)."""
    try:
        os.replace(copy, path)
    except OSError:
        return copy
    return path
