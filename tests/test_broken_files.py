"""Files in HOOKTAP_HOME that hooktap cannot use: one clear line and exit code 2 from every
command a user runs, never a traceback, and for a damaged database the exact command that sets
it aside, which works. Real CLI processes, real SQLite files damaged on purpose."""

from __future__ import annotations

import hashlib
import os
import re
import select
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hooktap.store import INLINE_BODY_MAX, Store
from support.history import record
from test_store_bodies import delivery  # a small delivery record

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ID = "dlv_00007"
PAGE = 4096

LISTEN = ["listen", "--json", "--port", "0", "--forward", "8000"]
LISTEN_TUI = ["listen", "--tui", "--port", "0", "--forward", "8000"]
DELIVERIES = ["deliveries", "--limit", "0"]
SHOW = ["deliveries", "show", ID]
REPLAY = ["replay", ID, "--forward", "9"]


def env(home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "HOOKTAP_RELAY"}
    # A secret given: `listen` then needs nothing else from HOOKTAP_HOME before its history.
    return {**clean, "HOOKTAP_HOME": str(home), "PIVOTAL_WEBHOOK_SECRET": SECRET}


# Generous: a refusal takes a second, but a CLI start costs ~1 s of CPU on a busy machine.
TIMEOUT = 45


def hooktap(home: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hooktap", *args],
        env=env(home),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def in_terminal(home: Path, *args: str, timeout: float = TIMEOUT) -> tuple[int, str]:
    """The command on a pseudo-terminal (the inspector starts only on one): its exit code and
    all it wrote there, screen codes included. A command still running at `timeout` (its TUI
    started) is killed and fails."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hooktap", *args],
        env={**env(home), "TERM": "xterm-256color"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process is gone and the terminal with it
                break
            if not chunk:
                break
            seen += chunk
        code = proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"hooktap {' '.join(args)} was still running after {timeout} s: {seen!r}")
    finally:
        os.close(leader)
    return code, seen.decode("utf-8", "replace")


def run_all(home: Path, *commands: list[str], terminal: tuple[list[str], ...] = ()) -> list[str]:
    """Each command (and each of `terminal` on a pseudo-terminal) at once, for speed: their
    stderr, in order, after checking that each was refused (see refused)."""
    with ThreadPoolExecutor(len(commands) + len(terminal)) as pool:
        plain = [pool.submit(hooktap, home, *args) for args in commands]
        tty = [pool.submit(in_terminal, home, *args) for args in terminal]
        results = [(f.result().returncode, f.result().stderr) for f in plain]
        return [refused(*r) for r in results + [f.result() for f in tty]]


def refused(code: int, err: str) -> str:
    """Exit 2, one line saying what is wrong (after the inspector's screen codes, if any), no
    traceback; that line."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line[line.index("Error: ") :] for line in err.splitlines() if "Error: " in line]
    assert len(lines) == 1, err
    return lines[0]


def says(lines: list[str], *words: str) -> None:
    for line in lines:
        for word in words:
            assert word in line, line


def seeded(home: Path, count: int = 200) -> Path:
    """A history of `count` small deliveries and one big one (so bodies/ exists too)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "history.db"
    with Store(path) as store:
        for i in range(count):
            big = i == count - 1
            body = b"B" * (INLINE_BODY_MAX + 1) if big else b'{"x":"' + b"y" * 2000 + b'"}'
            record(store, delivery(f"dlv_{i:05d}", body, at=1.7e9 + i))
    assert (home / "bodies").is_dir()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_aside(line: str) -> None:
    """Run the command the message gives, as the user would paste it."""
    match = re.search(r"run: (mkdir .*/)$", line)
    assert match, line
    subprocess.run(["sh", "-c", match.group(1)], check=True, timeout=10)


def test_a_truncated_history_is_refused_by_every_command_and_the_way_out_works(
    hooktap_home: Path,
) -> None:
    path = seeded(hooktap_home)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    before = digest(path)
    # listen --tui and inspect: refused before the inspector takes the screen. `deliveries
    # show` and `replay` open history as `deliveries` does (see the test of deeper damage).
    lines = run_all(hooktap_home, LISTEN, DELIVERIES, terminal=(LISTEN_TUI, ["inspect"]))
    says(lines, str(path), "is damaged (database disk image is malformed)", "run: mkdir ")
    assert digest(path) == before  # nothing was changed

    assert str(hooktap_home / "bodies") in lines[0]  # big bodies are named by row: they go too
    set_aside(lines[0])
    (moved,) = hooktap_home.glob("history-aside-*")
    assert digest(moved / "history.db") == before  # set aside, not lost
    assert (moved / "bodies").is_dir()
    fresh = hooktap(hooktap_home, "deliveries")
    assert fresh.returncode == 0, fresh.stderr
    assert "No deliveries are stored yet" in fresh.stderr


def test_a_history_that_is_not_a_database(hooktap_home: Path) -> None:
    hooktap_home.mkdir()
    path = hooktap_home / "history.db"
    path.write_bytes(b"not sqlite at all " * 1000)
    says(run_all(hooktap_home, LISTEN), str(path), "(file is not a database)", "mv ")


def damage_all_but_the_schema(path: Path) -> None:
    """Every page but the first (the schema) and the history id's: the file opens, and the
    first query of any table finds a malformed page, as damage deep inside a big file would."""
    raw = sqlite3.connect(path)
    keep = {1} | {
        page
        for (page,) in raw.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'meta'")
    }
    raw.close()
    assert not path.with_name("history.db-wal").exists()  # all of it is in the file itself
    with open(path, "r+b") as f:
        for page in range(2, path.stat().st_size // PAGE + 1):
            if page not in keep:
                f.seek((page - 1) * PAGE)
                f.write(b"\xff" * PAGE)
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        raw.execute("SELECT count(*) FROM deliveries").fetchone()
    raw.close()


def test_a_history_damaged_past_its_first_page_fails_at_the_first_query(
    hooktap_home: Path,
) -> None:
    path = seeded(hooktap_home)
    damage_all_but_the_schema(path)
    Store(path).close()  # opens: the cheap check at open does not read every page
    # The inspector finds it only once it reads: it ends, and says so like the others.
    lines = run_all(hooktap_home, DELIVERIES, SHOW, REPLAY, LISTEN, terminal=(["inspect"],))
    says(lines, str(path), "is damaged (database disk image is malformed)", "mv ")


def test_a_history_that_is_a_folder(hooktap_home: Path) -> None:
    path = hooktap_home / "history.db"
    path.mkdir(parents=True)
    lines = run_all(hooktap_home, LISTEN, terminal=(["inspect"],))
    says(lines, f"{path} is a folder", f"run: mkdir {hooktap_home / 'history-aside-'}")


def test_a_history_whose_wal_is_a_folder(hooktap_home: Path) -> None:
    path = seeded(hooktap_home, 5)
    wal = hooktap_home / "history.db-wal"
    wal.mkdir()
    says(run_all(hooktap_home, DELIVERIES), str(path), f"{wal} is a folder")


def test_a_garbage_wal_is_ignored_by_sqlite_and_nothing_is_lost(hooktap_home: Path) -> None:
    """SQLite checks a WAL's header and every frame's checksum and skips what fails: a WAL of
    garbage is no damage to report. This pins that down: history reads whole."""
    seeded(hooktap_home, 20)
    (hooktap_home / "history.db-wal").write_bytes(b"garbage!" * 1000)
    result = hooktap(hooktap_home, "deliveries", "--limit", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 20


def test_hooktap_home_that_is_a_file(hooktap_home: Path) -> None:
    hooktap_home.parent.mkdir(parents=True, exist_ok=True)
    hooktap_home.write_text("not a folder")
    lines = run_all(hooktap_home, LISTEN, DELIVERIES, terminal=(["inspect"],))
    says(lines, f"HOOKTAP_HOME {hooktap_home} is not a folder", "mv ")
    # trigger looks for a running listener in HOOKTAP_HOME: exit 2 and one line whichever way
    # it words it (listen/state.py is where it looks).
    run_all(hooktap_home, ["trigger", "customer.updated"])
    assert hooktap_home.read_text() == "not a folder"


def damaged_relay_db(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "relay.db"
    path.write_bytes(b"not sqlite at all " * 1000)
    return path


def test_the_embedded_relays_damaged_database(hooktap_home: Path) -> None:
    path = damaged_relay_db(hooktap_home / "relay")
    lines = run_all(hooktap_home, LISTEN, ["relay", "--port", "0"], terminal=(LISTEN_TUI,))
    says(lines, str(path), "is damaged (file is not a database)", "run: mkdir ")
    set_aside(lines[0])
    assert not path.exists() and list((hooktap_home / "relay").glob("relay-aside-*/relay.db"))


def test_a_standalone_relays_damaged_database(hooktap_home: Path, tmp_path: Path) -> None:
    path = damaged_relay_db(tmp_path / "relay-data")
    lines = run_all(hooktap_home, ["relay", "--port", "0", "--data-dir", str(path.parent)])
    says(lines, str(path), "file is not a database")


def test_channels_json_that_is_not_utf8(hooktap_home: Path) -> None:
    """The shapes channels.json can be wrong in are tested in test_channels.py; bytes that are
    not text at all go the same way."""
    hooktap_home.mkdir()
    content = b'{"\xff\xfe": 1}'
    (hooktap_home / "channels.json").write_bytes(content)
    lines = run_all(hooktap_home, LISTEN)
    says(lines, "channels.json is not valid JSON ('utf-8' codec can't decode", "delete it")
    assert (hooktap_home / "channels.json").read_bytes() == content


def test_the_way_out_still_works_when_sqlite_removed_its_side_files_meanwhile(
    tmp_path: Path,
) -> None:
    """The message says to stop the hooktap commands using the file first, and the last one to
    close it removes its -wal and -shm: the pasted command must still move everything else.
    (Seen when a listener still held the file while the message was made.)"""
    from hooktap.home import aside_command, sqlite_members

    path = tmp_path / "history.db"
    for name in ("history.db", "history.db-wal", "history.db-shm"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "bodies").mkdir()
    command = aside_command(path, [*sqlite_members(path), tmp_path / "bodies"])
    (tmp_path / "history.db-wal").unlink()  # the last connection closed, after the message
    (tmp_path / "history.db-shm").unlink()
    subprocess.run(["sh", "-c", command], check=True, timeout=10)
    (moved,) = tmp_path.glob("history-aside-*")
    assert sorted(p.name for p in moved.iterdir()) == ["bodies", "history.db"]
    assert not path.exists()
