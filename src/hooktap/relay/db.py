"""The relay's disk: channels (token hashes only) and each channel's queue of unconfirmed
deliveries, in one SQLite file so a relay restart loses neither.

A delivery is written here before anything else happens to it and deleted only when a
listener confirms it; that is what lets the relay answer 202 while nobody listens.

RelayDB is plain synchronous SQLite. A relay calls it from one worker thread (broker/local.py),
never from its event loop, except for what is read from memory: the counts, and the channels
known to be live (`seen_within`).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import random
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

from hooktap.home import RELAY_AFTER, UnusableFile, damaged_database, is_damage
from hooktap.protocol import Delivery
from hooktap.sqlite_file import Damaged, TooNew, damage_why, open_database, run_script

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    channel TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL
);
CREATE INDEX IF NOT EXISTS channels_by_token ON channels (token_sha256);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    meta TEXT NOT NULL,
    body BLOB NOT NULL,
    -- the history of the listener last handed it (NULL: never handed over)
    handed_to TEXT
);
CREATE INDEX IF NOT EXISTS queue_by_channel ON queue (channel, seq);
"""


# Bodies this large or larger are written to the queue through blob I/O, in pieces this size.
STREAM_BODY = 1024 * 1024


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "htk_" + secrets.token_urlsafe(32)


# What a token may look like: the relay's own are "htk_" and 43 URL-safe characters. A floor
# of 32 keeps a guessable string from owning a channel; characters as in a channel id.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")

ChannelState = Literal["live", "unknown", "stale"]


def channel_id(token: str) -> str:
    """The channel a token owns: 160 bits of its hash, so a relay that lost its data can give
    a channel back to its token holder, and to nobody else, with no state at all."""
    digest = hashlib.sha256(b"hooktap-channel-v1\0" + token.encode()).digest()[:20]
    return base64.b32encode(digest).decode().lower().rstrip("=")


def token_problem(token: object) -> str | None:
    """Why this cannot be a channel token, or None when it can."""
    if not isinstance(token, str):
        return "token must be a string"
    if not TOKEN_RE.match(token):
        return "token must be 32-128 letters, digits, '-' or '_' (as `hooktap listen` keeps it)"
    return None


def new_delivery_id(now: float) -> str:
    """Time-ordered ids, so sorting by id sorts by arrival and prefixes stay short to type.

    An id is not a secret (the channel token is), so the random part comes from the
    process's PRNG rather than a getrandom() system call per request."""
    return f"d{int(now * 1000):012x}{random.getrandbits(32):08x}"


class Claim(NamedTuple):
    channel: str
    created: bool


class QueuedRow(NamedTuple):
    seq: int
    id: str
    received_at: float
    meta: str  # JSON: method, path, query, headers, remote, scheme, host
    handed_to: str | None  # the history of the listener last handed it; None: never handed


WHAT = "the relay's database"


class RelayDB:
    def __init__(self, path: Path) -> None:
        """Open (or make) the relay's file; one it cannot use is UnusableFile, naming the file
        and the way out (for a damaged one, the command that sets it aside), never a traceback."""
        try:
            self._open(path)
        except Damaged as err:
            raise damaged_database(path, err.why, WHAT, RELAY_AFTER) from None
        except TooNew as err:
            why = f"{err.why}; upgrade hooktap or give this relay another data folder"
            raise UnusableFile(errno.EIO, f"{WHAT} {path} {why}") from None
        except sqlite3.DatabaseError as err:  # damage the first read of the queue found
            if is_damage(err):
                raise damaged_database(path, damage_why(err), WHAT, RELAY_AFTER) from None
            raise
        except OSError as err:  # not errno's own: EACCES would read as a port taken
            why = err.strerror or err
            raise UnusableFile(errno.EIO, f"{WHAT} {path} cannot be opened: {why}") from None

    def _open(self, path: Path) -> None:
        self.db = open_database(path, (self._migrate,))
        # In memory so the hot path asks SQLite nothing: when each known channel was last
        # claimed (channels are never deleted), which deliveries are queued (at most
        # max_queue per channel) with their body sizes, and each channel's count and bytes.
        # length() of a blob reads its record header, not its pages.
        self._last_seen: dict[str, float] = {}
        self._queued: dict[str, int] = {}
        self._depth: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._total_bytes = 0
        for delivery_id, channel, size in self.db.execute(
            "SELECT id, channel, length(body) FROM queue"
        ):
            self._count(channel, delivery_id, size)

    def close(self) -> None:
        self.db.close()

    # channels -----------------------------------------------------------------------------

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Schema version 1, for a new file and for every file made before relay files had
        versions: the tables where missing, and the columns added to those tables since:
        channels' last_seen (they count from creation) and the queue's handed_to (never handed
        over). sqlite_file runs it under the write lock, once."""
        run_script(db, _SCHEMA)
        missing = RelayDB._columns_missing(db)
        if "last_seen" in missing:
            db.execute("ALTER TABLE channels ADD COLUMN last_seen REAL")
            db.execute("UPDATE channels SET last_seen = created_at")
        if "handed_to" in missing:
            db.execute("ALTER TABLE queue ADD COLUMN handed_to TEXT")

    @staticmethod
    def _columns_missing(db: sqlite3.Connection) -> set[str]:
        added = {"channels": "last_seen", "queue": "handed_to"}
        return {
            column
            for table, column in added.items()
            if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        }

    def claim(self, token: str, now: float | None = None) -> Claim | None:
        """The channel this token owns, made if the relay does not know it: the one derived
        from it, or a legacy one (named by an older relay) whose stored hash it matches.

        None when the derived id is held by another token, which only a legacy channel that
        happens to carry such a name can do. Claiming counts as a listener being seen."""
        now = time.time() if now is None else now
        found, clash = self._owned(token)
        if clash:
            return None
        if found is not None:
            self.touch(found, now)
            return Claim(found, False)
        derived = channel_id(token)
        if self.create_channel(derived, token, now):
            return Claim(derived, True)
        return self.claim(token, now)  # another process made it in between: judge it again

    def owns(self, token: str) -> bool:
        """Whether a channel this token owns exists here already: claiming it makes nothing."""
        return self._owned(token)[0] is not None

    def _owned(self, token: str) -> tuple[str | None, bool]:
        """(the channel here that this token owns, or None; whether the id derived from it is
        held by another token)."""
        derived, digest = channel_id(token), hash_token(token)
        row = self.db.execute(
            "SELECT token_sha256 FROM channels WHERE channel = ?", (derived,)
        ).fetchone()
        if row is not None:
            mine = hmac.compare_digest(row[0], digest)
            return (derived, False) if mine else (None, True)
        legacy = self.db.execute(
            "SELECT channel FROM channels WHERE token_sha256 = ? ORDER BY created_at LIMIT 1",
            (digest,),
        ).fetchone()
        return (legacy[0] if legacy is not None else None), False

    def ping(self) -> None:
        """Raise sqlite3.Error unless the file can be read and its write lock taken within a
        quarter second: what keeping a delivery needs. The lock is released at once."""
        self.db.execute("SELECT COUNT(*) FROM channels").fetchone()
        self.db.execute("PRAGMA busy_timeout=250")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("ROLLBACK")
        finally:
            self.db.execute("PRAGMA busy_timeout=5000")

    def create_channel(self, channel: str, token: str, now: float | None = None) -> bool:
        """Store a channel under a given id: only claim() should name one, by derivation."""
        now = time.time() if now is None else now
        try:
            self.db.execute(
                "INSERT INTO channels (channel, token_sha256, created_at, last_seen) "
                "VALUES (?, ?, ?, ?)",
                (channel, hash_token(token), now, now),
            )
        except sqlite3.IntegrityError:
            return False
        self._last_seen[channel] = now
        return True

    def touch(self, channel: str, now: float | None = None) -> None:
        """A listener attached to or left the channel: it is claimed, so its TTL starts over."""
        now = time.time() if now is None else now
        cur = self.db.execute("UPDATE channels SET last_seen = ? WHERE channel = ?", (now, channel))
        if cur.rowcount:
            self._last_seen[channel] = now

    def channel_state(self, channel: str, ttl: float, now: float | None = None) -> ChannelState:
        """live, unknown, or stale (no listener has claimed it for longer than ttl seconds).

        A known channel is answered from memory; a stale verdict is checked on disk first, in
        case another process sharing this file saw its listener since."""
        now = time.time() if now is None else now
        if self.seen_within(channel, ttl, now):
            return "live"
        seen = self._load_last_seen(channel)
        if seen is None:
            return "unknown"
        return "stale" if now - seen > ttl else "live"

    def seen_within(self, channel: str, ttl: float, now: float) -> bool:
        """Whether memory alone says the channel is live: no SQLite, so any thread may ask."""
        seen = self._last_seen.get(channel)
        return seen is not None and now - seen <= ttl

    def channel_exists(self, channel: str) -> bool:
        return channel in self._last_seen or self._load_last_seen(channel) is not None

    def _load_last_seen(self, channel: str) -> float | None:
        row = self.db.execute(
            "SELECT COALESCE(last_seen, created_at) FROM channels WHERE channel = ?", (channel,)
        ).fetchone()
        if row is None:
            return None
        self._last_seen[channel] = row[0]
        return row[0]

    def check_token(self, channel: str, token: str) -> bool:
        row = self.db.execute(
            "SELECT token_sha256 FROM channels WHERE channel = ?", (channel,)
        ).fetchone()
        return row is not None and hmac.compare_digest(row[0], hash_token(token))

    # queue --------------------------------------------------------------------------------

    def depth(self, channel: str) -> int:
        return self._depth.get(channel, 0)

    def total_depth(self) -> int:
        return sum(self._depth.values())

    def channel_bytes(self, channel: str) -> int:
        """Bytes of bodies queued for the channel (what --max-channel-mb caps)."""
        return self._bytes.get(channel, 0)

    def total_bytes(self) -> int:
        """Bytes of bodies queued for every channel (what --max-store-mb caps)."""
        return self._total_bytes

    def is_queued(self, delivery_id: str) -> bool:
        """Whether the delivery is in the queue (or being written to it), from memory."""
        return delivery_id in self._queued

    # A delivery is counted from the moment it is handed to be written (`reserve`, then
    # `write`, maybe on another thread) until it is taken out (`unreserve`, then `delete`):
    # the caps and depths a relay checks before its next write see every write in flight.
    # `enqueue` and `confirm` do both halves at once.

    def reserve(self, channel: str, delivery_id: str, size: int) -> None:
        self._count(channel, delivery_id, size)

    def unreserve(self, channel: str, delivery_id: str) -> bool:
        """Stop counting a delivery; False if it was not counted (never written here)."""
        size = self._queued.pop(delivery_id, None)
        if size is None:
            return False
        self._uncount(channel, size)
        return True

    def _count(self, channel: str, delivery_id: str, size: int) -> None:
        self._queued[delivery_id] = size
        self._depth[channel] = self._depth.get(channel, 0) + 1
        self._bytes[channel] = self._bytes.get(channel, 0) + size
        self._total_bytes += size

    def _uncount(self, channel: str, size: int) -> None:
        self._depth[channel] = self._depth.get(channel, 1) - 1
        self._bytes[channel] = self._bytes.get(channel, size) - size
        self._total_bytes -= size

    def enqueue(self, channel: str, delivery: Delivery, handed_to: str | None = None) -> None:
        """Keep a delivery for the channel's next listener; `handed_to` names the history of a
        listener that was given it already and never confirmed it."""
        self.write(channel, delivery, handed_to)
        self._count(channel, delivery.id, len(delivery.body))

    def write(self, channel: str, delivery: Delivery, handed_to: str | None = None) -> None:
        """enqueue's disk half: the row, committed when this returns; nothing counted."""
        meta = {
            "method": delivery.method,
            "path": delivery.path,
            "query": delivery.query,
            "headers": delivery.headers,
            "remote": delivery.remote,
            "scheme": delivery.scheme,
            "host": delivery.host,
        }
        body = delivery.body
        row = (channel, delivery.id, delivery.received_at, json.dumps(meta), handed_to)
        if len(body) < STREAM_BODY:
            self.db.execute(
                "INSERT INTO queue (channel, id, received_at, meta, handed_to, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (*row, body),
            )
        else:
            self._insert_streamed(row, body)

    def _insert_streamed(self, row: tuple[object, ...], body: bytes) -> None:
        """Insert a large body without SQLite copying it whole. A bound blob is copied
        twice (the bound value, then the record); a zeroblob written through blob I/O is
        copied in pieces straight into its pages, so the body exists once in memory."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cur = self.db.execute(
                "INSERT INTO queue (channel, id, received_at, meta, handed_to, body) "
                "VALUES (?, ?, ?, ?, ?, zeroblob(?))",
                (*row, len(body)),
            )
            assert cur.lastrowid is not None
            view = memoryview(body)
            with self.db.blobopen("queue", "body", cur.lastrowid) as blob:
                for start in range(0, len(body), STREAM_BODY):
                    blob.write(view[start : start + STREAM_BODY])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def confirm(self, channel: str, delivery_id: str) -> bool:
        """Forget a delivery the listener has stored; False if it was already gone."""
        if not self.unreserve(channel, delivery_id):
            return False  # pushed live and never written: nothing to delete
        return self.delete(channel, delivery_id)

    def delete(self, channel: str, delivery_id: str) -> bool:
        """confirm's disk half; False if the row was already gone."""
        cur = self.db.execute(
            "DELETE FROM queue WHERE channel = ? AND id = ?", (channel, delivery_id)
        )
        return bool(cur.rowcount)

    def mark_handed(self, channel: str, delivery_id: str, history: str | None) -> None:
        """Record which listener history a queued delivery is being handed to."""
        self.db.execute(
            "UPDATE queue SET handed_to = ? WHERE channel = ? AND id = ?",
            (history, channel, delivery_id),
        )

    def pending(self, channel: str) -> Iterator[tuple[Delivery, str | None]]:
        """Unconfirmed deliveries in arrival order, each with the history it was last handed
        to, one body in memory at a time (broker/local.py does the same a call at a time)."""
        last = -1
        while rows := self.queued_rows(channel, last):
            for row in rows:
                last = row.seq
                if (delivery := self.load(row)) is not None:
                    yield delivery, row.handed_to

    def queued_rows(self, channel: str, after: int, limit: int = 64) -> list[QueuedRow]:
        """The channel's next unconfirmed deliveries in arrival order (after row `after`),
        without their bodies: a batch of large bodies would be hundreds of megabytes, so each
        is read only as its delivery goes (`load`), one at a time however deep the queue."""
        return [
            QueuedRow(*row)
            for row in self.db.execute(
                "SELECT seq, id, received_at, meta, handed_to FROM queue "
                "WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                (channel, after, limit),
            )
        ]

    def load(self, row: QueuedRow) -> Delivery | None:
        """The delivery a row holds, body and all; None if it was confirmed since."""
        body = self._body(row.seq)
        if body is None:
            return None
        meta = json.loads(row.meta)
        return Delivery(
            id=row.id,
            received_at=row.received_at,
            method=meta["method"],
            path=meta["path"],
            query=meta["query"],
            headers=[(n, v) for n, v in meta["headers"]],
            body=body,
            remote=meta.get("remote", ""),
            scheme=meta.get("scheme", "http"),
            host=meta.get("host", ""),
        )

    def _body(self, seq: int) -> bytes | None:
        """A queued body by its row, read through blob I/O into the bytes returned: one copy,
        where a SELECT holds SQLite's copy and Python's at once."""
        try:
            with self.db.blobopen("queue", "body", seq, readonly=True) as blob:
                return blob.read()
        except sqlite3.OperationalError as exc:
            if "no such rowid" in str(exc):
                return None  # confirmed since its row was listed
            raise

    # For listen/home_guard.py: HOOKTAP_HOME deleted under the embedded relay.
    def reopen(self, path: Path) -> Path:
        """Copy this queue to `path` and carry on there: for the embedded relay's relay.db,
        deleted (or replaced) with HOOKTAP_HOME while `hooktap listen` runs. Its connection
        still holds every queued delivery; nowhere else does. Returns where the file now is
        (the copy's own name if it could not be moved to `path`); OSError or sqlite3.Error
        when no copy could be made, and then this RelayDB goes on as before."""
        # Imported here: only this rescue needs hooktap.home, which a relay otherwise never uses.
        from hooktap.home import copy_open_database, put_in_place

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        copy = copy_open_database(self.db, path)
        self.db.close()  # before anything stands at `path`: see copy_open_database
        where = put_in_place(copy, path)
        self.db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        return where
