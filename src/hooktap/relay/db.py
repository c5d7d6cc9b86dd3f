"""The relay's disk: channels (token hashes only) and each channel's queue of unconfirmed
deliveries, in one SQLite file so a relay restart loses neither.

A delivery is written here before anything else happens to it and deleted only when a
listener confirms it; that is what lets the relay answer 202 while nobody listens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from hooktap.protocol import Delivery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    channel TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    meta TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_by_channel ON queue (channel, seq);
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "htk_" + secrets.token_urlsafe(32)


def new_channel_id() -> str:
    return secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")


def new_delivery_id(now: float) -> str:
    """Time-ordered ids, so sorting by id sorts by arrival and prefixes stay short to type.

    An id is not a secret (the channel token is), so the random part comes from the
    process's PRNG rather than a getrandom() system call per request."""
    return f"d{int(now * 1000):012x}{random.getrandbits(32):08x}"


class RelayDB:
    def __init__(self, path: Path) -> None:
        fresh = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if fresh:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)
        self._depth: dict[str, int] = dict(
            self.db.execute("SELECT channel, COUNT(*) FROM queue GROUP BY channel").fetchall()
        )
        # In memory so the hot path asks SQLite nothing: which channels exist (they are never
        # deleted) and which deliveries are queued (at most max_queue per channel).
        self._channels: set[str] = set()
        self._queued: set[str] = {row[0] for row in self.db.execute("SELECT id FROM queue")}

    def close(self) -> None:
        self.db.close()

    # channels -----------------------------------------------------------------------------

    def create_channel(self, channel: str, token: str) -> bool:
        try:
            self.db.execute(
                "INSERT INTO channels (channel, token_sha256, created_at) VALUES (?, ?, ?)",
                (channel, hash_token(token), time.time()),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def channel_exists(self, channel: str) -> bool:
        if channel in self._channels:
            return True
        row = self.db.execute("SELECT 1 FROM channels WHERE channel = ?", (channel,)).fetchone()
        if row is not None:
            self._channels.add(channel)
        return row is not None

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

    def enqueue(self, channel: str, delivery: Delivery) -> None:
        meta = {
            "method": delivery.method,
            "path": delivery.path,
            "query": delivery.query,
            "headers": delivery.headers,
            "remote": delivery.remote,
            "scheme": delivery.scheme,
            "host": delivery.host,
        }
        self.db.execute(
            "INSERT INTO queue (channel, id, received_at, meta, body) VALUES (?, ?, ?, ?, ?)",
            (channel, delivery.id, delivery.received_at, json.dumps(meta), delivery.body),
        )
        self._depth[channel] = self._depth.get(channel, 0) + 1
        self._queued.add(delivery.id)

    def confirm(self, channel: str, delivery_id: str) -> bool:
        """Forget a delivery the listener has stored; False if it was already gone."""
        if delivery_id not in self._queued:
            return False  # pushed live and never written: nothing to delete
        self._queued.discard(delivery_id)
        cur = self.db.execute(
            "DELETE FROM queue WHERE channel = ? AND id = ?", (channel, delivery_id)
        )
        if cur.rowcount:
            self._depth[channel] = self._depth.get(channel, 1) - 1
            return True
        return False

    def pending(self, channel: str, batch: int = 64) -> Iterator[Delivery]:
        """Unconfirmed deliveries in arrival order, read in batches so a deep queue is not
        loaded into memory at once."""
        last = -1
        while True:
            rows = self.db.execute(
                "SELECT seq, id, received_at, meta, body FROM queue "
                "WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?",
                (channel, last, batch),
            ).fetchall()
            if not rows:
                return
            for seq, delivery_id, received_at, meta_json, body in rows:
                last = seq
                meta = json.loads(meta_json)
                yield Delivery(
                    id=delivery_id,
                    received_at=received_at,
                    method=meta["method"],
                    path=meta["path"],
                    query=meta["query"],
                    headers=[(n, v) for n, v in meta["headers"]],
                    body=bytes(body),
                    remote=meta.get("remote", ""),
                    scheme=meta.get("scheme", "http"),
                    host=meta.get("host", ""),
                )
