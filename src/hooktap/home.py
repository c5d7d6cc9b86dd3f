"""Where hooktap keeps its files: HOOKTAP_HOME, or the platform's user data dir.

Also the two steps that put a SQLite database back at its path after the file was deleted (or
replaced) under an open connection, for the listener's history and the embedded relay's queue
(listen/home_guard.py). On Linux an unlinked file lives on while a connection holds it, so
everything committed since is still readable through that connection, and nowhere else.

And what is said when one of these files cannot be used (a folder where a file should be, a
damaged database): which path, what is wrong, and the exact command that sets it aside. The
command is for the user to run, never run for them: hooktap cannot tell whether another
process (a `hooktap listen` in another terminal) has the file open, and moving it from under
that process would split one history in two. A move deletes nothing, so the old file stays
there for `sqlite3 ... .recover`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import platformdirs

# SQLite's primary result codes for a file that is not a database, or is one no longer.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class UnusableFile(OSError):
    """A file or folder of hooktap's that cannot be used as it is: HOOKTAP_HOME that is a
    file, a damaged database. The message names the path, says what is wrong and how to set
    it aside. An OSError, so code that handles the file system's own complaints (the home
    guard, a listener telling a missing home from a network failure) handles this one too."""

    def __str__(self) -> str:
        return str(self.strerror)


def home_path() -> Path:
    """The data folder's path, without creating it: for code that must notice it is gone."""
    env = os.environ.get("HOOKTAP_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("hooktap"))


def home_dir() -> Path:
    """The data folder, created owner-only on first use: it holds channel tokens and history."""
    path = home_path()
    what = "HOOKTAP_HOME" if os.environ.get("HOOKTAP_HOME") else "hooktap's data folder"
    _make_folder(path, what, "point HOOKTAP_HOME at a folder, or ")
    return path


def history_db() -> Path:
    return home_dir() / "history.db"


def relay_data_dir() -> Path:
    """The embedded relay's folder (its relay.db is checked by RelayDB as it opens it)."""
    path = home_dir() / "relay"
    _make_folder(path, "the relay's data folder", "")
    return path


def _make_folder(path: Path, what: str, instead: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (FileExistsError, NotADirectoryError) as exc:
        # mkdir's own words ("File exists") do not say what is in the way.
        blocker = next((p for p in path.parents if p.is_file()), path)
        problem = "is not a folder" if blocker == path else f"cannot be made: {blocker} is a file"
        raise UnusableFile(
            exc.errno,
            f"{what} {path} {problem}; {instead}set it aside with: {aside_command(blocker)}",
        ) from None
    except OSError as exc:
        raise UnusableFile(
            exc.errno or 0, f"{what} {path} cannot be created: {exc.strerror or exc}"
        ) from None


# -- files that cannot be used ---------------------------------------------------------------

RELAY_AFTER = (
    "channels come back from their tokens; deliveries it still queued stay in the moved file"
)


def sqlite_members(path: Path) -> list[Path]:
    """A database's own files: SQLite would read a `-wal` or `-journal` left beside a new file
    as part of it, so they go wherever the database goes."""
    return [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]


_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's own, made and removed as it opens/closes


def aside_command(path: Path, also: Iterable[Path] = ()) -> str:
    """A shell command that moves `path` and whichever of `also` exist into a new folder
    beside it, named by the time: nothing deleted, and the moved files still belong together.

    A database's side files may be gone by the time the user runs it: the message asks them to
    stop the hooktap commands using the file first, and the last one to close it removes its
    -wal and -shm. So those are moved only if they are still there, where a plain `mv` of a
    vanished one would fail the command after moving the rest."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = shlex.quote(
        str(path.with_name(f"{path.name.split('.')[0] or path.name}-aside-{stamp}"))
    )
    members = [p for p in dict.fromkeys([path, *also]) if os.path.lexists(p)] or [path]
    side = [p for p in members if p != path and p.name.endswith(_SIDE_FILES)]
    moved = " ".join(shlex.quote(str(p)) for p in members if p not in side)
    if not side:
        return f"mkdir {folder} && mv {moved} {folder}/"
    maybe = " ".join(shlex.quote(str(p)) for p in side)
    return (
        f'mkdir {folder} && for f in {maybe}; do [ ! -e "$f" ] || mv "$f" {folder}/; done '
        f"&& mv {moved} {folder}/"
    )


def damage_message(
    path: Path, why: str, *, what: str, after: str, also: Iterable[Path] = ()
) -> str:
    """One line: the path, what is wrong with it, and the command that sets it aside."""
    return (
        f"{what} {path} {why}. Nothing was changed; to set it aside and start afresh ({after}), "
        f"stop any hooktap command using it and run: "
        f"{aside_command(path, [*sqlite_members(path), *also])}"
    )


def is_damage(err: BaseException) -> bool:
    """Whether SQLite said the file is not a database, or no longer a sound one."""
    code = getattr(err, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def folder_in_the_way(path: Path) -> str | None:
    """What is wrong when the database or one of its own files is a folder (SQLite says only
    "unable to open database file", or reads on and fails the first write); else None."""
    for member in sqlite_members(path):
        if member.is_dir():
            return f"cannot be used: {member} is a folder" if member != path else "is a folder"
    return None


def damaged_database(path: Path, why: str, what: str, after: str) -> UnusableFile:
    """For the code opening a database of hooktap's (the relay's): what is wrong with the file
    (sqlite_file.Damaged's `why`) as one line naming it, with the command that sets it aside."""
    return UnusableFile(errno.EIO, damage_message(path, why, what=what, after=after))


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
