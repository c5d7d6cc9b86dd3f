"""sqlite_file: how the history and the relay's queue open their SQLite files. Real files:
owner-only permissions, schema versions and migrations, refusals of damaged and newer files,
and files made by hooktap before the two shared this (the relay's had no schema version)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hooktap.home import UnusableFile
from hooktap.relay.db import RelayDB, hash_token, new_token
from hooktap.sqlite_file import Damaged, Migration, TooNew, open_database, version
from hooktap.store import HistoryDamaged, Store, StoreError
from hooktap.store.sql import META_SCHEMA, SCHEMA

# The relay's schema as hooktap wrote it before relay files had a schema version (user_version
# 0 on every one of them): kept here verbatim, as those files exist on users' disks.
RELAY_BEFORE_VERSIONS = """
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

TABLE_A = "CREATE TABLE a (x INTEGER)"  # fails if run twice: a migration run again shows


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def schema_of(path: Path) -> list[tuple[str, str]]:
    with raw(path) as db:
        return db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [lambda p: open_database(p, [TABLE_A]), RelayDB, Store])
def test_a_new_file_and_its_wal_are_owner_only_whatever_the_umask(
    tmp_path: Path, opener: Callable[[Path], object]
) -> None:
    path = tmp_path / "new" / "file.db"
    old = os.umask(0)
    try:
        opened = opener(path)
    finally:
        os.umask(old)
    try:
        assert mode(path) == 0o600
        assert mode(path.with_name("file.db-wal")) == 0o600  # the first migration wrote to it
    finally:
        opened.close()  # type: ignore[attr-defined]


def test_an_existing_relay_file_left_open_to_others_is_tightened(tmp_path: Path) -> None:
    """As the history always did; the relay's own open used to set 0600 on a new file only."""
    path = tmp_path / "relay.db"
    RelayDB(path).close()
    path.chmod(0o644)
    RelayDB(path).close()
    assert mode(path) == 0o600


# -- versions and migrations ---------------------------------------------------------------


def test_a_version_bump_runs_only_the_newer_migrations(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = open_database(path, [TABLE_A])
    db.execute("INSERT INTO a VALUES (7)")
    assert version(db) == 1
    db.close()

    ran: list[int] = []

    def add_column(db: sqlite3.Connection) -> None:
        ran.append(version(db))  # the file's version while it runs: 1
        db.execute("ALTER TABLE a ADD COLUMN y TEXT")
        db.execute("UPDATE a SET y = 'from v1'")

    newer: list[Migration] = [TABLE_A, add_column, "CREATE TABLE b (z); CREATE TABLE c (w)"]
    db = open_database(path, newer)
    assert version(db) == 3 and ran == [1]
    assert db.execute("SELECT x, y FROM a").fetchall() == [(7, "from v1")]
    assert {n for (n,) in db.execute("SELECT name FROM sqlite_master")} == {"a", "b", "c"}
    db.close()
    open_database(path, newer).close()  # up to date: nothing runs again
    assert ran == [1]


def test_an_up_to_date_file_opens_without_the_write_lock(tmp_path: Path) -> None:
    """A reader's open does not wait for a writer: with the write lock held elsewhere, an open
    that took it would wait out the 5 s busy timeout and fail."""
    path = tmp_path / "x.db"
    open_database(path, [TABLE_A]).close()
    writer = raw(path)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        open_database(path, [TABLE_A]).close()
        assert time.monotonic() - started < 2
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_failed_migration_leaves_the_file_at_its_version(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    open_database(path, [TABLE_A]).close()
    before = schema_of(path)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        open_database(path, [TABLE_A, "CREATE TABLE b (y)", TABLE_A])
    assert schema_of(path) == before  # b was rolled back with the rest
    with raw(path) as db:
        assert version(db) == 1


def test_a_file_another_process_migrates_meanwhile_is_not_migrated_again(
    tmp_path: Path,
) -> None:
    """Several embedded relays, or a listener and `hooktap deliveries`, may open one new file
    at the same moment: each reads the version again once it holds the write lock."""
    path = tmp_path / "x.db"
    open_database(path, []).close()  # a new file, at version 0
    first = raw(path)
    first.execute("BEGIN IMMEDIATE")  # another process, migrating it
    failures: list[BaseException] = []

    def opener() -> None:
        try:
            open_database(path, [TABLE_A, "CREATE TABLE b (y)"]).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    # Nothing tells when the openers have read version 0 and wait for the lock (5 s of busy
    # timeout): this pause gives them the time. A late one reads version 2 and passes too;
    # only catching an open that skips the second reading depends on it.
    time.sleep(0.5)
    first.execute(TABLE_A)
    first.execute("CREATE TABLE b (y)")
    first.execute("PRAGMA user_version = 2")
    first.execute("COMMIT")
    first.close()
    for t in threads:
        t.join()
    assert failures == []
    with raw(path) as db:
        assert version(db) == 2


def test_a_file_from_a_newer_hooktap_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    open_database(path, [TABLE_A]).close()
    with raw(path) as db:
        db.execute("PRAGMA user_version = 5")
    before = digest(path)
    with pytest.raises(TooNew, match=r"newer hooktap \(schema 5, this one knows 1\)"):
        open_database(path, [TABLE_A])
    assert digest(path) == before


@pytest.mark.parametrize(
    ("opener", "error", "message"),
    [
        (
            RelayDB,
            UnusableFile,
            "the relay's database {path} was written by a newer hooktap (schema 9, this one "
            "knows 1); upgrade hooktap or give this relay another data folder",
        ),
        (  # the history's message as it always was
            Store,
            StoreError,
            "{path} was written by a newer hooktap (schema 9, this one knows 1); upgrade "
            "hooktap or point HOOKTAP_HOME elsewhere",
        ),
    ],
)
def test_a_database_from_a_newer_hooktap_is_one_clear_error(
    tmp_path: Path, opener: Callable[[Path], object], error: type[Exception], message: str
) -> None:
    path = tmp_path / "file.db"
    opener(path).close()  # type: ignore[attr-defined]
    with raw(path) as db:
        db.execute("PRAGMA user_version = 9")
    with pytest.raises(error) as info:
        opener(path)
    assert str(info.value) == message.format(path=path)


# -- damaged files -------------------------------------------------------------------------


def not_a_database(path: Path) -> str:
    path.write_bytes(b"not sqlite at all " * 1000)
    return "is damaged (file is not a database)"


def a_folder(path: Path) -> str:
    path.mkdir()
    return "is a folder"


def a_folder_for_its_wal(path: Path) -> str:
    open_database(path, [TABLE_A]).close()
    wal = path.with_name(path.name + "-wal")
    wal.mkdir()
    return f"cannot be used: {wal} is a folder"


def cut_short(path: Path) -> str:
    """SQLite refuses a file shorter than its header says at the first read: the cheap check
    of the schema finds it."""
    db = open_database(path, [TABLE_A])
    db.executemany("INSERT INTO a VALUES (?)", [(i,) for i in range(20_000)])
    db.close()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return "is damaged (database disk image is malformed)"


DAMAGE = [not_a_database, a_folder, a_folder_for_its_wal, cut_short]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_file_is_refused_untouched(tmp_path: Path, damage: Callable[[Path], str]) -> None:
    path = tmp_path / "x.db"
    why = damage(path)
    before = digest(path) if path.is_file() else None
    with pytest.raises(Damaged) as info:
        open_database(path, [TABLE_A])
    assert info.value.why == why
    if before is not None:
        assert digest(path) == before


def a_relay_file_damaged_past_its_schema(path: Path) -> str:
    """Every page but the first (the schema): the file opens, and RelayDB's first read of its
    queue finds a malformed page, as damage deep inside a big file would."""
    db = RelayDB(path)
    for i in range(100):
        db.db.execute(
            "INSERT INTO queue (channel, id, received_at, meta, body) VALUES (?, ?, 1, '{}', ?)",
            ("c", f"d{i}", b"x" * 3000),
        )
    db.close()  # the last connection: the WAL goes into the file and is deleted
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xff" * (path.stat().st_size - 4096))
    return "is damaged (database disk image is malformed)"


RELAY = (RelayDB, UnusableFile, "the relay's database")
HISTORY = (Store, HistoryDamaged, "hooktap's history")


@pytest.mark.parametrize(
    ("kind", "damage"),
    [
        *((RELAY, d) for d in [*DAMAGE[:3], a_relay_file_damaged_past_its_schema]),
        *((HISTORY, d) for d in DAMAGE[:3]),  # test_broken_files damages histories further
    ],
)
def test_a_damaged_database_is_its_own_clear_error_with_the_way_out(
    tmp_path: Path,
    kind: tuple[Callable[[Path], object], type[Exception], str],
    damage: Callable[[Path], str],
) -> None:
    opener, error, what = kind
    path = tmp_path / "file.db"
    why = damage(path)
    with pytest.raises(error) as info:
        opener(path)
    line = str(info.value)
    assert line.startswith(f"{what} {path} {why}. Nothing was changed; ")
    assert "run: mkdir " in line and "\n" not in line


# -- files made before the shared opening ---------------------------------------------------


def test_a_relay_file_made_before_versions_opens_with_its_queue_and_channels(
    tmp_path: Path,
) -> None:
    path, token = tmp_path / "relay.db", new_token()
    with raw(path) as db:
        db.executescript(RELAY_BEFORE_VERSIONS)
        db.execute("INSERT INTO channels VALUES ('chan1', ?, 100.0, 200.0)", (hash_token(token),))
        meta = {
            "method": "POST",
            "path": "/c/chan1/x",
            "query": "a=1",
            "headers": [["Content-Type", "application/json"], ["svix-id", "msg_1"]],
            "remote": "203.0.113.9",
            "scheme": "https",
            "host": "relay.example",
        }
        db.execute(
            "INSERT INTO queue (channel, id, received_at, meta, body, handed_to) "
            "VALUES ('chan1', 'd1', 150.0, ?, ?, 'hist1')",
            (json.dumps(meta), b'{"a": 1}'),
        )
    assert version(raw(path)) == 0
    before = schema_of(path)

    for _ in range(2):  # migrated once, then opened as it is
        relay = RelayDB(path)
        assert relay.check_token("chan1", token) and relay.depth("chan1") == 1
        assert relay.channel_state("chan1", ttl=100, now=250.0) == "live"  # last_seen kept
        ((delivery, handed_to),) = list(relay.pending("chan1"))
        assert (delivery.id, delivery.body, handed_to) == ("d1", b'{"a": 1}', "hist1")
        assert delivery.headers == [("Content-Type", "application/json"), ("svix-id", "msg_1")]
        assert (delivery.remote, delivery.scheme, delivery.host) == (
            "203.0.113.9",
            "https",
            "relay.example",
        )
        relay.close()
        assert schema_of(path) == before  # tables and indexes exactly as they were
        assert version(raw(path)) == 1


def test_a_history_made_before_the_shared_opening_opens_unchanged(tmp_path: Path) -> None:
    """A history as hooktap has made it since schema 1: the same tables, a history id."""
    path = tmp_path / "history.db"
    with raw(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(SCHEMA + ";" + META_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('history_id', 'abc123')")
        db.execute(
            "INSERT INTO deliveries (id, received_at, method, path, query, channel, target, "
            "signature, signature_reason, svix_id, event_id, event_type, event_created_at, "
            "state, body_size) VALUES ('dlv_1', 1.7e9, 'POST', '/hooks', '', 'ch1', "
            "'http://localhost:8000', 'unsigned', '', NULL, NULL, NULL, NULL, 'done', 2)"
        )
        db.execute(
            "INSERT INTO payloads VALUES (1, ?, ?)", ('[["content-type","text/plain"]]', b"hi")
        )
        db.execute("PRAGMA user_version = 1")
    before = schema_of(path)
    with Store(path) as store:
        assert store.history_id == "abc123"
        found = store.get("dlv_1")
        assert found is not None and (found.body, found.state) == (b"hi", "done")
        assert found.headers == [("content-type", "text/plain")]
    assert schema_of(path) == before
