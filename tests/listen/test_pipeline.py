"""One delivery through the listener's Pipeline, by its entry point `handle`, against raw
handlers on loopback and a real SQLite history: the record commits before the handler can
read a byte, a copy already taken is never written again, and a request that is never
written is still recorded with why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from raw_http import OK, Server, raw_server

from hooktap.listen.events import DeliveryReceived, ListenerEvent
from hooktap.listen.forward import Forwarder
from hooktap.listen.pipeline import Pipeline
from hooktap.listen.target import parse_target
from hooktap.protocol import Delivery as WireDelivery
from hooktap.protocol import Result
from hooktap.records import Headers
from hooktap.store import Store


def frame(id: str, headers: Headers | None = None) -> WireDelivery:
    return WireDelivery(
        id=id, received_at=time.time(), method="POST", path="/hook", query="",
        headers=headers or [("Content-Type", "application/json")], body=b'{"a": 1}',
    )  # fmt: skip


@dataclass
class Piped:
    pipeline: Pipeline
    store: Store
    results: list[Result] = field(default_factory=list)
    events: list[ListenerEvent] = field(default_factory=list)

    async def reply(self, result: Result) -> None:
        self.results.append(result)

    async def handle(self, delivery: WireDelivery) -> Result:
        await self.pipeline.handle(self.reply, delivery)
        return self.results[-1]


@asynccontextmanager
async def piped(server: Server, tmp_path: Path) -> AsyncIterator[Piped]:
    store = Store(tmp_path / "history.db")
    target = parse_target(server.target)
    forwarder = Forwarder(target, timeout=5)
    events: list[ListenerEvent] = []
    pipeline = Pipeline(store, forwarder, target, None, events.append)
    try:
        yield Piped(pipeline, store, events=events)
    finally:
        await forwarder.close()
        pipeline.commits.close()
        store.close()


async def test_the_record_is_committed_before_the_handler_reads_a_byte(tmp_path: Path) -> None:
    seen_by_handler: list[str | None] = []
    other = Store(tmp_path / "history.db")  # another connection: sees committed rows only

    async def reply(writer: asyncio.StreamWriter, _request: bytes, _index: int) -> bool:
        seen_by_handler.append(other.get_state("d1"))
        writer.write(OK)
        await writer.drain()
        return True

    async with raw_server(reply) as server, piped(server, tmp_path) as p:
        result = await p.handle(frame("d1"))
        assert p.store.get_state("d1") == "done"
    other.close()
    assert seen_by_handler == ["dispatched"]
    assert (result.status, result.body, result.duplicate) == (200, b"ok", False)
    assert [type(e) for e in p.events] == [DeliveryReceived]  # DeliveryForwarded: a turn later


async def test_a_copy_already_in_history_is_not_written_and_its_socket_stays_clean(
    tmp_path: Path,
) -> None:
    """The relay hands over again a delivery the listener took (a reconnect): it is answered
    from history, and the kept-alive socket its exchange held goes back to the pool unused."""

    async def reply(writer: asyncio.StreamWriter, _request: bytes, index: int) -> bool:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nn%d" % index)
        await writer.drain()
        return True

    async with raw_server(reply) as server, piped(server, tmp_path) as p:
        first = await p.handle(frame("d1"))
        again = await p.handle(frame("d1"))
        other = await p.handle(frame("d2"))
    assert (first.status, first.duplicate) == (201, False)
    assert (again.status, again.body, again.duplicate) == (201, first.body, True)
    assert (first.body, other.body) == (b"n0", b"n1")  # each its own answer, one socket
    assert [r.split(b" ", 2)[1] for r in server.requests] == [b"/hook", b"/hook"]
    assert server.connections == 1


async def test_a_request_never_written_is_recorded_with_why(tmp_path: Path) -> None:
    """A header value that would smuggle a second request: refused before any connection,
    yet recorded and answered, as a delivery the handler could not be given."""

    async def reply(writer: asyncio.StreamWriter, _request: bytes, _index: int) -> bool:
        writer.write(OK)
        await writer.drain()
        return True

    async with raw_server(reply) as server, piped(server, tmp_path) as p:
        result = await p.handle(frame("d1", [("X-A", "1\r\nX-Evil: 1")]))
        stored = p.store.get("d1")
        (attempt,) = p.store.attempts("d1")
    assert server.connections == 0 and server.requests == []
    assert result.status == 502 and not result.duplicate
    assert stored is not None and stored.state == "done"
    assert attempt.status is None and (attempt.error or "").startswith("refused to forward: ")
