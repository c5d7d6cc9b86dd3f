"""The SQLite history: real files in tmp_path, several connections, real timings."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hooktap.filters import parse_filter
from hooktap.records import Attempt, Delivery
from hooktap.store import (
    SCHEMA_VERSION,
    AmbiguousId,
    HistoryDamaged,
    Store,
    StoreClosed,
    StoreError,
)
from support.history import finish, record

NOW = 1_750_000_000.0


def envelope(event_type: str, text: str = "") -> bytes:
    return json.dumps(
        {
            "id": f"evt_{event_type}",
            "type": event_type,
            "created_at": "2025-06-15T10:00:00Z",
            "data": {"object": {"name": text}},
        }
    ).encode()


def delivery(
    id: str,
    *,
    at: float = NOW,
    event_type: str | None = "customer.updated",
    body: bytes | None = None,
    signature: str = "valid",
    svix_id: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Delivery:
    return Delivery(
        id=id,
        received_at=at,
        method="POST",
        path="/hooks",
        query="a=1",
        headers=headers if headers is not None else [("content-type", "application/json")],
        body=body if body is not None else envelope(event_type or "x"),
        channel="ch1",
        target="http://localhost:8000/webhooks",
        signature=signature,
        signature_reason="because",
        svix_id=svix_id if svix_id is not None else f"msg_{id}",
        event_id=f"evt_{id}" if event_type else None,
        event_type=event_type,
        event_created_at="2025-06-15T10:00:00Z" if event_type else None,
        state="dispatched",
    )


def forward(delivery_id: str, status: int | None, *, error: str | None = None) -> Attempt:
    return Attempt(
        delivery_id=delivery_id,
        kind="forward",
        started_at=NOW + 0.01,
        target_url="http://localhost:8000/webhooks/hooks?a=1",
        status=status,
        response_headers=[("Content-Type", "text/plain"), ("X-Seen", "1"), ("x-seen", "2")],
        response_body=b"ok" if status else b"",
        duration_ms=12.5,
        error=error,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "history.db") as s:
        yield s


def test_delivery_round_trips_byte_for_byte(store: Store) -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("X-Dup", "a"),
        ("x-dup", "b"),
        ("X-Latin", "caf\xe9"),
    ]
    body = bytes(range(256)) * 4
    d = delivery("d1", body=body, headers=headers, event_type=None)
    assert record(store, d) is True
    got = store.get("d1")
    assert got == d
    assert got.headers == headers
    assert got.body == body


def test_ten_megabyte_body(store: Store) -> None:
    body = os.urandom(10 * 1024 * 1024)
    started = time.perf_counter()
    record(store, delivery("big", body=body))
    finish(store, "big", forward("big", 200))
    elapsed = time.perf_counter() - started
    assert store.get("big").body == body
    assert store.query()[0].body_size == len(body)
    assert elapsed < 2.0


def test_duplicate_id_is_refused_and_original_kept(store: Store) -> None:
    assert record(store, delivery("d1", body=b"first"))
    assert record(store, delivery("d1", body=b"second")) is False
    assert store.get("d1").body == b"first"
    assert store.count() == 1


def test_finish_stores_attempt_and_marks_done(store: Store) -> None:
    record(store, delivery("d1"))
    assert store.get_state("d1") == "dispatched"
    attempt = forward("d1", 201)
    attempt_id = finish(store, "d1", attempt)
    assert attempt.id == attempt_id
    assert store.get_state("d1") == "done"
    first = store.first_attempt("d1")
    assert first == attempt
    assert first.response_headers == [
        ("Content-Type", "text/plain"),
        ("X-Seen", "1"),
        ("x-seen", "2"),
    ]


def test_finish_of_unknown_delivery_stores_nothing(store: Store) -> None:
    with pytest.raises(LookupError, match="nope"):
        finish(store, "nope", forward("nope", 200))
    assert store.attempts("nope") == []


def test_replays_are_new_attempts_never_overwriting(store: Store) -> None:
    record(store, delivery("d1"))
    finish(store, "d1", forward("d1", 500))
    replay = Attempt(
        delivery_id="d1",
        kind="replay",
        started_at=NOW + 60,
        target_url="http://x/",
        request_headers=[("svix-id", "msg_1")],
        request_body=b"edited",
        status=200,
        note="edited body, re-signed",
    )
    store.add_attempt(replay)
    attempts = store.attempts("d1")
    assert [a.kind for a in attempts] == ["forward", "replay"]
    assert attempts[0].status == 500
    assert attempts[1].request_body == b"edited"
    assert attempts[1].note == "edited body, re-signed"
    assert store.first_attempt("d1").status == 500
    row = store.query()[0]
    assert (row.status, row.attempts) == (500, 2)  # the listing keeps the original's status


def test_replay_attempt_for_unknown_delivery(store: Store) -> None:
    with pytest.raises(LookupError):
        store.add_attempt(Attempt(delivery_id="zz", kind="replay", started_at=NOW, target_url=""))


def test_mark_interrupted(store: Store) -> None:
    record(store, delivery("d1"))
    store.mark("d1", "interrupted")
    assert store.get_state("d1") == "interrupted"
    assert store.get_state("missing") is None


def test_get_by_unique_prefix_and_ambiguous(store: Store) -> None:
    for i in ("abc123", "abd456", "abd789"):
        record(store, delivery(i))
    assert store.get("abc").id == "abc123"
    assert store.get("abd456").id == "abd456"
    assert store.get("zzz") is None
    assert store.get("") is None
    with pytest.raises(AmbiguousId) as info:
        store.get("abd")
    assert "abd456" in str(info.value) and "abd789" in str(info.value)


def test_file_is_owner_only_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "sub" / "history.db"
        with Store(path) as s:
            record(s, delivery("d1"))
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            wal = Path(str(path) + "-wal")
            assert wal.exists()
            assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_existing_too_open_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    Store(path).close()
    path.chmod(0o644)
    Store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer hooktap"):
        Store(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not sqlite at all, just some text" * 100)
    with pytest.raises(HistoryDamaged, match=r"is damaged \(file is not a database\)") as info:
        Store(path)
    assert f"mv {path} " in str(info.value)  # the way out, with nothing deleted
    assert path.read_bytes().startswith(b"this is not sqlite")


def test_a_closed_store_raises_what_the_inspector_tells_from_damage(tmp_path: Path) -> None:
    """A call after close() is a StoreClosed, a StoreError of its own: tui/loader.py takes it
    for a read cut short by quitting, not for a broken history."""
    store = Store(tmp_path / "history.db")
    store.close()
    for call in (
        store.count,
        lambda: store.mark("d1", "done"),
        lambda: store.write_batch([delivery("d1")], []),
        lambda: store.background_checkpoints(True),
    ):
        with pytest.raises(StoreClosed, match="closed"):
            call()


def test_no_sqlite_error_leaves_a_store_method(tmp_path: Path) -> None:
    """One error contract: whatever SQLite raises (here a value it cannot bind, which it
    reports as a ProgrammingError) leaves every method as a StoreError naming the file."""
    path = tmp_path / "history.db"
    with Store(path) as store:
        record(store, delivery("d1"))
        odd: Any = object()
        calls = (
            lambda: store.get_state(odd),
            lambda: store.add_attempt(Attempt("d1", "replay", time.time(), "http://x", note=odd)),
            lambda: store.write_batch([delivery(odd)], []),
            lambda: store.mark("d1", odd),
        )
        for call in calls:
            with pytest.raises(StoreError, match=f"cannot .* {path}") as info:
                call()
            assert isinstance(info.value.__cause__, sqlite3.Error)
        assert store.get_state("d1") == "dispatched"  # and the store goes on working


def test_history_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with Store(path) as s:
        record(s, delivery("d1"))
        finish(s, "d1", forward("d1", 204))
    with Store(path) as s:
        assert s.get_state("d1") == "done"
        assert s.first_attempt("d1").status == 204


def test_reader_in_another_process_sees_writes(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with Store(path) as s:
        record(s, delivery("d1"))
        finish(s, "d1", forward("d1", 200))
        code = (
            "import sys; from hooktap.store import Store\n"
            "s = Store(sys.argv[1]); print(s.count(), s.query()[0].status)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
        ).stdout
        assert out.split() == ["1", "200"]
        record(s, delivery("d2"))  # the writer is not blocked by the reader having been there


def test_writer_waits_for_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with Store(path) as s:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        started = time.perf_counter()
        assert record(s, delivery("d1"))  # waits on busy_timeout instead of failing
        assert time.perf_counter() - started >= 0.25
        release.join()
        other.close()


def test_reader_opens_and_reads_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with Store(path) as s:
        record(s, delivery("d1"))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE deliveries SET state = 'done'")
    try:
        started = time.perf_counter()
        with Store(path) as reader:  # `hooktap deliveries` while `listen` is mid-commit
            assert ids(reader.query()) == ["d1"]
            assert reader.get_state("d1") == "dispatched"  # the last committed state
        assert time.perf_counter() - started < 0.5
    finally:
        writer.execute("COMMIT")
        writer.close()


def seed(store: Store) -> None:
    rows = [
        ("a", NOW - 7200, "customer.created", "valid", 200, None),
        ("b", NOW - 3000, "customer.updated", "invalid", 401, None),
        ("c", NOW - 1800, "task.completed", "expired", 503, None),
        ("d", NOW - 600, "task.updated", "unsigned", None, "connection refused"),
        ("e", NOW - 60, None, "no-secret", 500, None),
    ]
    for id, at, event_type, sig, status, error in rows:
        body = envelope(event_type, "ACME Corp") if event_type else b"\xff\x00plain ACME"
        record(store, delivery(id, at=at, event_type=event_type, signature=sig, body=body))
        finish(store, id, forward(id, status, error=error))
    record(store, delivery("f", at=NOW - 30, event_type="customer.churned"))
    store.mark("f", "interrupted")


def ids(rows: list) -> list[str]:
    return [r.id for r in rows]


def test_query_newest_first_with_forward_fields(store: Store) -> None:
    seed(store)
    rows = store.query(now=NOW)
    assert ids(rows) == ["f", "e", "d", "c", "b", "a"]
    d = rows[2]
    assert (d.status, d.error, d.duration_ms, d.attempts) == (None, "connection refused", 12.5, 1)
    assert rows[0].status is None and rows[0].attempts == 0
    assert ids(store.query(limit=2, now=NOW)) == ["f", "e"]
    assert ids(store.query(oldest_first=True, limit=2, now=NOW)) == ["a", "b"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("type:customer.*", ["f", "b", "a"]),
        ("type:customer", ["f", "b", "a"]),
        ("type:task.completed", ["c"]),
        ("type:customer.c*", ["f", "a"]),
        ("type:task.*,customer.created", ["d", "c", "a"]),
        ("status:5xx", ["e", "c"]),
        ("status:401", ["b"]),
        ("status:2xx", ["a"]),
        ("status:err", ["f", "d"]),
        ("status:4xx,5xx", ["e", "c", "b"]),
        ("sig:invalid", ["b"]),
        ("sig:invalid,expired", ["c", "b"]),
        ("sig:unsigned", ["d"]),
        ("since:1h", ["f", "e", "d", "c", "b"]),
        ("since:15m", ["f", "e", "d"]),
        ("acme", ["e", "d", "c", "b", "a"]),
        ("acme plain", ["e"]),
        ('"acme corp"', ["d", "c", "b", "a"]),
        ("type:customer.* status:4xx acme", ["b"]),
        ("nothing-matches-this", []),
    ],
)
def test_filters(store: Store, expr: str, expected: list[str]) -> None:
    seed(store)
    f = parse_filter(expr)
    assert ids(store.query(f, now=NOW)) == expected
    assert store.count(f, now=NOW) == len(expected)


def test_filter_values_are_parameters_not_sql(store: Store) -> None:
    seed(store)
    evil = parse_filter('type:"x\' OR 1=1 --" "\'); DROP TABLE deliveries; --"')
    assert store.query(evil, now=NOW) == []
    assert store.count() == 6


def test_duplicate_svix_id(store: Store) -> None:
    record(store, delivery("one", at=NOW - 100, svix_id="msg_same"))
    record(store, delivery("two", at=NOW - 50, svix_id="msg_same"))
    record(store, delivery("three", at=NOW - 10, svix_id="msg_other"))
    rows = {r.id: r.duplicate for r in store.query()}
    assert rows == {"one": False, "two": True, "three": False}
    assert store.seen_svix_id("msg_same", before_id="two")
    assert not store.seen_svix_id("msg_same", before_id="one")
    assert store.seen_svix_id("msg_same")
    assert not store.seen_svix_id("msg_never")


def test_keyset_and_offset_pagination(store: Store) -> None:
    for i in range(25):
        record(store, delivery(f"d{i:02}", at=NOW + i // 2))  # pairs share a timestamp
    pages, before = [], None
    while True:
        page = store.query(limit=10, before=before)
        if not page:
            break
        pages.append(ids(page))
        before = page[-1].cursor
    flat = [i for p in pages for i in p]
    assert flat == [f"d{i:02}" for i in reversed(range(25))]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert ids(store.query(limit=10, offset=20)) == flat[20:]
    assert store.count() == 25


def test_stats(store: Store) -> None:
    seed(store)
    record(store, delivery("g", at=NOW))  # still dispatched
    assert store.stats() == {
        "received": 7,
        "forwarded_ok": 1,
        "failed": 5,  # 401, 503, refused, 500, interrupted
        "invalid_signatures": 2,
        "pending": 1,
    }
    assert store.stats(since=NOW - 700)["received"] == 4


def test_prune_removes_old_deliveries_with_everything(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with Store(path) as s:
        record(s, delivery("old", at=NOW - 91 * 86400))
        finish(s, "old", forward("old", 200))
        s.add_attempt(Attempt(delivery_id="old", kind="replay", started_at=NOW, target_url="x"))
        record(s, delivery("new", at=NOW - 89 * 86400))
        finish(s, "new", forward("new", 200))
        assert s.prune(now=NOW) == 1
        assert ids(s.query()) == ["new"]
        assert s.attempts("old") == []
        assert s.prune(0.5, now=NOW) == 1
        with pytest.raises(ValueError):
            s.prune(-1)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM payloads").fetchone()[0] == 0
    assert raw.execute("SELECT count(*) FROM attempts").fetchone()[0] == 0


def test_hot_path_is_two_short_transactions(tmp_path: Path) -> None:
    with Store(tmp_path / "history.db") as s:
        pairs = [
            (delivery(f"d{i}", body=b'{"n":%d}' % i), forward(f"d{i}", 200)) for i in range(3000)
        ]
        started = time.perf_counter()
        for d, attempt in pairs:
            record(s, d)
            finish(s, d.id, attempt)
        per_delivery_ms = (time.perf_counter() - started) / len(pairs) * 1000
    assert per_delivery_ms < 1.0  # ~0.15 ms measured here; the forward itself costs more


def fill(path: Path, n: int) -> None:
    """n deliveries (each with a forward attempt) in one transaction, straight into the schema.

    Going through write_batch would spend most of this test writing; the API's own speed is
    measured above, and rows made here pass through the same reads as the listener's.
    """
    Store(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute(
            """WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
            INSERT INTO deliveries (seq, id, received_at, method, path, query, channel, target,
                signature, signature_reason, svix_id, event_id, event_type, event_created_at,
                state, body_size, forward_attempt)
            SELECT i + 1, printf('d%06d', i), ? - ? + i, 'POST', '', '', 'ch', 'http://x',
                CASE WHEN i % 97 THEN 'invalid' ELSE 'valid' END, '', printf('msg_%d', i % 90000),
                printf('evt_%d', i),
                CASE i % 4 WHEN 0 THEN 'customer.created' WHEN 1 THEN 'customer.updated'
                    WHEN 2 THEN 'task.completed' ELSE 'onboarding.delayed' END,
                '', 'done', 20, i + 1
            FROM n""",
            (n, NOW, n),
        )
        db.execute(
            "INSERT INTO payloads (seq, headers, body) SELECT seq, '[]', "
            'CAST(printf(\'{"type":"x","n":%d}\', seq) AS BLOB) FROM deliveries'
        )
        db.execute(
            "INSERT INTO attempts (id, delivery_id, kind, started_at, target_url, status, "
            "duration_ms, error, note, request_headers, response_headers, request_body, "
            "response_body) SELECT seq, id, 'forward', received_at, target, "
            "CASE WHEN seq % 10 = 1 THEN 500 ELSE 200 END, 3.0, NULL, '', '[]', '[]', NULL, "
            "x'6f6b' FROM deliveries"
        )
    db.close()


def test_hundred_thousand_rows_stay_fast(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    fill(path, 100_000)
    with Store(path) as s:
        assert s.count() == 100_000
        checks = [
            lambda: s.query(limit=50),
            lambda: s.query(parse_filter("type:customer.*"), limit=50),
            lambda: s.query(parse_filter("status:5xx sig:valid"), limit=50),
            lambda: s.query(parse_filter('n":99999'), limit=50),
            lambda: s.query(limit=50, before=(NOW - 50_000, 50_000)),
            lambda: s.query(limit=50, offset=5_000),
            lambda: s.count(parse_filter("type:task.* status:5xx")),
            lambda: s.stats(),
        ]
        for check in checks:
            started = time.perf_counter()
            result = check()
            assert time.perf_counter() - started < 0.5, check
            assert result
        newest = s.query(limit=1)[0]
        assert newest.id == "d099999"
        assert newest.duplicate is True  # msg_9999 was first seen 90,000 deliveries earlier
        assert s.query(limit=1, oldest_first=True)[0].duplicate is False


def test_background_checkpoints_keep_the_wal_from_stalling_or_growing(tmp_path: Path) -> None:
    """The listener's connection never checkpoints inside a commit (an fsync there stalled
    the event loop); a thread does, and catches up with every frame written."""
    store = Store(tmp_path / "history.db")
    try:
        store.background_checkpoints(True)
        # SQLite's own checkpoint stays, at 32 MiB: it is what rewinds the WAL under load.
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 8192
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.interval = 0.05
        for i in range(300):
            record(store, delivery(f"d{i}"))
        deadline = time.monotonic() + 10
        while not (checkpointer.last and checkpointer.last[1] == checkpointer.last[2] > 0):
            assert time.monotonic() < deadline, f"no full checkpoint: {checkpointer.last}"
            time.sleep(0.01)
        # Idle: the thread does not checkpoint again without new commits.
        done = checkpointer.checkpoints
        time.sleep(0.2)
        assert checkpointer.checkpoints == done
        store.background_checkpoints(False)
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert len(store.query(None, limit=500)) == 300
    finally:
        store.close()


def test_wal_is_rewound_under_a_steady_stream_of_commits(tmp_path: Path) -> None:
    """PASSIVE checkpoints alone never catch up with a writer that never pauses, and SQLite
    only rewinds a WAL whose every frame is copied: it grew by ~1 GB every 30 s at full load.
    The writer's own checkpoint (at a lower threshold here) finishes what the thread left."""
    store = Store(tmp_path / "history.db")
    wal = tmp_path / "history.db-wal"
    try:
        store.background_checkpoints(True)
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.interval = 0.01
        store._db.execute("PRAGMA wal_autocheckpoint = 200")
        largest = 0
        for i in range(3000):  # never pausing, like a listener under load
            record(store, delivery(f"d{i}"))
            largest = max(largest, wal.stat().st_size)
        frames = 200 + 200 * 20  # the threshold, plus what a slow round lets through
        assert largest < frames * 4200, f"WAL reached {largest} bytes after 3000 commits"
        assert len(store.query(None, limit=10)) == 10
    finally:
        store.close()


def test_a_second_store_in_a_process_keeps_the_first_ones_wal_from_other_processes(
    tmp_path: Path,
) -> None:
    """The inspector opens a Store beside the listener's, and `hooktap trigger` opens and
    closes one in another process. Opening the second must not drop the first's locks: with
    them gone, the other process took itself for the last user of the file and deleted the
    WAL the listener still wrote to, and what it wrote then was lost to every other reader
    (a new one got "disk I/O error")."""
    path = tmp_path / "history.db"
    listener = Store(path)
    with Store(path):  # the inspector's
        other = "from pathlib import Path; from hooktap.store import Store; Store(Path(%r)).close()"
        subprocess.run([sys.executable, "-c", other % str(path)], check=True, timeout=30)
        assert path.with_name("history.db-wal").exists()
        assert record(listener, delivery("d01a0000000000000000a"))
        with Store(path) as reader:
            assert reader.get("d01a0000000000000000a") is not None
    listener.close()
