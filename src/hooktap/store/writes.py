"""Writing history: the listener's hot path (a delivery, then its outcome, batched per
event-loop tick), replays' attempts, and retention.

Bodies and headers live in `payloads`, apart from the narrow `deliveries` rows, so a listing,
a count or a filter over 100,000 deliveries reads a few pages, not 100,000 overflow chains.
A body over INLINE_BODY_MAX (64 KiB) lives in a file beside the database, its row keeping only
the first 64 KiB: writing 1 MB into SQLite cost ~15 times a plain file (bodies.py).
`deliveries.forward_attempt` points at the original forward, so a listing joins one row by
primary key instead of searching attempts.
"""

from __future__ import annotations

import sqlite3
import time

from hooktap.bodies import INLINE_BODY_MAX
from hooktap.records import Attempt, Delivery
from hooktap.store.core import StoreCore
from hooktap.store.errors import StoreError
from hooktap.store.rows import Added, dump_headers
from hooktap.store.sql import ATTEMPT_FIELDS, SVIX_SEEN

DEFAULT_RETENTION_DAYS = 90.0  # Pivotal's own Deliveries tab keeps 90 days


class StoreWrites(StoreCore):
    """Every change to history: each is one transaction through StoreCore._write."""

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
        with self._write() as db:
            for d in added:
                seen = bool(d.svix_id) and bool(db.execute(SVIX_SEEN, (d.svix_id,)).fetchone())
                out.append(Added(self._insert_delivery(db, d), seen))
            self._finish_in(db, finished)
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
            (seq, dump_headers(d.headers), stored),
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

    def _finish_in(self, db: sqlite3.Connection, finished: list[tuple[str, Attempt]]) -> None:
        """Each forward's attempt and its delivery marked done, in the caller's transaction:
        both or neither, so a crash never leaves "done" without its outcome."""
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
                dump_headers(a.request_headers),
                dump_headers(a.response_headers),
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
