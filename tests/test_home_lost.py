"""HOOKTAP_HOME lost while `hooktap listen` runs: deleted, or replaced by something unusable.

Real processes and real files throughout: the home is really deleted with rmtree while the
listener holds its databases open, and what a restarted listener sees is read back from disk.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import stat
from pathlib import Path

import aiohttp
import pytest

from hooktap.bodies import INLINE_BODY_MAX
from hooktap.listen.events import HomeLost
from hooktap.listen.group_commit import GroupCommit
from hooktap.listen.home_guard import HomeGuard
from hooktap.records import Delivery
from hooktap.store import BodyMissing, Store, StoreError
from support.history import another_writer, longest_stall, record
from support.procs import Procs, free_port
from support.servers import running_handler, running_listener, running_relay


def test_history_id_is_random_per_history_and_survives_reopen(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        first, other = a.history_id, b.history_id
    assert len(first) == 32 and first != other
    with Store(tmp_path / "a.db") as again:
        assert again.history_id == first


def test_a_history_made_before_history_ids_gets_one_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store(path):
        pass
    with sqlite3.connect(path) as db:  # as a hooktap from before history ids left it
        db.execute("DROP TABLE meta")
    with Store(path) as store:
        made = store.history_id
    with Store(path) as store:
        assert store.history_id == made != ""


# -- the Store moved to a new file under a running process --------------------------------


def _delivery(n: int, body: bytes = b"{}") -> Delivery:
    return Delivery(f"d{n:04d}", 1_700_000_000.0 + n, "POST", "/", "", [], body, state="done")


def _rmtree(path: Path) -> None:
    """rm -rf, again if a file appeared meanwhile: a checkpoint thread whose connection has not
    read yet creates history.db-shm on its first checkpoint, as `rm -rf` would meet it too."""
    for _ in range(5):
        try:
            shutil.rmtree(path)
            return
        except OSError:
            continue
    shutil.rmtree(path)


def test_store_moved_after_its_file_was_deleted_keeps_every_row_and_its_readers(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    writer, reader = Store(home / "history.db"), Store(home / "history.db")  # as the TUI has
    try:
        writer.background_checkpoints(True)
        writer.write_batch([_delivery(0), _delivery(1, b"x" * (INLINE_BODY_MAX + 1))], [])
        history_id = writer.history_id
        _rmtree(home)
        writer.write_batch([_delivery(2)], [])  # into the unlinked file: only the process has it
        writer.move_to()
        writer.write_batch([_delivery(3)], [])
        assert (home / "history.db").stat().st_mode & 0o077 == 0
        assert writer.missing_bodies() == 1  # its file went with the folder
        assert reader.count() == 4  # the reader moved along and sees writes made since
        with Store(home / "history.db") as fresh:  # another process opening the path now
            assert fresh.count() == 4 and fresh.history_id == history_id
        writer.write_batch([_delivery(4)], [])
    finally:
        reader.close()
        writer.close()
    # Closing the last connections must not have removed the new file's WAL by name.
    with Store(home / "history.db") as again:
        assert [s.id for s in again.query(oldest_first=True)] == [f"d{n:04d}" for n in range(5)]


def test_refused_writes_fail_with_the_reason_until_accepted_again(tmp_path: Path) -> None:
    with Store(tmp_path / "history.db") as store:
        store.refuse_writes("HOOKTAP_HOME was deleted")
        with pytest.raises(StoreError, match="HOOKTAP_HOME was deleted"):
            store.write_batch([_delivery(0)], [])
        store.refuse_writes(None)
        store.write_batch([_delivery(0)], [])
        assert store.count() == 1


# -- `hooktap listen` with its home deleted under it --------------------------------------


async def _post(url: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body) as resp:
        await resp.read()
        return resp.status


def _stored_bodies(db_path: Path) -> list[bytes | None]:
    """Every stored body, oldest first; None for one whose body file is missing."""
    bodies: list[bytes | None] = []
    with Store(db_path) as store:
        for row in store.query(limit=None, oldest_first=True):
            try:
                delivery = store.get(row.id)
            except BodyMissing:
                bodies.append(None)
            else:
                assert delivery is not None
                bodies.append(delivery.body)
    return bodies


async def test_home_deleted_while_listening_is_recreated_with_all_history_and_the_same_url(
    procs: Procs, hooktap_home: Path
) -> None:
    port = free_port()  # the embedded relay's URL must survive the restart below
    args = ["listen", "--json", "--port", str(port), "--forward"]
    async with running_handler() as handler:
        proc = procs.start([*args, handler.url], hooktap_home)
        url = str((await asyncio.to_thread(proc.json_line))["webhook_url"])
        channels = (hooktap_home / "channels.json").read_text()
        big = b"B" * (INLINE_BODY_MAX + 10)
        bodies = [b'{"n": 0}', big, b'{"n": 1}']
        for body in bodies:
            assert await _post(url, body) == 200
        _rmtree(hooktap_home)
        for n in range(2, 6):  # straight away: before the listener can have noticed
            bodies.append(f'{{"n": {n}}}'.encode())
            assert await _post(url, bodies[-1]) == 200
        lost = await asyncio.to_thread(proc.wait_json, "home_lost", 10)
        assert lost["recovered"] is True and lost["bodies_lost"] == 1
        assert lost["deliveries"] == 7
        assert f"HOOKTAP_HOME ({hooktap_home}) was deleted" in str(lost["message"])
        assert "1 large body was lost" in str(lost["message"])
        bodies.append(b'{"n": 6}')
        assert await _post(url, bodies[-1]) == 200

        assert stat.S_IMODE(hooktap_home.stat().st_mode) == 0o700
        assert (hooktap_home / "channels.json").read_text() == channels
        relay_db = sqlite3.connect(hooktap_home / "relay" / "relay.db")
        channel = url.rsplit("/c/", 1)[1]
        assert relay_db.execute("SELECT channel FROM channels").fetchall() == [(channel,)]
        relay_db.close()
        # All of them, the big one's row too, though its body file went with the folder.
        assert _stored_bodies(hooktap_home / "history.db") == [
            None if b == big else b for b in bodies
        ]
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait) == 0

        again = procs.start([*args, handler.url], hooktap_home)
        assert (await asyncio.to_thread(again.json_line))["webhook_url"] == url
        bodies.append(b'{"n": 7}')
        assert await _post(url, bodies[-1]) == 200
        assert [s.body for s in handler.seen] == bodies
        with Store(hooktap_home / "history.db") as store:
            assert store.count() == len(bodies)


async def test_home_that_cannot_be_recreated_stops_the_listener_and_loses_nothing(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    _, relay_url = procs.relay(tmp_path / "relay-home")
    args = ["listen", "--json", "--relay", relay_url, "--forward"]
    async with running_handler() as handler:
        proc = procs.start([*args, handler.url], hooktap_home)
        url = str((await asyncio.to_thread(proc.json_line))["webhook_url"])
        bodies = [f'{{"n": {n}}}'.encode() for n in range(3)]
        for body in bodies:
            assert await _post(url, body) == 200
        _rmtree(hooktap_home)
        hooktap_home.write_text("a file where the folder was: mkdir fails, for root too\n")
        for n in range(3, 6):  # handled before the loss is noticed, or kept by the relay
            bodies.append(f'{{"n": {n}}}'.encode())
            assert await _post(url, bodies[-1]) in (200, 202)
        assert await asyncio.to_thread(proc.wait, 10) == 1
        out, err = proc.rest()
        lost = [json.loads(line) for line in out if '"home_lost"' in line]
        assert len(lost) == 1 and lost[0]["recovered"] is False
        saved = Path(str(lost[0]["saved_to"]))
        assert lost[0]["deliveries"] == len(handler.seen) >= 3
        assert err[-1] == f"Error: {lost[0]['message']}"
        assert f"HOOKTAP_HOME ({hooktap_home}) was replaced by a file" in err[-1]
        saved_line = f"Saved your history ({len(handler.seen)} deliveries) and your channel to"
        assert f"{saved_line} {saved}: move that folder to {hooktap_home}" in err[-1]
        assert not any("Traceback" in line for line in err)
        for n in range(6, 8):  # no listener now: the relay keeps them
            bodies.append(f'{{"n": {n}}}'.encode())
            assert await _post(url, bodies[-1]) == 202

        # The saved folder is a whole HOOKTAP_HOME: the same channel, the history so far.
        again = procs.start([*args, handler.url], saved)
        assert (await asyncio.to_thread(again.json_line))["webhook_url"] == url
        await handler.wait_for(len(bodies))
        assert sorted(s.body for s in handler.seen) == sorted(bodies)  # each once, none lost
        again.signal(signal.SIGTERM)
        assert await asyncio.to_thread(again.wait) == 0
        assert sorted(_stored_bodies(saved / "history.db")) == sorted(bodies)  # type: ignore[type-var]


async def test_home_deleted_under_a_listener_whose_history_lives_elsewhere_gets_its_channel_back(
    tmp_path: Path, hooktap_home: Path
) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay_url,
        running_listener(relay_url, handler.url, tmp_path / "history.db") as running,
    ):
        channels = (hooktap_home / "channels.json").read_text()
        _rmtree(hooktap_home)
        for _ in range(50):  # the guard looks once a second
            lost = [e for e in running.events if isinstance(e, HomeLost)]
            if lost:
                break
            await asyncio.sleep(0.1)
        assert len(lost) == 1 and lost[0].recovered and not lost[0].stopping
        assert lost[0].message == (
            f"HOOKTAP_HOME ({hooktap_home}) was deleted while listening; recreated it with "
            "your channel (the same webhook URL)"
        )
        assert (hooktap_home / "channels.json").read_text() == channels
        listening = json.loads((hooktap_home / "listener.json").read_text())
        assert listening["webhook_url"] == running.webhook_url  # `hooktap trigger` finds it
        assert await _post(running.webhook_url, b"{}") == 200
        assert running.store.count() == 1 and running.listener.state == "connected"


async def test_the_guard_waits_for_the_store_on_the_history_thread_not_on_the_event_loop(
    tmp_path: Path, hooktap_home: Path
) -> None:
    """The guard's store calls (refuse writes, count the history) take their turn on the
    listener's history thread: while that thread waits for the store (here on another
    process's write), the event loop, which forwards deliveries, keeps turning. The home is
    replaced by a file, with history kept elsewhere: the guard gives up and says so."""
    hooktap_home.mkdir()
    store = Store(tmp_path / "elsewhere" / "history.db")
    commits = GroupCommit(store)
    record(store, _delivery(0))
    announced: list[HomeLost] = []
    stopped = asyncio.Event()

    async def on_failure() -> None:
        stopped.set()

    guard = HomeGuard(
        store,
        call=commits.call,
        embedded=None,
        credentials=lambda: None,
        announce=announced.append,
        on_failure=on_failure,
        interval=0.05,
    )
    guard.start()
    try:
        with another_writer(store.path, 1.0):
            marking = asyncio.ensure_future(commits.call(store.mark, "d0000", "interrupted"))
            await asyncio.sleep(0)  # on the history thread, waiting for the other writer
            shutil.rmtree(hooktap_home)
            hooktap_home.write_text("a file where the folder was\n")
            _, stall = await longest_stall(asyncio.wait_for(stopped.wait(), 10))
            await marking
    finally:
        await guard.stop()
        commits.close()
        store.close()
    assert stall < 0.4, f"the event loop stalled {stall:.2f} s"
    (lost,) = announced
    assert (lost.recovered, lost.stopping, lost.deliveries) == (False, True, 1)
    assert f"HOOKTAP_HOME ({hooktap_home}) was replaced by a file" in lost.message
    assert guard.failure is not None and str(guard.failure) == lost.message
