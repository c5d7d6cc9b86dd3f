"""Delivery bodies over INLINE_BODY_MAX, kept as plain files beside the history database.

SQLite writes a big BLOB twice, its overflow pages into the WAL and again into the database at
checkpoint: ~4.7 ms of CPU for a 1 MB body, half of what the listener spent on such a delivery,
where writing the same bytes to a file costs ~0.3 ms. Webhooks are mostly small, so a body up
to INLINE_BODY_MAX stays in its `payloads` row; a bigger one goes to `bodies/<seq>.body` and
its row keeps only the first INLINE_BODY_MAX bytes, so the text filter still searches its
start. A delivery whose `body_size` exceeds its stored prefix has its whole body in the file:
no schema change, and databases written before this read as they always did.

Files are named by the payload's integer seq, never by the delivery id, which comes from the
network. The store writes a file inside the transaction that inserts its row, before the
commit, so a committed row always has its file; a crash before the commit leaves at most an
orphan that the next insert reusing that seq overwrites. No fsync, like the database itself
(synchronous=NORMAL): a power cut may lose the newest deliveries, bodies included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

INLINE_BODY_MAX = 64 * 1024

# O_BINARY: Windows would otherwise translate newlines in what should be the exact bytes.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)


class BodyFiles:
    """The owner-only `bodies/` directory next to a history database."""

    def __init__(self, db_path: Path) -> None:
        self.dir = db_path.parent / "bodies"
        self._dir_checked = False

    def path(self, seq: int) -> Path:
        return self.dir / f"{int(seq)}.body"

    def write(self, seq: int, body: bytes) -> None:
        """Create or overwrite the file for `seq` (an orphan from a crashed insert included)."""
        if not self._dir_checked:
            self._make_dir()
        fd = os.open(self.path(seq), _CREATE, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(body)

    def read(self, seq: int) -> bytes:
        """The file's bytes; OSError (FileNotFoundError when it is gone) for the caller to word."""
        return self.path(seq).read_bytes()

    def remove(self, seqs: Iterable[int]) -> None:
        """Delete the files, if they are there.

        Only for rows deleted or never committed. A file that cannot be deleted is wasted
        space, nothing worse, and must not make retention (and `hooktap listen`, which runs it
        on start) fail; one left behind is overwritten if a big body gets its seq again.
        """
        for seq in seqs:
            with contextlib.suppress(OSError):
                os.unlink(self.path(seq))

    def _make_dir(self) -> None:
        """Create the directory 0700, or tighten one left open: bodies are as private as the DB.

        Once per Store: the check costs a stat, and the listener writes many bodies.
        """
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
        except FileExistsError:
            # mkdir's own words ("File exists") read as if the body file were in the way.
            raise NotADirectoryError(
                errno.ENOTDIR, f"{self.dir} exists and is not a folder; move it aside"
            ) from None
        mode = self.dir.stat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            self.dir.chmod(0o700)
        self._dir_checked = True
