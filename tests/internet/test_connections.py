"""Connections a relay on the internet must survive: more idle connections than it has file
descriptors, heads trickled a byte at a time (slowloris), silent and idle keep-alive
connections, a TLS handshake that never starts. Real `hooktap relay` processes, raw sockets
on loopback; the figures each test measures are printed (`pytest -s`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

import aiohttp
import trustme

from support.procs import Proc, Procs

FILE_LIMIT = 256  # soft = hard: the relay cannot raise it
HELD = 300  # idle connections opened: more than the relay has descriptors for


def relay_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def relay_with_file_limit(procs: Procs, home: Path, limit: int, *extra: str) -> tuple[Proc, str]:
    """A relay whose process starts with RLIMIT_NOFILE soft = hard = `limit`.

    Procs starts `python -m hooktap`; a sitecustomize module on its PYTHONPATH sets the limit
    before hooktap is imported, as `ulimit -n` would in the operator's shell."""
    site = home.parent / f"nofile-{limit}"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(
        f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
    )
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    proc = procs.start(["relay", "--port", "0", *extra], home, {"PYTHONPATH": path})
    url = proc.wait_stderr("listening on").split("listening on ", 1)[1].split()[0]
    limits = Path(f"/proc/{proc.popen.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == [str(limit), str(limit)], line
    return proc, url


async def new_channel(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/channels", json={}) as resp:
        assert resp.status == 201
        return (await resp.json())["channel"]


async def ask(port: int, raw: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, read to the end of its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(timeout):
            writer.write(raw)
            return await read_answer(reader)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in head[1:] if ": " in h)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(head[0].split()[1]), headers, body


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the relay closes this connection within `within` s (nothing else arrives)."""
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except TimeoutError:
        return False


async def test_more_idle_connections_than_files_leave_healthz_and_senders_answered(
    procs: Procs, tmp_path: Path
) -> None:
    # A long idle timeout: what frees room here must be the connection cap, not the timer.
    proc, url = relay_with_file_limit(procs, tmp_path / "relay", FILE_LIMIT, "--idle-timeout", "60")
    port = relay_port(url)
    channel = await new_channel(url)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(HELD // 50):  # in batches, so the kernel's accept queue never overflows
            opened = await asyncio.gather(
                *(
                    asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                    for _ in range(50)
                ),
                return_exceptions=True,
            )
            held += [conn for conn in opened if isinstance(conn, tuple)]
        assert len(held) == HELD

        healthz = await ask(port, b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        assert healthz[0] == 200 and json.loads(healthz[2])["status"] == "ok"
        webhook = await ask(
            port,
            f"POST /c/{channel}/hook HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n\r\n".encode()
            + b"{}",
        )
        assert webhook[0] == 202, webhook

        closed = await asyncio.gather(*(closed_by_peer(reader, 1.0) for reader, _ in held))
        still_open = closed.count(False)
        print(
            f"{HELD} idle connections at a file limit of {FILE_LIMIT}: {still_open} held, "
            f"{closed.count(True)} closed to make room; /healthz {healthz[0]}, webhook {webhook[0]}"
        )
        # The cap leaves headroom under the limit, and uses what it has.
        assert FILE_LIMIT // 4 <= still_open <= FILE_LIMIT - 64
    finally:
        for _, writer in held:
            writer.close()
    proc.stop()
    err = "\n".join(proc.rest()[1])
    assert "Too many open files" not in err and "Traceback" not in err
    assert "closed the longest-idle connection to make room" in err


async def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_503_json(
    procs: Procs, tmp_path: Path
) -> None:
    _, url = procs.relay(tmp_path / "relay", "--max-connections", "4", "--body-timeout", "30")
    port = relay_port(url)
    channel = await new_channel(url)
    busy: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(4):  # senders whose bodies have not come yet: requests in progress
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            busy.append((reader, writer))
            writer.write(
                f"POST /c/{channel} HTTP/1.1\r\nHost: relay\r\nContent-Length: 4\r\n"
                "Expect: 100-continue\r\n\r\n".encode()
            )
            # The relay's handler has the request once it asks for the body.
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(
                b"HTTP/1.1 100"
            )
        status, headers, body = await ask(port, b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        assert status == 503 and headers["retry-after"] == "1"
        assert "all 4 connections this relay allows are busy" in json.loads(body)["error"]
        # None of the requests in progress was cut off to make room.
        for reader, writer in busy:
            writer.write(b"body")
            assert (await asyncio.wait_for(read_answer(reader), 5))[0] == 202
    finally:
        for _, writer in busy:
            writer.close()


async def trickled(port: int, head: bytes, every: float) -> tuple[float, bytes]:
    """Send `head` a byte every `every` s; how long the connection lived, what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await asyncio.sleep(every)

    sender = asyncio.create_task(trickle())
    try:
        got = await asyncio.wait_for(reader.read(), 15)  # b"" once the relay closes it
        return time.monotonic() - opened, got
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()


async def test_slow_heads_and_silent_connections_are_closed_after_the_idle_timeout(
    procs: Procs, tmp_path: Path
) -> None:
    _, url = procs.relay(tmp_path / "relay", "--idle-timeout", "1")
    port = relay_port(url)
    # 60 bytes at 10 a second: six seconds to finish a head, if it were allowed to.
    head = b"POST /c/abc HTTP/1.1\r\nHost: relay\r\nX-Pad: " + b"a" * 16 + b"\r\n\r\n"
    slow = [trickled(port, head, 0.1) for _ in range(100)]
    silent = [trickled(port, b"", 0) for _ in range(20)]
    lives = asyncio.gather(*slow, *silent)
    await asyncio.sleep(0.5)
    healthz = await ask(port, b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
    results = await lives
    assert healthz[0] == 200  # while 120 connections were stalling
    assert [got for _, got in results] == [b""] * len(results)  # closed, never answered
    longest = max(lived for lived, _ in results)
    print(
        f"{len(slow)} slowloris + {len(silent)} silent connections at --idle-timeout 1: "
        f"closed after {min(lived for lived, _ in results):.2f}-{longest:.2f} s"
    )
    assert all(lived >= 0.9 for lived, _ in results) and longest < 3


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    procs: Procs, tmp_path: Path
) -> None:
    _, url = procs.relay(tmp_path / "relay", "--idle-timeout", "1")
    reader, writer = await asyncio.open_connection("127.0.0.1", relay_port(url))
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"
        for _ in range(3):  # kept alive between requests that come in time
            writer.write(request)
            assert (await asyncio.wait_for(read_answer(reader), 5))[0] == 200
            await asyncio.sleep(0.5)
        answered = time.monotonic() - 0.5
        assert await closed_by_peer(reader, 5)
        idle = time.monotonic() - answered
        print(f"an idle keep-alive connection at --idle-timeout 1 lived {idle:.2f} s")
        assert 0.9 <= idle < 3
    finally:
        writer.close()


async def test_a_tls_handshake_that_never_starts_is_closed_after_the_idle_timeout(
    procs: Procs, tmp_path: Path
) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    _, url = procs.relay(
        tmp_path / "relay", "--tls-cert", str(cert), "--tls-key", str(key), "--idle-timeout", "1"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", relay_port(url))
    opened = time.monotonic()
    try:
        assert await closed_by_peer(reader, 5)
        lived = time.monotonic() - opened
        print(f"a TLS connection that never said hello lived {lived:.2f} s")
        assert lived < 3
    finally:
        writer.close()
