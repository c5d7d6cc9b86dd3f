"""Bodies over 64 KiB live in files beside the history: real files in tmp_path, no mocks."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hooktap.filters import parse_filter
from hooktap.records import Attempt, Delivery
from hooktap.store import INLINE_BODY_MAX, Store, StoreError
from support.history import record

NOW = 1_750_000_000.0
MB = 1024 * 1024


def delivery(id: str, body: bytes, *, at: float = NOW) -> Delivery:
    return Delivery(
        id=id,
        received_at=at,
        method="POST",
        path="/hooks",
        query="",
        headers=[("content-type", "application/octet-stream")],
        body=body,
        channel="ch1",
        target="http://localhost:8000/webhooks",
        signature="valid",
        svix_id=f"msg_{id}",
        state="dispatched",
    )


def binary(size: int) -> bytes:
    """Random bytes that are certainly not UTF-8 (a lone continuation byte up front)."""
    body = b"\x80" + os.urandom(size - 1)
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    return body


def files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "bodies"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def stored_prefix(path: Path, delivery_id: str) -> bytes:
    raw = sqlite3.connect(path)
    try:
        (body,) = raw.execute(
            "SELECT p.body FROM payloads p JOIN deliveries d ON d.seq = p.seq WHERE d.id = ?",
            (delivery_id,),
        ).fetchone()
    finally:
        raw.close()
    return bytes(body)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


@pytest.fixture
def store(path: Path) -> Store:
    with Store(path) as s:
        yield s


@pytest.mark.parametrize("size", [MB, 10 * MB], ids=["1MB", "10MB"])
def test_big_binary_body_round_trips_byte_exact(
    store: Store, path: Path, tmp_path: Path, size: int
) -> None:
    body = binary(size)
    d = delivery("big", body)
    assert record(store, d) is True
    got = store.get("big")
    assert got is not None
    assert got.body == body
    assert got == d
    assert store.query()[0].body_size == size
    assert stored_prefix(path, "big") == body[:INLINE_BODY_MAX]
    assert files(tmp_path) == ["1.body"]


def test_write_batch_of_several_with_their_forwards(store: Store, tmp_path: Path) -> None:
    bodies = {f"d{i}": binary(INLINE_BODY_MAX + 1 + i) for i in range(3)}
    bodies["small"] = b"tiny"
    store.write_batch([delivery(i, b) for i, b in bodies.items()], [])
    forwards = [
        (i, Attempt(delivery_id=i, kind="forward", started_at=NOW, target_url="x", status=200))
        for i in bodies
    ]
    store.write_batch([], forwards)
    assert {i: store.get(i).body for i in bodies} == bodies
    assert files(tmp_path) == ["1.body", "2.body", "3.body"]


def test_64_kib_stays_inline_and_one_byte_more_goes_to_a_file(
    store: Store, path: Path, tmp_path: Path
) -> None:
    assert INLINE_BODY_MAX == 64 * 1024
    exact, over = binary(INLINE_BODY_MAX), binary(INLINE_BODY_MAX + 1)
    record(store, delivery("exact", exact))
    assert files(tmp_path) == []
    assert stored_prefix(path, "exact") == exact
    record(store, delivery("over", over))
    assert files(tmp_path) == ["2.body"]
    assert (tmp_path / "bodies" / "2.body").read_bytes() == over
    assert stored_prefix(path, "over") == over[:INLINE_BODY_MAX]
    assert store.get("exact").body == exact
    assert store.get("over").body == over


def test_file_is_0600_and_folder_0700_even_with_open_umask(path: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Store(path) as s:
            record(s, delivery("big", binary(MB)))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "bodies").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "bodies" / "1.body").stat().st_mode) == 0o600


def test_too_open_folder_is_tightened(path: Path, tmp_path: Path) -> None:
    (tmp_path / "bodies").mkdir(mode=0o755)
    (tmp_path / "bodies").chmod(0o755)
    with Store(path) as s:
        record(s, delivery("big", binary(MB)))
    assert stat.S_IMODE((tmp_path / "bodies").stat().st_mode) == 0o700


def test_file_is_named_by_seq_never_by_the_network_id(store: Store, tmp_path: Path) -> None:
    body = binary(MB)
    record(store, delivery("../../escape", body))
    assert files(tmp_path) == ["1.body"]
    assert not (tmp_path.parent / "escape").exists()
    assert store.get("../../escape").body == body


def test_text_filter_searches_the_first_64_kib_of_a_big_body(store: Store) -> None:
    near = b"x" * 1000 + b"Needle-Early" + b"y" * (INLINE_BODY_MAX - 1100)
    body = near + b"z" * MB + b"needle-late"
    record(store, delivery("big", body))
    record(store, delivery("small", b"nothing to see"))
    assert [r.id for r in store.query(parse_filter("needle-early"))] == ["big"]
    assert store.count(parse_filter("NEEDLE-EARLY")) == 1
    assert store.query(parse_filter("needle-late")) == []  # past the stored prefix, documented


def test_retention_deletes_the_files_of_pruned_deliveries(
    store: Store, path: Path, tmp_path: Path
) -> None:
    old_body, new_body = binary(MB), binary(MB)
    record(store, delivery("old", old_body, at=NOW - 91 * 86400))
    record(store, delivery("old-small", b"small", at=NOW - 91 * 86400))
    record(store, delivery("new", new_body, at=NOW - 89 * 86400))
    assert files(tmp_path) == ["1.body", "3.body"]
    assert store.prune(now=NOW) == 2
    assert files(tmp_path) == ["3.body"]
    assert store.get("new").body == new_body
    assert store.prune(0, now=NOW) == 1
    assert files(tmp_path) == []
    # Everything pruned: the next insert is handed seq 1 again and keeps its file.
    again = binary(MB)
    record(store, delivery("again", again, at=NOW))
    assert files(tmp_path) == ["1.body"]
    assert store.get("again").body == again


def test_retention_survives_a_file_deleted_by_hand(store: Store, tmp_path: Path) -> None:
    record(store, delivery("old", binary(MB), at=NOW - 91 * 86400))
    (tmp_path / "bodies" / "1.body").unlink()
    assert store.prune(now=NOW) == 1


def test_duplicate_id_writes_no_file_and_keeps_the_original(store: Store, tmp_path: Path) -> None:
    first, second = binary(MB), binary(2 * MB)
    assert record(store, delivery("d1", first)) is True
    assert record(store, delivery("d1", second)) is False
    (again,) = store.write_batch([delivery("d1", second)], [])
    assert again.new is False
    assert files(tmp_path) == ["1.body"]
    assert store.get("d1").body == first
    assert store.query()[0].body_size == len(first)


def test_missing_file_is_a_store_error_naming_it(store: Store, tmp_path: Path) -> None:
    record(store, delivery("big", binary(MB)))
    file = tmp_path / "bodies" / "1.body"
    file.unlink()
    with pytest.raises(StoreError) as info:
        store.get("big")
    message = str(info.value)
    assert "body of delivery big is missing" in message
    assert str(file) in message
    assert "over 64 KiB" in message
    assert [r.id for r in store.query()] == ["big"]  # the listing does not need the file


def test_short_or_foreign_file_is_a_store_error(store: Store, tmp_path: Path) -> None:
    body = binary(MB)
    record(store, delivery("big", body))
    file = tmp_path / "bodies" / "1.body"
    file.write_bytes(body[: MB // 2])
    with pytest.raises(StoreError, match="cut short") as info:
        store.get("big")
    assert str(file) in str(info.value)
    file.write_bytes(binary(MB))  # the right size, someone else's bytes
    with pytest.raises(StoreError, match="does not match"):
        store.get("big")


def test_failed_batch_leaves_no_row_and_no_file(store: Store, tmp_path: Path) -> None:
    unknown = Attempt(delivery_id="nope", kind="forward", started_at=NOW, target_url="x")
    with pytest.raises(LookupError):
        store.write_batch([delivery("big", binary(MB))], [("nope", unknown)])
    assert store.count() == 0
    assert files(tmp_path) == []
    body = binary(MB)
    (added,) = store.write_batch([delivery("big", body)], [])  # retried alone, as group commit
    assert added.new is True
    assert store.get("big").body == body


def test_unwritable_file_is_a_store_error_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    (tmp_path / "bodies").write_bytes(b"a file where the folder should be")
    with pytest.raises(StoreError, match="cannot write the body of delivery big") as info:
        record(store, delivery("big", binary(MB)))
    assert str(tmp_path / "bodies" / "1.body") in str(info.value)
    assert "bodies exists and is not a folder; move it aside" in str(info.value)
    assert store.count() == 0
    assert record(store, delivery("small", b"still works")) is True


def test_orphan_from_a_crash_is_overwritten_by_the_seq_reused(store: Store, tmp_path: Path) -> None:
    # A crash after writing the file but before the commit leaves a file for a seq no row has.
    (tmp_path / "bodies").mkdir(mode=0o700)
    (tmp_path / "bodies" / "1.body").write_bytes(binary(3 * MB))
    body = binary(MB)
    record(store, delivery("big", body))
    assert store.get("big").body == body


def test_big_body_stored_inline_by_an_older_hooktap_still_reads(path: Path) -> None:
    with Store(path) as s:
        record(s, delivery("old", b"placeholder"))
    body = binary(MB)
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE payloads SET body = ?", (body,))
        raw.execute("UPDATE deliveries SET body_size = ?", (len(body),))
    raw.close()
    with Store(path) as s:
        assert s.get("old").body == body
        assert s.prune(0, now=NOW + 1) == 1


def test_another_store_on_the_same_file_reads_the_big_body(store: Store, path: Path) -> None:
    body = binary(MB)
    record(store, delivery("big", body))
    with Store(path) as reader:  # the TUI's own connection
        assert reader.get("big").body == body
    code = (
        "import hashlib, sys; from hooktap.store import Store\n"
        "print(hashlib.sha256(Store(sys.argv[1]).get('big').body).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == hashlib.sha256(body).hexdigest()
