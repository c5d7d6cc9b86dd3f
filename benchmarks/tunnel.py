#!/usr/bin/env python
"""Throughput and latency of a webhook straight to a local handler versus through hooktap.

Every process is real and separate, as a user runs them:

    load generator ──POST──▶ handler                                        (direct)
    load generator ──POST──▶ hooktap relay ══ws══▶ hooktap listen ──▶ handler  (relay)
    load generator ──POST──▶ hooktap listen (relay embedded) ──▶ handler       (embedded)

The handler is a minimal aiohttp app in its own process that reads the body and answers 200.
The relay and the listeners are the installed CLI (`python -m hooktap relay|listen`), each with
its own HOOKTAP_HOME in a temporary folder. The load generator is one process: an aiohttp
ClientSession over a TCPConnector(limit=C), C workers pulling from one counter, keep-alive,
bodies and svix signatures built before the clock starts. Each run warms up first (same
session, so connections and caches are hot), then N requests are timed.

Integrity is part of the result: every body is distinct (its sequence number is inside it),
bodies are JSON with spacing, key order and escapes that any JSON round-trip would change, and
the handler checks a SHA-256 sent beside the body on every request up to 64 KiB and on one in
16 above; it also counts requests and bytes. The listener's JSON lines are checked too: one
per delivery, status 200, the right byte count, signature "valid" (bodies are signed with a
test secret the listener is given, as Pivotal's would be). Any mismatch fails the run.

Only 127.0.0.1 is ever contacted. Every process started is stopped on exit, error or Ctrl+C.

    python benchmarks/tunnel.py              # the three scenarios, all three paths
    python benchmarks/tunnel.py --quick      # small N, a smoke run
    python benchmarks/tunnel.py --json       # one JSON document on stdout
    python benchmarks/tunnel.py --profile /tmp/prof   # py-spy the relay and listener
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

LOOPBACK = "127.0.0.1"
SECRET_KEY = b"hooktap-benchmark-endpoint-key!!"
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
HOOK_PATH = "/webhooks/pivotal"
KIB = 1024
MIB = 1024 * 1024
CHECK_ALL_UP_TO = 64 * KIB  # bodies up to this size are all hash-checked; larger, 1 in 16
CHECK_EVERY_LARGE = 16
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 60.0
MODES = ("direct", "relay", "embedded")
CLIENT_LABEL = {
    "aiohttp": "aiohttp.ClientSession + TCPConnector(limit=C), one process",
    "raw": "raw asyncio streams, one keep-alive connection per worker, one process",
}
MODE_LABEL = {"direct": "direct", "relay": "relay+listen", "embedded": "embedded"}


@dataclass(frozen=True)
class Scenario:
    name: str
    size: int
    concurrency: int
    n: int
    warmup: int

    @property
    def label(self) -> str:
        size = f"{self.size // MIB} MB" if self.size >= MIB else f"{self.size // KIB} KB"
        return f"{size} C={self.concurrency}"


def scenarios(n: int, n_large: int, quick: bool) -> list[Scenario]:
    def warm(count: int) -> int:
        return max(10, count // 10) if quick else max(50, count // 5)

    return [
        Scenario("1KB-c1", KIB, 1, n, warm(n)),
        Scenario("1KB-c32", KIB, 32, n, warm(n)),
        Scenario("1MB-c4", MIB, 4, n_large, warm(n_large)),
    ]


# Not run unless asked for by --scenario: a diagnostic, the per-hop cost of one megabyte with
# nothing queued beside it, to tell CPU per request from waiting in the 1 MB C=4 figures.
EXTRA = {"1MB-c1": (MIB, 1)}


# --- the handler: its own process ----------------------------------------------------------


def serve_handler() -> None:
    """A minimal webhook handler: read the body, count it, check a hash if asked, answer 200."""
    stats = {"requests": 0, "bytes": 0, "checked": 0, "mismatched": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        stats["bytes"] += len(body)
        want = request.headers.get("X-Bench-Sha256")
        if want is not None:
            stats["checked"] += 1
            if hashlib.sha256(body).hexdigest() != want:
                stats["mismatched"] += 1
                return web.Response(status=422, text="body changed in transit\n")
        return web.Response(text="ok\n")

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def main() -> None:
        app = web.Application(client_max_size=64 * MIB)
        app.router.add_get("/__bench/stats", get_stats)
        app.router.add_route("*", "/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        print(f"handler listening on http://{LOOPBACK}:{runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# --- request bodies and signed headers -----------------------------------------------------


class Plan:
    """Distinct, signed, Pivotal-shaped JSON bodies of an exact size, built before timing.

    A body is prefix + 10-digit sequence number + suffix, so a 1 MB body costs one
    concatenation at send time; headers (svix signature, check hash) are computed up front.
    """

    def __init__(self, size: int, count: int, tag: str, signed: bool) -> None:
        head = (
            b'{"id" : "evt_' + tag.encode() + b"_"
        )  # spacing on purpose: a JSON round-trip would remove it
        middle = (
            b'", "type":"story.updated", "created_at":"2026-01-01T00:00:00.000Z",\n'
            b' "data":{"title":"caf\\u00e9 \xc3\xbcn\xc3\xafcode \\"quoted\\"","seq":"'
        )
        self.prefix = head
        self.middle = middle
        items = bytearray(b'","items":[')
        budget = size - len(head) - 10 - len(middle) - 10 - len(items) - len(b'],"pad":""}}\n')
        i = 0
        while True:
            item = b'{"id":%d,"name":"item %d","done":false,"score":%d.5}' % (i, i, i % 97)
            extra = len(item) + (1 if i else 0)
            if extra > budget - 16:
                break
            if i:
                items += b","
            items += item
            budget -= extra
            i += 1
        if budget < 0:
            raise ValueError(f"body size {size} is too small for the envelope")
        self.suffix = bytes(items) + b'],"pad":"' + b"x" * budget + b'"}}\n'
        self.size = size
        self.tag = tag
        self.headers: list[dict[str, str]] = []
        check_every = 1 if size <= CHECK_ALL_UP_TO else CHECK_EVERY_LARGE
        timestamp = str(int(time.time()))
        for seq in range(count):
            digits = b"%010d" % seq
            parts = (head, digits, middle, digits, self.suffix)
            headers = {"Content-Type": "application/json", "User-Agent": "Svix-Webhooks/1.0"}
            if signed:
                msg_id = f"msg_{tag}_{seq}"
                mac = hmac.new(SECRET_KEY, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
                for part in parts:
                    mac.update(part)
                headers["svix-id"] = msg_id
                headers["svix-timestamp"] = timestamp
                headers["svix-signature"] = "v1," + base64.b64encode(mac.digest()).decode()
            if seq % check_every == 0:
                digest = hashlib.sha256()
                for part in parts:
                    digest.update(part)
                headers["X-Bench-Sha256"] = digest.hexdigest()
            self.headers.append(headers)
        assert len(self.body(0)) == size, (len(self.body(0)), size)

    def body(self, seq: int) -> bytes:
        digits = b"%010d" % seq
        return b"".join((self.prefix, digits, self.middle, digits, self.suffix))

    @property
    def checked(self) -> int:
        return sum(1 for h in self.headers if "X-Bench-Sha256" in h)


# --- the load generator --------------------------------------------------------------------


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    done: int = 0


class AiohttpClient:
    """The default load generator: one shared ClientSession over TCPConnector(limit=C)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, plan: Plan) -> None:
        self.session = session
        self.url = url
        self.plan = plan

    async def post(self, seq: int) -> tuple[int, bytes]:
        body = self.plan.body(seq)
        async with self.session.post(self.url, data=body, headers=self.plan.headers[seq]) as resp:
            return resp.status, await resp.read()

    def close(self) -> None:
        pass


class RawClient:
    """A lighter load generator (--client raw): one keep-alive HTTP/1.1 connection per
    worker over asyncio streams, the request head joined by hand, and only Content-Length
    responses understood (the handler and the relay both send one)."""

    def __init__(self, url: str, plan: Plan) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or LOOPBACK
        self.port = parts.port or 80
        self.target = parts.path or "/"
        self.plan = plan
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, seq: int) -> tuple[int, bytes]:
        try:
            return await self._post(seq)
        except BaseException:
            self.close()
            raise

    async def _post(self, seq: int) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=1 << 20
            )
        assert self.reader is not None
        body = self.plan.body(seq)
        head = [
            f"POST {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n",
            *(f"{name}: {value}\r\n" for name, value in self.plan.headers[seq].items()),
            "\r\n",
        ]
        self.writer.write("".join(head).encode("latin-1") + body)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length: int | None = None
        closing = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise ValueError("chunked responses are not supported by --client raw")
            elif name == "connection" and "close" in value.lower():
                closing = True
        if length is None:
            raise ValueError("response without Content-Length")
        answer = await self.reader.readexactly(length)
        if closing:
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


Client = AiohttpClient | RawClient
CLIENT_ERRORS = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    ValueError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
)


async def post_all(clients: list[Client], first: int, count: int, deadline: float) -> Load:
    """POST plan bodies [first, first+count), one worker per client; time each one."""
    load = Load()
    next_seq = first
    end = first + count

    async def worker(client: Client) -> None:
        nonlocal next_seq
        while next_seq < end and time.monotonic() < deadline:
            seq = next_seq
            next_seq += 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, answer = await client.post(seq)
            except CLIENT_ERRORS as exc:
                load.errors.append(f"#{seq}: {type(exc).__name__}: {exc}")
                continue
            load.latencies.append(time.perf_counter() - started)
            load.done += 1
            if status != 200 or answer != b"ok\n":
                load.errors.append(f"#{seq}: HTTP {status} {answer[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    load.wall = time.perf_counter() - started
    if next_seq < end:
        load.errors.append(f"deadline reached after {next_seq - first} of {count} requests")
    return load


# --- processes -----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: have the kernel SIGTERM this child if the benchmark itself is killed."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.out_path = workdir / f"{name}.stdout"
        self.err_path = workdir / f"{name}.stderr"
        self.out_offset = 0
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,  # Ctrl+C reaches us; we stop children in order
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, stream: str, needle: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """The first line of stdout/stderr containing `needle`; polls the file, bounded."""
        path = self.out_path if stream == "stdout" else self.err_path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in path.read_text("utf-8", "replace").splitlines():
                if needle in line:
                    return line
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(
            f"{self.name} did not print {needle!r} within {timeout:g} s "
            f"(exit code {self.popen.poll()}):\n{self.tail()}"
        )

    def new_json_lines(self) -> list[dict[str, Any]]:
        with self.out_path.open("rb") as f:
            f.seek(self.out_offset)
            data = f.read()
        complete = data.rfind(b"\n") + 1
        self.out_offset += complete
        return [json.loads(line) for line in data[:complete].splitlines() if line.strip()]

    def tail(self, lines: int = 20) -> str:
        text = []
        for path in (self.out_path, self.err_path):
            with contextlib.suppress(OSError):
                got = path.read_text("utf-8", "replace").splitlines()[-lines:]
                text.append(f"--- {path.name}\n" + "\n".join(got))
        return "\n".join(text)

    def cpu_seconds(self) -> float | None:
        """user+system CPU time of the process so far (Linux /proc), or None."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, threshold: float = 0.15) -> float | None:
    """Wait (at most max_wait s) until the machine's busy CPU over 0.5 s, in cores, drops
    below `threshold`: the benchmark's own processes are idle between runs, so what is left
    is someone else's. Returns the last reading."""
    deadline = time.monotonic() + max_wait
    reading = None
    while True:
        before = machine_busy_seconds()
        time.sleep(0.5)
        after = machine_busy_seconds()
        if before is None or after is None:
            return None
        reading = (after - before) / 0.5
        if reading < threshold or time.monotonic() >= deadline:
            return reading


def hooktap_command() -> list[str]:
    script = Path(sys.executable).with_name("hooktap")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hooktap"]


def child_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HOOKTAP_RELAY", "PIVOTAL_WEBHOOK_SECRET", "HOOKTAP_HOME")
    }
    env.update(HOOKTAP_HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def _url_after(line: str, marker: str) -> str:
    url = line.split(marker, 1)[1].split()[0]
    require_loopback(url)
    return url


def require_loopback(url: str) -> None:
    if urlsplit(url).hostname != LOOPBACK:
        raise RuntimeError(f"refusing to send benchmark traffic to {url}: not {LOOPBACK}")


class Fleet:
    """Every process the benchmark starts, stopped (in reverse order) whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []

    def start(self, name: str, args: list[str], home: Path | None = None) -> Child:
        home = home or self.workdir / f"{name}-home"
        home.mkdir(parents=True, exist_ok=True)
        child = Child(name, args, self.workdir, child_env(home))
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()


@dataclass
class Route:
    """One way to reach the handler: the URL to post to and the processes that carry it."""

    mode: str
    url: str
    procs: dict[str, Child]
    listener: Child | None = None


def start_paths(
    fleet: Fleet, modes: list[str], signed: bool, hooktap: list[str]
) -> tuple[dict[str, Route], str]:
    handler = fleet.start("handler", [sys.executable, str(Path(__file__).resolve()), "--handler"])
    handler_url = _url_after(handler.wait_for("stdout", "listening on"), "listening on ")
    secret = ["--secret", SECRET] if signed else []
    paths: dict[str, Route] = {}
    if "direct" in modes:
        paths["direct"] = Route("direct", handler_url + HOOK_PATH, {"handler": handler})
    if "relay" in modes:
        relay = fleet.start("relay", [*hooktap, "relay", "--port", "0"])
        relay_url = _url_after(relay.wait_for("stderr", "listening on"), "listening on ")
        listen = fleet.start(
            "listen",
            [
                *hooktap,
                "listen",
                "--forward",
                handler_url,
                "--relay",
                relay_url,
                "--json",
                "--no-tui",
                *secret,
            ],
        )
        paths["relay"] = Route(
            "relay", "", {"relay": relay, "listen": listen, "handler": handler}, listen
        )
    if "embedded" in modes:
        embedded = fleet.start(
            "embedded",
            [
                *hooktap,
                "listen",
                "--forward",
                handler_url,
                "--port",
                "0",
                "--json",
                "--no-tui",
                *secret,
            ],
        )
        paths["embedded"] = Route(
            "embedded", "", {"listen+relay": embedded, "handler": handler}, embedded
        )
    for path in paths.values():
        if path.listener is not None:
            ready = json.loads(path.listener.wait_for("stdout", '"event": "ready"'))
            require_loopback(ready["webhook_url"])
            path.url = ready["webhook_url"] + HOOK_PATH
            path.listener.new_json_lines()  # skip the ready line and anything before it
    return paths, handler_url


# --- one measured run ----------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    label: str
    mode: str
    size: int
    concurrency: int
    n: int
    completed: int
    wall_s: float
    rps: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu_ms_per_req: dict[str, float]
    other_cpu_cores: float | None
    integrity: dict[str, Any]
    errors: list[str]
    ratio: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    runs_rps: list[float] = field(default_factory=list)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _handler_stats(session: aiohttp.ClientSession, handler_url: str) -> dict[str, int]:
    async with session.get(handler_url + "/__bench/stats") as resp:
        return await resp.json()


async def measure(
    path: Route,
    scenario: Scenario,
    handler_url: str,
    signed: bool,
    max_seconds: float,
    profiler: Profiler | None,
    run_tag: str,
    client: str,
) -> Result:
    require_loopback(path.url)
    total = scenario.warmup + scenario.n
    plan = Plan(scenario.size, total, run_tag, signed)
    connector = aiohttp.TCPConnector(limit=scenario.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession(timeout=timeout) as control,
    ):
        clients: list[Client] = [
            AiohttpClient(session, path.url, plan)
            if client == "aiohttp"
            else RawClient(path.url, plan)
            for _ in range(scenario.concurrency)
        ]
        before = await _handler_stats(control, handler_url)
        deadline = time.monotonic() + max_seconds
        warm = await post_all(clients, 0, scenario.warmup, deadline)
        cpu_before = {name: child.cpu_seconds() for name, child in path.procs.items()}
        own_before = time.process_time()
        busy_before = machine_busy_seconds()
        if profiler is not None:
            profiler.start(scenario, path)
        try:
            load = await post_all(clients, scenario.warmup, scenario.n, deadline)
        finally:
            if profiler is not None:
                profiler.stop()
            for c in clients:
                c.close()
        own_cpu = time.process_time() - own_before
        cpu_after = {name: child.cpu_seconds() for name, child in path.procs.items()}
        busy_after = machine_busy_seconds()
        after = await _handler_stats(control, handler_url)

    done = max(1, load.done)
    cpu = {"loadgen": own_cpu * 1000 / done}
    for name, start in cpu_before.items():
        end = cpu_after[name]
        if start is not None and end is not None:
            cpu[name] = (end - start) * 1000 / done
    other_cores = None
    if busy_before is not None and busy_after is not None and load.wall:
        ours = own_cpu + sum(
            cpu_after[k] - v  # type: ignore[operator]
            for k, v in cpu_before.items()
            if v is not None and cpu_after[k] is not None
        )
        # Everything busy that is not one of our processes: other work on the machine, plus
        # interrupt time of our own loopback traffic that the kernel charges to no process.
        other_cores = max(0.0, (busy_after - busy_before - ours) / load.wall)
    errors = warm.errors + load.errors
    sent = warm.done + load.done
    got = {k: after[k] - before[k] for k in after}
    integrity: dict[str, Any] = {
        "handler_requests": got["requests"],
        "handler_bytes": got["bytes"],
        "expected_bytes": sent * scenario.size,
        "hash_checked": got["checked"],
        "hash_mismatched": got["mismatched"],
    }
    if got["requests"] != sent or got["bytes"] != sent * scenario.size:
        errors.append(
            f"handler saw {got['requests']} requests / {got['bytes']} bytes, expected "
            f"{sent} / {sent * scenario.size}"
        )
    if got["mismatched"]:
        errors.append(f"{got['mismatched']} bodies arrived changed (SHA-256 mismatch)")
    if path.listener is not None:
        errors.extend(_check_listener_lines(path.listener, sent, scenario.size, signed, integrity))
    rps = load.done / load.wall if load.wall else 0.0
    return Result(
        scenario=scenario.name,
        label=scenario.label,
        mode=path.mode,
        size=scenario.size,
        concurrency=scenario.concurrency,
        n=scenario.n,
        completed=load.done,
        wall_s=load.wall,
        rps=rps,
        mb_per_s=rps * scenario.size / MIB,
        p50_ms=percentile(load.latencies, 50) * 1000,
        p99_ms=percentile(load.latencies, 99) * 1000,
        mean_ms=sum(load.latencies) / done * 1000,
        cpu_ms_per_req=cpu,
        other_cpu_cores=round(other_cores, 3) if other_cores is not None else None,
        integrity=integrity,
        errors=errors[:20],
    )


def _check_listener_lines(
    listener: Child, sent: int, size: int, signed: bool, integrity: dict[str, Any]
) -> list[str]:
    """The listener's own account: one delivery line per request, 200, right size, valid."""
    lines = [obj for obj in listener.new_json_lines() if obj.get("event") == "delivery"]
    want_sig = "valid" if signed else "unsigned"
    bad = [
        obj
        for obj in lines
        if obj.get("status") != 200 or obj.get("bytes") != size or obj.get("signature") != want_sig
    ]
    integrity["listener_deliveries"] = len(lines)
    integrity["listener_bad"] = len(bad)
    errors = []
    if len(lines) != sent:
        errors.append(f"listener logged {len(lines)} deliveries, expected {sent}")
    for obj in bad[:3]:
        errors.append(
            f"listener line: status={obj.get('status')} bytes={obj.get('bytes')} "
            f"signature={obj.get('signature')} error={obj.get('error')}"
        )
    return errors


# --- optional profiling --------------------------------------------------------------------


class Profiler:
    """py-spy record on the hooktap processes of a run, for the measured phase only."""

    def __init__(self, outdir: Path, rate: int) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise SystemExit("--profile needs py-spy: python -m pip install py-spy")
        self.exe = exe
        self.outdir = outdir
        self.rate = rate
        self.running: list[subprocess.Popen[bytes]] = []
        outdir.mkdir(parents=True, exist_ok=True)

    def start(self, scenario: Scenario, path: Route) -> None:
        for name, child in path.procs.items():
            if name == "handler" or path.mode == "direct":
                continue
            out = self.outdir / f"{scenario.name}-{path.mode}-{name.replace('+', '-')}.txt"
            self.running.append(
                subprocess.Popen(
                    [
                        self.exe,
                        "record",
                        "--pid",
                        str(child.pid),
                        "--rate",
                        str(self.rate),
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        time.sleep(0.5)  # let py-spy attach before the clock starts

    def stop(self) -> None:
        for proc in self.running:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for proc in self.running:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.running.clear()


# --- report --------------------------------------------------------------------------------


TARGETS = (
    ("1KB-c32", "ratio", 0.4, "throughput at 1 KB, C=32 ≥ 0.4x direct"),
    ("1MB-c4", "ratio", 0.4, "throughput at 1 MB, C=4 ≥ 0.4x direct"),
    ("1KB-c1", "added_p50_ms", 1.0, "added p50 latency at 1 KB, C=1 < 1 ms"),
)


def judge(results: list[Result]) -> list[dict[str, Any]]:
    verdicts = []
    for scenario, metric, bound, text in TARGETS:
        for r in results:
            if r.scenario != scenario or r.mode == "direct":
                continue
            value = getattr(r, metric)
            if value is None:
                continue
            ok = value >= bound if metric == "ratio" else value < bound
            verdicts.append({"target": text, "mode": r.mode, "value": round(value, 3), "met": ok})
    return verdicts


def _cpu_cell(r: Result) -> str:
    order = ("loadgen", "relay", "listen", "listen+relay", "handler")
    return " ".join(
        f"{name}={r.cpu_ms_per_req[name]:.2f}" for name in order if name in r.cpu_ms_per_req
    )


def table(results: list[Result], header: str, verdicts: list[dict[str, Any]]) -> str:
    lines = [header, ""]
    cols = (
        f"{'scenario':<11} {'path':<13} {'req/s':>8} {'MB/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'ratio':>6} {'+p50 ms':>8} {'+p99 ms':>8} {'other':>5}  CPU ms/req by process"
    )
    lines += [cols, "-" * len(cols)]
    last = None
    for r in results:
        label = r.label if r.scenario != last else ""
        last = r.scenario
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        added = f"{r.added_p50_ms:+.2f}" if r.added_p50_ms is not None else ""
        added99 = f"{r.added_p99_ms:+.2f}" if r.added_p99_ms is not None else ""
        flag = "" if not r.errors else "  !! " + r.errors[0]
        other = f"{r.other_cpu_cores:.2f}" if r.other_cpu_cores is not None else "?"
        lines.append(
            f"{label:<11} {MODE_LABEL[r.mode]:<13} {r.rps:>8.0f} {r.mb_per_s:>7.1f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {ratio:>6} {added:>8} {added99:>8} {other:>5}  "
            f"{_cpu_cell(r)}{flag}"
        )
    lines.append("")
    checked = sum(r.integrity["hash_checked"] for r in results)
    bad = sum(len(r.errors) for r in results)
    lines.append(
        f"integrity: {checked} bodies SHA-256-checked by the handler; request and byte counts "
        f"and the listener's JSON lines compared: {'no errors' if not bad else f'{bad} ERRORS'}"
    )
    lines.append(
        "other: CPU cores busy outside the benchmark's processes during the run (other work on "
        "the machine, and interrupt time); CPU ms/req: user+system CPU per timed request"
    )
    if any(len(r.runs_rps) > 1 for r in results):
        lines.append("req/s of each run (the median run is shown above):")
        for r in results:
            runs = ", ".join(f"{x:.0f}" for x in r.runs_rps)
            lines.append(f"  {r.label:<11} {MODE_LABEL[r.mode]:<13} {runs}")
    if verdicts:
        lines.append("targets:")
        for v in verdicts:
            mark = "met " if v["met"] else "MISS"
            lines.append(f"  [{mark}] {v['target']:<40} {MODE_LABEL[v['mode']]:<13} {v['value']}")
    return "\n".join(lines)


def machine_info(client: str) -> dict[str, Any]:
    load1, load5, _ = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
        "client": client,
        "loadavg_1m_at_start": round(load1, 2),
        "loadavg_5m_at_start": round(load5, 2),
    }


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="hooktap throughput and latency: direct vs through relay+listener.",
        epilog="Example: python benchmarks/tunnel.py --quick",
    )
    p.add_argument("--n", type=int, default=3000, help="timed requests per 1 KB run (3000)")
    p.add_argument("--n-large", type=int, default=300, help="timed requests per 1 MB run (300)")
    p.add_argument("--quick", action="store_true", help="smoke run: --n 300 --n-large 30")
    p.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is kept")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--unsigned", action="store_true", help="no svix headers, no --secret")
    p.add_argument(
        "--client",
        choices=["aiohttp", "raw"],
        default="aiohttp",
        help="load generator: aiohttp ClientSession (default) or raw asyncio streams (lighter)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=["1KB-c1", "1KB-c32", "1MB-c4", *EXTRA],
        help="only these scenarios (repeatable); 1MB-c1 runs only when named",
    )
    p.add_argument(
        "--mode",
        action="append",
        choices=list(MODES),
        help="only these paths (repeatable; ratios need direct)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=15.0,
        metavar="S",
        help="wait up to S s before each run for other CPU use to drop below 0.15 core (15)",
    )
    p.add_argument("--max-seconds", type=float, default=180.0, help="cap per run (180)")
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy raw stacks into DIR")
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples/s (200)")
    p.add_argument(
        "--hooktap",
        metavar="CMD",
        help="command that runs hooktap, e.g. 'python -m hooktap' from another checkout "
        "(default: the hooktap script beside this Python)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs, stores)")
    p.add_argument("--handler", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.n_large = 300, 30
    if args.n < 1 or args.n_large < 1 or not 1 <= args.repeat <= 20:
        p.error("--n and --n-large must be ≥ 1, --repeat between 1 and 20")
    return args


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    signed = not args.unsigned
    modes = [m for m in MODES if args.mode is None or m in args.mode]
    chosen = [
        s
        for s in scenarios(args.n, args.n_large, args.quick)
        if args.scenario is None or s.name in args.scenario
    ]
    for name, (size, concurrency) in EXTRA.items():
        if args.scenario and name in args.scenario:
            count = args.n_large // 10 if args.quick else args.n_large
            chosen.append(Scenario(name, size, concurrency, count, max(10, count // 5)))
    info = machine_info(CLIENT_LABEL[args.client])
    workdir = Path(tempfile.mkdtemp(prefix="hooktap-bench-"))
    fleet = Fleet(workdir)
    profiler = Profiler(args.profile, args.profile_rate) if args.profile else None
    results: list[Result] = []
    try:
        say(f"starting handler, relay and listeners (logs in {workdir}) ...")
        hooktap = shlex.split(args.hooktap) if args.hooktap else hooktap_command()
        paths, handler_url = start_paths(fleet, modes, signed, hooktap)
        for scenario in chosen:
            runs: dict[str, list[Result]] = {mode: [] for mode in modes}
            for rep in range(args.repeat):  # modes interleaved, so drift hits all alike
                for mode in modes:
                    say(
                        f"{scenario.label:<10} {MODE_LABEL[mode]:<13} run {rep + 1}: "
                        f"{scenario.warmup} warm-up + {scenario.n} timed ..."
                    )
                    if args.settle:
                        wait_quiet(args.settle)
                    tag = f"{scenario.name}{mode}{rep}{os.getpid()}".replace("-", "")
                    runs[mode].append(
                        asyncio.run(
                            measure(
                                paths[mode],
                                scenario,
                                handler_url,
                                signed,
                                args.max_seconds,
                                profiler if mode != "direct" else None,
                                tag,
                                args.client,
                            )
                        )
                    )
            for mode in modes:
                ordered = sorted(runs[mode], key=lambda r: r.rps)
                median = ordered[len(ordered) // 2]
                median.runs_rps = [round(r.rps, 1) for r in runs[mode]]
                median.errors = [e for r in runs[mode] for e in r.errors][:20]
                results.append(median)
    except KeyboardInterrupt:
        say("interrupted; stopping every process started")
        return 130
    finally:
        fleet.stop_all()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    by_cell = {(r.scenario, r.mode): r for r in results}
    for r in results:
        base = by_cell.get((r.scenario, "direct"))
        if base is not None and r.mode != "direct" and base.rps:
            r.ratio = r.rps / base.rps
            r.added_p50_ms = r.p50_ms - base.p50_ms
            r.added_p99_ms = r.p99_ms - base.p99_ms
    info["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else 0.0
    verdicts = judge(results)
    failed = any(r.errors for r in results)
    if args.json:
        doc = {
            "machine": info,
            "signed": signed,
            "results": [asdict(r) for r in results],
            "targets": verdicts,
            "ok": not failed,
        }
        print(json.dumps(doc, indent=2))
    else:
        header = (
            f"hooktap tunnel benchmark: {info['cpus']} CPUs, Python {info['python']}, "
            f"load generator {info['client']} (aiohttp {info['aiohttp']}); "
            f"bodies {'svix-signed, listener verifies' if signed else 'unsigned'}; "
            f"load avg {info['loadavg_1m_at_start']} at start, {info['loadavg_1m_at_end']} at end"
        )
        print(table(results, header, verdicts))
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.handler:
        serve_handler()
        return 0

    interrupt_on_signals()
    return run(args)


def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so every process a benchmark started is
    stopped on the way out; SIGINT too when started in the background with it ignored
    (non-interactive shells do that)."""

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
