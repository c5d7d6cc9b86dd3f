"""Group commit: the listener's history writes of one loop tick share a transaction, and
sharing never changes what is stored or who hears about a failure."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hooktap.listen.forward import Forwarder
from hooktap.listen.group_commit import GroupCommit
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.pipeline import Pipeline
from hooktap.listen.target import parse_target
from hooktap.protocol import Delivery as WireDelivery
from hooktap.protocol import Result
from hooktap.records import Attempt, Delivery
from hooktap.store import Store
from support.history import another_writer, longest_stall, record
from support.servers import running_handler


def delivery(id: str, svix_id: str | None = None, body: bytes = b"{}") -> Delivery:
    return Delivery(
        id=id,
        received_at=time.time(),
        method="POST",
        path="/",
        query="",
        headers=[("Content-Type", "application/json")],
        body=body,
        channel="ch",
        target="http://127.0.0.1:9",
        signature="unsigned",
        signature_reason="",
        svix_id=svix_id,
        state="dispatched",
    )


def attempt(delivery_id: str, status: int = 200) -> Attempt:
    return Attempt(
        delivery_id=delivery_id,
        kind="forward",
        started_at=time.time(),
        target_url="http://127.0.0.1:9/",
        status=status,
        duration_ms=1.0,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "history.db")
    yield s  # type: ignore[misc]
    s.close()


def count_commits(store: Store) -> list[str]:
    """Every COMMIT SQLite runs on the store's connection (its trace hook, not a mock)."""
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    return commits


async def test_writes_of_one_tick_share_one_commit(store: Store) -> None:
    commits = count_commits(store)
    group = GroupCommit(store)
    added = await asyncio.gather(*(group.add(delivery(f"d{i}")) for i in range(20)))
    assert len(commits) == 1
    assert all(a.new for a in added)
    await asyncio.gather(*(group.finish(f"d{i}", attempt(f"d{i}")) for i in range(20)))
    assert len(commits) == 2
    assert {store.get_state(f"d{i}") for i in range(20)} == {"done"}


async def test_separate_ticks_commit_separately(store: Store) -> None:
    """At concurrency 1 nothing waits for a batch to fill: each write commits on the next turn."""
    commits = count_commits(store)
    group = GroupCommit(store)
    for i in range(3):
        assert (await group.add(delivery(f"d{i}"))).new
        assert store.get_state(f"d{i}") == "dispatched"  # durable before add() returns
    assert len(commits) == 3


async def test_duplicates_and_retries_are_reported_per_delivery(store: Store) -> None:
    group = GroupCommit(store)
    first = await group.add(delivery("d1", svix_id="msg_1"))
    again, retry, other = await asyncio.gather(
        group.add(delivery("d1", svix_id="msg_1", body=b"changed")),
        group.add(delivery("d2", svix_id="msg_1")),
        group.add(delivery("d3", svix_id="msg_2")),
    )
    assert (first.new, first.svix_seen) == (True, False)
    assert (again.new, retry.new, other.new) == (False, True, True)
    assert (retry.svix_seen, other.svix_seen) == (True, False)
    stored = store.get("d1")
    assert stored is not None and stored.body == b"{}"  # the re-sent copy changed nothing


async def test_one_failing_write_does_not_fail_its_neighbours(store: Store) -> None:
    group = GroupCommit(store)
    await group.add(delivery("d1"))
    results = await asyncio.gather(
        group.finish("d1", attempt("d1")),
        group.finish("nope", attempt("nope")),
        group.add(delivery("d2")),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], LookupError) and "nope" in str(results[1])
    assert not isinstance(results[2], BaseException) and results[2].new
    assert store.get_state("d1") == "done" and store.get_state("d2") == "dispatched"


async def test_a_big_body_commits_on_a_worker_thread_and_the_next_batch_waits(
    store: Store, tmp_path: Path
) -> None:
    """A megabyte's file and prefix are written off the event loop; what arrives meanwhile is
    committed after it, never beside it on the same connection."""
    commits: list[tuple[str, str]] = []
    store._db.set_trace_callback(
        lambda sql: (
            commits.append((sql, threading.current_thread().name)) if sql == "COMMIT" else None
        )
    )
    group = GroupCommit(store)
    other = Store(tmp_path / "history.db")
    then_saw: list[tuple[str | None, bool]] = []

    def then() -> None:
        then_saw.append(
            (other.get_state("big"), threading.current_thread() is threading.main_thread())
        )

    big = group.add(delivery("big", body=b"x" * 1_000_000), then=then)
    await asyncio.sleep(0)  # the big batch is on the thread now
    small = group.add(delivery("small"))
    assert (await big).new and (await small).new
    assert then_saw == [("dispatched", True)]  # after its commit, back on the event loop
    assert [name.startswith("hooktap-history") for _, name in commits] == [True, False]
    assert store.get("big").body == b"x" * 1_000_000  # type: ignore[union-attr]
    group.close()
    other.close()


def trace(store: Store) -> list[tuple[str, str]]:
    """Every statement SQLite runs on the store's connection, with the thread that ran it."""
    statements: list[tuple[str, str]] = []
    store._db.set_trace_callback(
        lambda sql: statements.append((sql, threading.current_thread().name))
    )
    return statements


async def test_a_store_call_waits_on_the_history_thread_and_batches_wait_their_turn(
    store: Store,
) -> None:
    """A call held up by another process's write (SQLite's busy timeout) waits on the history
    thread: the event loop keeps turning, and a batch asked for meanwhile commits after the
    call instead of waiting for the store on the loop."""
    group = GroupCommit(store)
    assert (await group.add(delivery("d1"))).new
    statements = trace(store)
    with another_writer(store.path, 0.8):
        marking = asyncio.ensure_future(group.call(store.mark, "d1", "interrupted"))
        await asyncio.sleep(0)  # the call is on the thread, waiting for the other writer
        (_, added), stall = await longest_stall(asyncio.gather(marking, group.add(delivery("d2"))))
    assert stall < 0.4, f"the event loop stalled {stall:.2f} s"
    assert added.new and store.get_state("d1") == "interrupted"
    commits = [name for sql, name in statements if sql == "COMMIT"]
    assert [name.startswith("hooktap-history") for name in commits] == [True, False]
    group.close()


async def test_a_copy_answered_from_history_reads_and_marks_it_on_the_history_thread(
    store: Store,
) -> None:
    """A re-sent copy of a delivery the listener took but never finished (it stopped
    mid-forward) is answered from history and marked interrupted, and every store call of
    that answer runs on the history thread, where it cannot stall the event loop."""
    record(store, delivery("d_half"))  # dispatched, no attempt
    statements = trace(store)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        target = parse_target(f"127.0.0.1:{sock.getsockname()[1]}")  # nothing listens
    forwarder = Forwarder(target, timeout=5)
    pipeline = Pipeline(store, forwarder, target, None, lambda _event: None)
    results: list[Result] = []

    async def reply(result: Result) -> None:
        results.append(result)

    frame = WireDelivery(
        id="d_half", received_at=time.time(), method="POST", path="/", query="",
        headers=[("Content-Type", "application/json")], body=b"{}",
    )  # fmt: skip
    await pipeline.handle(reply, frame)
    await forwarder.close()
    pipeline.commits.close()
    answer = ("SELECT state FROM", "a.id = d.forward_attempt", "SET state = 'interrupted'")
    threads = {name for sql, name in statements if any(part in sql for part in answer)}
    assert threads and all(name.startswith("hooktap-history") for name in threads), threads
    assert [(r.status, r.duplicate) for r in results] == [(502, True)]
    assert store.get_state("d_half") == "interrupted"


async def test_a_cancelled_waiter_still_gets_its_write(store: Store) -> None:
    group = GroupCommit(store)
    future = group.add(delivery("d1"))
    waiter = asyncio.ensure_future(asyncio.shield(future))
    waiter.cancel()
    assert (await future).new
    assert store.get_state("d1") == "dispatched"


async def handle_twice(
    target: str, store: Store, frame: WireDelivery, *, relay_keeps_refused: bool = False
) -> list[Result]:
    """A listener handles the same frame twice at once, as after a reconnect; its replies."""
    listener = Listener(
        ListenerConfig(target=parse_target(target), relay_url="http://127.0.0.1:9"), store
    )
    listener.pipeline.relay_keeps_refused = relay_keeps_refused
    results: list[Result] = []

    async def reply(result: Result) -> None:
        results.append(result)

    pipeline = listener.pipeline
    await asyncio.gather(pipeline.handle(reply, frame), pipeline.handle(reply, frame))
    await listener.forwarder.close()
    return results


async def test_a_copy_resent_while_the_first_is_in_flight_is_answered_from_history(
    tmp_path: Path,
) -> None:
    """After a reconnect the relay hands over deliveries it has no result for, even if the
    listener is still forwarding them: the handler must get each one once."""
    async with running_handler() as handler:
        handler.delay, handler.status, handler.reply = 0.3, 201, b"created"
        store = Store(tmp_path / "history.db")
        frame = WireDelivery(
            id="d_resent", received_at=time.time(), method="POST", path="/", query="",
            headers=[("Content-Type", "application/json")], body=b'{"type":"x"}',
        )  # fmt: skip
        results = await handle_twice(handler.url, store, frame)
        assert len(handler.seen) == 1
        first, again = sorted(results, key=lambda r: r.duplicate)
        assert (first.status, first.body, first.duplicate) == (201, b"created", False)
        assert (again.status, again.body, again.duplicate) == (201, b"created", True)
        assert store.get_state("d_resent") == "done"
        store.close()


async def test_then_runs_right_after_the_commit_and_only_for_new_deliveries(
    store: Store, tmp_path: Path
) -> None:
    """The forwarder's write rides in the commit callback: by the time it runs, another
    process can already read the row, and a re-sent id never gets written twice."""
    other = Store(tmp_path / "history.db")  # another connection: sees committed rows only
    group = GroupCommit(store)
    seen_by_then: list[str | None] = []

    def then_for(id: str) -> Callable[[], None]:
        return lambda: seen_by_then.append(other.get_state(id))

    await group.add(delivery("d1"), then=then_for("d1"))
    results = await asyncio.gather(
        group.add(delivery("d1"), then=then_for("d1")),  # already stored: no write
        group.add(delivery("d2"), then=then_for("d2")),
    )
    assert [r.new for r in results] == [False, True]
    assert seen_by_then == ["dispatched", "dispatched"]
    other.close()


async def test_a_copy_resent_while_the_first_cannot_be_stored_is_never_acknowledged(
    tmp_path: Path,
) -> None:
    """If the first copy could not be recorded, it was never forwarded: the copy re-sent
    meanwhile must not be 'answered from history' (that would tell the relay to forget a
    delivery nobody has), but refused like the first. Here `bodies` is a file, so no big
    body can be stored."""
    (tmp_path / "bodies").write_text("not a folder")
    async with running_handler() as handler:
        store = Store(tmp_path / "history.db")
        frame = WireDelivery(
            id="d_big", received_at=time.time(), method="POST", path="/", query="",
            headers=[("Content-Type", "application/octet-stream")], body=b"x" * 100_000,
        )  # fmt: skip
        # The relay keeps refusals, as over protocol 2 or in-process.
        results = await handle_twice(handler.url, store, frame, relay_keeps_refused=True)
        # Both copies handed back as refusals, which the relay keeps; none acknowledged.
        assert [(r.status, r.refused, r.duplicate) for r in results] == [(503, True, False)] * 2
        assert "bodies" in (results[0].error or "")
        assert handler.seen == []
        store.close()
