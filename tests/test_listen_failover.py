"""Several --relay URLs: instances of one relay. Real `hooktap relay` processes (no NATS: each
instance has its own data, so the listener re-claims its channel by token where it moves) and
a real `hooktap listen`; the instance it is connected to is SIGKILLed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from hooktap.cli import main
from hooktap.listen import state
from support.procs import Proc, Procs, free_port
from support.servers import running_handler


def _listen(procs: Procs, home: Path, relays: str, target: str) -> Proc:
    return procs.start(["listen", "--forward", target, "--json", "--relay", relays], home)


def _channel(webhook_url: object) -> str:
    return str(webhook_url).rsplit("/c/", 1)[1]


def _connected_to(proc: Proc, relay: str, timeout: float) -> dict[str, object]:
    """The first "connected" line naming `relay`; any other connected line is a failure."""
    deadline = time.monotonic() + timeout
    while True:
        line = proc.wait_json("connection", max(0.1, deadline - time.monotonic()))
        if line["state"] == "connected":
            assert line["relay"] == relay, line
            return line


async def _post(url: str, bodies: list[bytes]) -> list[int]:
    async with aiohttp.ClientSession() as http:
        statuses = []
        for body in bodies:
            async with http.post(url, data=body) as resp:
                statuses.append(resp.status)
        return statuses


async def test_sigkill_of_the_relay_in_use_moves_the_listener_to_the_next_with_its_channel(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    first, url_a = procs.relay(tmp_path / "relay-a")
    _, url_b = procs.relay(tmp_path / "relay-b")
    async with running_handler() as handler:
        proc = _listen(procs, hooktap_home, f"{url_a},{url_b}", handler.url)
        ready = await asyncio.to_thread(proc.wait_json, "ready")
        assert ready["relay"] == url_a and str(ready["webhook_url"]).startswith(url_a)
        channel = _channel(ready["webhook_url"])
        await asyncio.to_thread(_connected_to, proc, url_a, 5)  # the line after "ready"
        assert await _post(f"{url_a}/c/{channel}", [b"before"]) == [200]

        first.popen.kill()
        killed_at = time.monotonic()
        moved = await asyncio.to_thread(_connected_to, proc, url_b, 15)
        assert time.monotonic() - killed_at < 6, "the listener took too long to move"
        assert moved["detail"] == f"{url_b}/c/{channel}"  # the same channel on the survivor

        bodies = [f'{{"n": {i}}}'.encode() for i in range(20)]
        assert await _post(f"{url_b}/c/{channel}", bodies) == [200] * 20
        counts = collections.Counter(seen.body for seen in handler.seen)
        assert counts == collections.Counter([b"before", *bodies])  # each once, none lost
        # `hooktap trigger` finds the listener where it is now, named by either URL.
        assert state.webhook_url_for([url_a, url_b]) == f"{url_b}/c/{channel}"
        proc.stop()

    # One channel for the group, kept under each URL: either one alone finds it next time.
    kept = json.loads((hooktap_home / "channels.json").read_text())
    assert kept[url_a]["channel"] == kept[url_b]["channel"] == channel
    assert kept[url_a]["token"] == kept[url_b]["token"]
    assert kept[url_b]["url"] == f"{url_b}/c/{channel}"
    assert state.webhook_url_for([url_b]) == f"{url_b}/c/{channel}"  # with no listener


async def test_a_dead_url_is_skipped_at_start_for_a_new_and_a_kept_channel(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    _, live = procs.relay(tmp_path / "relay")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with running_handler() as handler:
        # A channel kept by an older run for the live URL alone (the file as it always was).
        alone = _listen(procs, hooktap_home, live, handler.url)
        channel = _channel((await asyncio.to_thread(alone.wait_json, "ready"))["webhook_url"])
        alone.stop()
        # ...found through the second URL of the list, used after the first one refuses.
        proc = _listen(procs, hooktap_home, f"{dead},{live}", handler.url)
        ready = await asyncio.to_thread(proc.wait_json, "ready")
        assert ready["relay"] == live and _channel(ready["webhook_url"]) == channel
        assert await _post(f"{live}/c/{channel}", [b"kept"]) == [200]
        proc.stop()
        said = "\n".join(proc.rest()[1])
        assert f"disconnected from {dead}: relay not reachable" in said, said
        assert f"trying the next relay: {live}\n" in said, said
        assert f"connected to the relay at {live} ({live}/c/{channel})" in said, said
        # No channel kept at all: the dead instance cannot make one, the live one does.
        (hooktap_home / "channels.json").unlink()
        fresh = _listen(procs, hooktap_home, f"{dead},{live}", handler.url)
        ready = await asyncio.to_thread(fresh.wait_json, "ready")
        assert ready["relay"] == live
        assert await _post(str(ready["webhook_url"]), [b"fresh"]) == [200]
        assert [seen.body for seen in handler.seen] == [b"kept", b"fresh"]


def test_bad_relay_lists_exit_2_with_the_reason(hooktap_home: Path) -> None:
    cases = [
        (["--relay", "http://a.test,,http://b.test"], {}, "empty item at position 2"),
        (["--relay", ",http://a.test"], {}, "empty item at position 1"),
        (["--relay", "http://a.test,ws://b.test"], {}, "must be an http(s) URL, got 'ws://b.test'"),
        ([], {"HOOKTAP_RELAY": "http://a.test,"}, "empty item at position 2"),
        ([], {"HOOKTAP_RELAY": "http://a.test,b.test"}, "must be an http(s) URL, got 'b.test'"),
    ]
    for args, env, words in cases:  # in process: the same click command, without a start-up
        result = CliRunner().invoke(
            main, ["listen", "--forward", "8000", "--no-tui", *args], env=env
        )
        assert result.exit_code == 2, (args, env, result.output)
        assert words in result.stderr and result.exception is not None, result.output
        assert isinstance(result.exception, SystemExit), result.exc_info


async def test_an_instance_that_refuses_is_passed_over_until_one_takes_the_listener(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    """B wants a key to make channels and this listener has none: B refusing must not end
    the listener while A may come back (with one relay, that refusal ends it at once)."""
    port_a = free_port()
    relay_a = ["relay", "--port", str(port_a)]
    first = procs.start(relay_a, tmp_path / "relay-a")
    first.wait_stderr("listening on")
    url_a = f"http://127.0.0.1:{port_a}"
    _, url_b = procs.relay(tmp_path / "relay-b", "--require-key", secrets.token_urlsafe(32))
    async with running_handler() as handler:
        proc = _listen(procs, hooktap_home, f"{url_a},{url_b}", handler.url)
        ready = await asyncio.to_thread(proc.wait_json, "ready")
        channel = _channel(ready["webhook_url"])
        await asyncio.to_thread(_connected_to, proc, url_a, 5)

        first.popen.kill()
        first.popen.wait(5)
        while True:  # B answers the re-claim 401: a refusal, the listener moves on
            line = await asyncio.to_thread(proc.wait_json, "connection")
            if line["state"] == "disconnected" and line["relay"] == url_b:
                assert "refused" in str(line["detail"]), line
                break
        assert proc.popen.poll() is None

        procs.start(relay_a, tmp_path / "relay-a").wait_stderr("listening on")
        moved = await asyncio.to_thread(_connected_to, proc, url_a, 20)
        assert moved["detail"] == f"{url_a}/c/{channel}"
        assert await _post(f"{url_a}/c/{channel}", [b"back"]) == [200]
        assert [seen.body for seen in handler.seen] == [b"back"]


@contextlib.asynccontextmanager
async def _balancer(backends: list[str]) -> AsyncIterator[str]:
    """A TCP load balancer in front of relay instances: each connection goes to the first
    backend that accepts it, as a health-checking balancer would send it to a live one."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for backend in backends:
            host, port = backend.removeprefix("http://").split(":")
            with contextlib.suppress(OSError):
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
                return
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def test_one_url_behind_a_load_balancer_keeps_the_channel_when_an_instance_dies(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    ports = [free_port(), free_port()]
    backends = [f"http://127.0.0.1:{port}" for port in ports]
    async with _balancer(backends) as public, running_handler() as handler:
        relays = []
        for name, port in zip("ab", ports, strict=True):
            relay = procs.start(
                ["relay", "--port", str(port), "--public-url", public], tmp_path / name
            )
            relay.wait_stderr("listening on")
            relays.append(relay)
        proc = _listen(procs, hooktap_home, public, handler.url)
        ready = await asyncio.to_thread(proc.wait_json, "ready")
        assert ready["relay"] == public and str(ready["webhook_url"]).startswith(public)
        await asyncio.to_thread(_connected_to, proc, public, 5)
        assert await _post(str(ready["webhook_url"]), [b"on a"]) == [200]

        relays[0].popen.kill()
        moved = await asyncio.to_thread(_connected_to, proc, public, 15)
        assert moved["detail"] == ready["webhook_url"]  # the same URL, served by b now
        assert await _post(str(ready["webhook_url"]), [b"on b"]) == [200]
        assert [seen.body for seen in handler.seen] == [b"on a", b"on b"]
        proc.stop()  # its connection through the balancer ends before the balancer does


async def test_a_lost_home_gets_the_channel_back_under_every_url(
    procs: Procs, tmp_path: Path, hooktap_home: Path
) -> None:
    _, url_a = procs.relay(tmp_path / "relay-a")
    _, url_b = procs.relay(tmp_path / "relay-b")
    proc = _listen(procs, hooktap_home, f"{url_a},{url_b}", "localhost:9")
    channel = _channel((await asyncio.to_thread(proc.wait_json, "ready"))["webhook_url"])
    while hooktap_home.exists():  # again if a checkpoint made a file meanwhile, as rm -rf
        shutil.rmtree(hooktap_home, ignore_errors=True)
    lost = await asyncio.to_thread(proc.wait_json, "home_lost", 10)
    assert lost["recovered"], lost
    kept = json.loads((hooktap_home / "channels.json").read_text())
    assert {url: kept[url]["channel"] for url in (url_a, url_b)} == {url_a: channel, url_b: channel}
