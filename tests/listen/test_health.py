"""The handler's health check against real sockets on loopback: servers that listen, ports
where nothing does, a server that starts late or stops, and one too busy to accept."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

from hooktap.listen.events import TargetHealth
from hooktap.listen.health import HealthWatch
from hooktap.listen.target import Target, parse_target


class Server:
    """A raw TCP server that records how many bytes each connection sent before closing."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.received.append(await reader.read())  # until the probe closes its end
        self.closed.set()
        writer.close()


@contextlib.asynccontextmanager
async def listening(port: int = 0) -> AsyncIterator[tuple[Server, int]]:
    server = Server()
    tcp = await asyncio.start_server(server.handle, "127.0.0.1", port)
    try:
        yield server, tcp.sockets[0].getsockname()[1]
    finally:
        tcp.close()
        await tcp.wait_closed()


def closed_port() -> int:
    """A port nothing listens on: bound, read, released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Events:
    def __init__(self) -> None:
        self.seen: list[TargetHealth] = []
        self._changed = asyncio.Condition()

    def __call__(self, event: TargetHealth) -> None:
        self.seen.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, count: int, timeout: float = 10) -> list[TargetHealth]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.seen) >= count), timeout)
        return self.seen


@contextlib.asynccontextmanager
async def watching(
    *targets: str, interval: float = 0.05, timeout: float = 1.0
) -> AsyncIterator[tuple[HealthWatch, Events]]:
    events = Events()
    watch = HealthWatch(
        [parse_target(t) for t in targets], events, interval=interval, timeout=timeout
    )
    task = asyncio.create_task(watch.run())
    try:
        yield watch, events
    finally:
        watch.stop()
        await asyncio.wait_for(task, 5)  # stop() ends run() promptly


async def test_a_listening_server_is_up_and_a_closed_port_down_in_the_first_round() -> None:
    down = closed_port()
    async with (
        listening() as (_server, up),
        watching(
            f"127.0.0.1:{up}/hooks", f"127.0.0.1:{down}", f"127.0.0.1:{up}/other", interval=60
        ) as (watch, events),
    ):
        seen = await events.wait_for(2)
        await asyncio.sleep(0.1)  # a third event would be a bug: two host:ports, one round
    assert len(seen) == 2
    by_target = {e.target: e for e in seen}
    assert by_target[f"127.0.0.1:{up}"].state == "up"
    assert by_target[f"127.0.0.1:{up}"].detail == f"127.0.0.1:{up} is accepting connections"
    # Two routes to one server share its probe, and the event names both URLs.
    assert by_target[f"127.0.0.1:{up}"].urls == (
        f"http://127.0.0.1:{up}/hooks",
        f"http://127.0.0.1:{up}/other",
    )
    assert by_target[f"127.0.0.1:{down}"].state == "down"
    assert by_target[f"127.0.0.1:{down}"].detail == (
        f"127.0.0.1:{down} is not accepting connections (connection refused)"
    )
    assert watch.states == {f"127.0.0.1:{up}": "up", f"127.0.0.1:{down}": "down"}


async def test_localhost_names_the_target_as_typed_and_finds_an_ipv4_server() -> None:
    """localhost resolves to ::1 first on many machines; a server on 127.0.0.1 only is
    still up, and a refused ::1 does not turn into a muddled message."""
    async with listening() as (_server, port), watching(f"localhost:{port}") as (_w, events):
        (event,) = await events.wait_for(1)
    assert (event.target, event.state) == (f"localhost:{port}", "up")


async def test_a_server_that_starts_later_goes_from_down_to_up() -> None:
    port = closed_port()
    async with watching(f"127.0.0.1:{port}") as (_watch, events):
        (first,) = await events.wait_for(1)
        assert first.state == "down"
        async with listening(port):
            seen = await events.wait_for(2)
    assert [e.state for e in seen[:2]] == ["down", "up"]
    assert seen[1].detail == f"127.0.0.1:{port} is accepting connections again"


async def test_stopping_a_server_under_watch_is_one_down_event_then_quiet() -> None:
    events = Events()
    async with listening() as (_server, port):
        watch = HealthWatch([parse_target(f"127.0.0.1:{port}")], events, interval=0.05)
        task = asyncio.create_task(watch.run())
        await events.wait_for(1)
    try:
        seen = await events.wait_for(2)
        await asyncio.sleep(0.3)  # several more rounds: no repeat of an unchanged state
    finally:
        watch.stop()
        await asyncio.wait_for(task, 5)
    assert [e.state for e in seen] == ["up", "down"]
    assert seen[1].detail == f"127.0.0.1:{port} is not accepting connections (connection refused)"


async def test_a_probe_sends_no_bytes_and_closes_at_once() -> None:
    async with (
        listening() as (server, port),
        watching(f"127.0.0.1:{port}", interval=60) as (
            _w,
            events,
        ),
    ):
        await events.wait_for(1)
        await asyncio.wait_for(server.closed.wait(), 5)
    assert server.received == [b""]


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A listening socket that never accepts, its queue filled by connections of our own:
    the kernel then drops further SYNs, so a connect hangs, as against a stalled server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break  # the queue is full: this one hung
        else:
            raise AssertionError("the kernel kept accepting into a backlog of 0")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_server_that_does_not_accept_is_down_after_the_timeout() -> None:
    with full_backlog() as port:
        async with watching(f"127.0.0.1:{port}", timeout=0.3) as (_w, events):
            (event,) = await events.wait_for(1)
    assert event.state == "down"
    assert event.detail == f"127.0.0.1:{port} did not answer a connection within 0.3 s"


async def test_a_name_that_does_not_resolve_is_down_with_the_reason() -> None:
    # .invalid never resolves (RFC 6761); no internet is needed to be told so.
    async with watching("http://handler.invalid:8000/hooks") as (_w, events):
        (event,) = await events.wait_for(1)
    assert event.state == "down"
    assert event.detail.startswith(
        "handler.invalid:8000 cannot be reached: the name handler.invalid does not resolve ("
    )


async def test_stop_ends_a_round_that_is_still_waiting() -> None:
    with full_backlog() as port:
        events = Events()
        watch = HealthWatch([parse_target(f"127.0.0.1:{port}")], events, timeout=30)
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.1)
        watch.stop()
        await asyncio.wait_for(task, 2)
    assert events.seen == []


async def test_a_name_the_idna_codec_refuses_is_down_and_the_watch_goes_on() -> None:
    """`api..local` and a 64-character label make getaddrinfo raise UnicodeError, not
    gaierror: each is reported down with the reason, and the other targets stay watched."""
    port = closed_port()
    long_label = "a" * 64 + ".local"
    events = Events()
    targets = [
        Target("http", "api..local", 80, ""),
        Target("http", long_label, 80, ""),
        parse_target(f"127.0.0.1:{port}"),
    ]
    watch = HealthWatch(targets, events, interval=0.05, timeout=1.0)
    task = asyncio.create_task(watch.run())
    try:
        first = await events.wait_for(3)
        by_target = {e.target: e for e in first}
        assert by_target["api..local:80"].state == "down"
        assert "'api..local' is not a valid host name" in by_target["api..local:80"].detail
        assert by_target[f"{long_label}:80"].state == "down"
        assert by_target[f"127.0.0.1:{port}"].detail.endswith("(connection refused)")
        # Later rounds still run: the closed port starts listening and is seen up.
        async with listening(port):
            seen = await events.wait_for(4)
        assert (seen[3].target, seen[3].state) == (f"127.0.0.1:{port}", "up")
        assert not task.done()
    finally:
        watch.stop()
        await asyncio.wait_for(task, 5)
