"""What the history raises: every failure a caller may want to tell apart, with the file named."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hooktap.bodies import BodyFiles
from hooktap.home import damage_message, is_damage


class StoreError(Exception):
    """The history cannot be used: not a database, written by a newer hooktap, or a big
    delivery's body file missing or unwritable. The message names the file."""


class StoreClosed(StoreError):
    """A call on a Store after close(): a read the inspector queued as it quit, say, which it
    tells from a history that failed."""


class HistoryDamaged(StoreError):
    """The history file cannot be used as a database at all: a folder, not a database, pages
    SQLite finds malformed. The message gives the command that sets it aside (home.py says why
    the user runs it, not hooktap); a fresh history then starts, and nothing is deleted."""


def history_damaged(path: Path, why: str) -> HistoryDamaged:
    return HistoryDamaged(
        damage_message(
            path,
            why,
            what="hooktap's history",
            after="a new history starts empty; the old deliveries stay in the moved files",
            also=[BodyFiles(path).dir],  # named by row number: a new history would reuse them
        )
    )


def database_failure(path: Path, doing: str, err: sqlite3.Error) -> StoreError:
    """What SQLite said, as a StoreError naming the file: HistoryDamaged when the file itself is
    the problem, not the moment (busy, disk full, read-only)."""
    if is_damage(err):
        return history_damaged(path, f"is damaged ({err})")
    return StoreError(f"cannot {doing} {path}: {err}")


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
