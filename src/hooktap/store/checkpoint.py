"""WAL checkpoints on a thread of their own, for the process that writes history all day.

SQLite checkpoints automatically inside whichever COMMIT pushes the WAL past 1000 pages, and
a checkpoint fsyncs: on the listener's event loop that was a 5-8 ms stall every ~200 commits
(measured: p99.9 of a commit 5.6 ms with automatic checkpoints, 0.3 ms without). Here the
listener's connection never checkpoints; a thread with its own connection runs PASSIVE
checkpoints, which never block a writer, while sqlite3 has released the GIL.

A PASSIVE checkpoint never blocks the writer, but against a writer that never pauses it never
copies every frame, and SQLite rewinds the WAL only once all are: on its own it let the WAL
grow by ~1 GB every 30 s at 2,000 deliveries/s. So the writer keeps SQLite's automatic
checkpoint, at REWIND_FRAMES (32 MiB) instead of 1000 pages (Store.background_checkpoints):
by the time it fires, this thread has copied nearly everything, it finishes the rest from
the writer's own connection (so nothing can starve it) and the next commit starts the WAL
again from the top. A few ms, a few times a minute at full load, instead of every ~200
commits.

Other processes (the CLI, a TUI reading history) keep SQLite's automatic checkpoints: they
write rarely.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("hooktap.store")

INTERVAL = 0.5  # seconds between checkpoints while commits keep coming
REWIND_FRAMES = 8192  # 32 MiB of WAL (4 KiB pages): the writer's own checkpoint then


class Checkpointer:
    def __init__(self, path: Path, commits: Callable[[], int], interval: float = INTERVAL) -> None:
        self.path = path
        self._commits = commits  # how many commits the writer has made so far
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hooktap-checkpoint", daemon=True)
        self.checkpoints = 0
        # SQLite's answer to the last checkpoint: (busy, frames in the WAL, frames copied).
        self.last: tuple[int, int, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, then checkpoint once more so the WAL does not outlive the run by much."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        except sqlite3.Error:
            log.warning("cannot open %s for checkpoints", self.path, exc_info=True)
            return
        try:
            seen = self._commits()
            while not self._stop.wait(self.interval):
                now = self._commits()
                if now != seen:  # idle: no wake-up work, no disk traffic
                    seen = now
                    self._checkpoint(db)
            self._checkpoint(db)
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            row = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.last = (int(row[0]), int(row[1]), int(row[2]))
            self.checkpoints += 1
        except sqlite3.Error:  # busy or locked: the next round catches up
            log.debug("checkpoint of %s skipped", self.path, exc_info=True)
