#!/usr/bin/env python
"""What one sender on the internet can do to a `hooktap relay`, measured: one figure line per
limit of issue 13 (idle connections, slowloris, disk, memory, rates, wrong tokens, fuzz).

Each scenario starts its own relay, the installed CLI (`hooktap relay --port 0`), under the
open-file limit of a default Linux session (1024, or --nofile), so that one scenario's limits
never colour another's. Nothing is asserted: the script prints what happened (resets and 202s
as readily as 429s and 507s), so it runs against a relay without limits as well as with them.

Only 127.0.0.1 is contacted. Every process started is stopped on exit, error or Ctrl+C.

    python benchmarks/abuse.py                  # every scenario, about 2 minutes
    python benchmarks/abuse.py --quick          # smaller counts, under a minute
    python benchmarks/abuse.py --only idle --only rate
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from tunnel import (  # noqa: E402
    Child,
    Fleet,
    hooktap_command,
    interrupt_on_signals,
    require_loopback,
    say,
)

from support.http_fuzz import (  # noqa: E402
    Connection,
    Exchange,
    Generator,
    Response,
    exchange,
    raw_handler,
    request,
)

MIB = 1024 * 1024
# Runs the relay under a lowered open-file limit: set before exec, as a login session's
# limit is, because the relay sizes its connection cap from the limit it starts with.
_WITH_NOFILE = """
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = int(sys.argv[1])
if hard != resource.RLIM_INFINITY:
    want = min(want, hard)
resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
os.execvp(sys.argv[2], sys.argv[2:])
"""


@dataclass
class Relay:
    child: Child
    host: str
    port: int
    data_dir: Path

    def rss(self) -> int:
        try:
            return psutil.Process(self.child.pid).memory_info().rss
        except psutil.NoSuchProcess:
            return 0

    def tracebacks(self) -> int:
        return self.child.err_path.read_text("utf-8", "replace").count("Traceback")


class Bench:
    """The processes, the options, and the helpers every scenario uses."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.fleet = Fleet(workdir)
        self.hooktap = shlex.split(args.hooktap) if args.hooktap else hooktap_command()

    def relay(self, name: str, *extra: str) -> Relay:
        data = self.workdir / f"{name}-data"
        wrapped = [sys.executable, "-c", _WITH_NOFILE, str(self.args.nofile), *self.hooktap]
        child = self.fleet.start(
            name, [*wrapped, "relay", "--port", "0", "--data-dir", str(data), *extra]
        )
        url = child.wait_for("stderr", "listening on").split("listening on ", 1)[1].split()[0]
        require_loopback(url)
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        return Relay(child, host, int(port), data)


def _post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: relay\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def _channel(relay: Relay) -> str:
    answer = await request(relay.host, relay.port, _post("/api/channels", b"{}"))
    if not isinstance(answer, Response) or answer.status not in (200, 201):
        raise RuntimeError(f"could not make a channel: {_said(answer)}")
    return json.loads(answer.body)["channel"]


def _said(answer: Response | str) -> str:
    """An answer in a few words: "202", "429 (Retry-After 1)", "ConnectionResetError"."""
    if isinstance(answer, str):
        return answer
    retry = answer.header("Retry-After")
    return f"{answer.status}" + (f" (Retry-After {retry})" if retry else "")


async def _timed(call: Awaitable[Response | str]) -> str:
    started = time.perf_counter()
    answer = await call
    return f"{_said(answer)} in {(time.perf_counter() - started) * 1000:.0f} ms"


def _health(relay: Relay, timeout: float = 5.0) -> Awaitable[Response | str]:
    data = b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"
    return request(relay.host, relay.port, data, timeout)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counter.most_common()) or "none"


class Peak:
    """A process's resident memory, sampled every 20 ms while a scenario runs."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.peak = relay.rss()
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            self.peak = max(self.peak, self.relay.rss())
            await asyncio.sleep(0.02)

    def stop(self) -> int:
        self._task.cancel()
        return max(self.peak, self.relay.rss())


# --- the scenarios -----------------------------------------------------------------------------


async def idle(bench: Bench) -> str:
    """Idle TCP connections past the relay's open-file limit: are they held, and does the
    relay still answer /healthz and a sender meanwhile?"""
    args = bench.args
    relay = bench.relay("idle")
    channel = await _channel(relay)
    wanted = args.idle or args.nofile + 76
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    failed: Counter[str] = Counter()

    async def connect() -> None:
        try:
            held.append(await asyncio.wait_for(asyncio.open_connection(relay.host, relay.port), 3))
        except (OSError, TimeoutError) as exc:
            failed[type(exc).__name__] += 1

    for start in range(0, wanted, 100):
        await asyncio.gather(*(connect() for _ in range(min(100, wanted - start))))
    await asyncio.sleep(1)
    health = await _timed(_health(relay))
    sender = await _timed(request(relay.host, relay.port, _post(f"/c/{channel}", b"{}"), 5))
    await asyncio.sleep(max(0.0, args.idle_wait - 1))
    closed = sum(1 for reader, _ in held if reader.at_eof() or reader.exception() is not None)
    health_after = await _timed(_health(relay))
    for _, writer in held:
        writer.close()
    return (
        f"idle: {len(held)} of {wanted} connections opened and held (relay open-file limit "
        f"{args.nofile}; failed: {_counts(failed)}); while held /healthz {health}, a sender "
        f"{sender}; after {args.idle_wait:g} s the relay had closed {closed} of them; "
        f"/healthz then {health_after}"
    )


async def slowloris(bench: Bench) -> str:
    """Request heads trickled a byte a second: how long does the relay keep them?"""
    args = bench.args
    relay = bench.relay("slowloris")
    channel = await _channel(relay)
    cap = args.slowloris_seconds
    lived: list[float] = []
    ended: Counter[str] = Counter()

    async def trickle() -> None:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(relay.host, relay.port)
        except OSError as exc:
            ended[type(exc).__name__] += 1
            return
        writer.write(f"POST /c/{channel} HTTP/1.1\r\nHost: relay\r\nX-Slow: ".encode())

        async def drip() -> None:
            while True:
                await asyncio.sleep(1)
                writer.write(b"a")
                await writer.drain()

        dripping = asyncio.create_task(drip())
        try:
            got = await asyncio.wait_for(reader.read(200), cap)
            ended[got.split(b"\r\n")[0].decode("latin-1") or "closed"] += 1
            lived.append(time.monotonic() - started)
        except TimeoutError:
            ended[f"still open at {cap:g} s"] += 1
        except OSError as exc:
            ended[type(exc).__name__] += 1
            lived.append(time.monotonic() - started)
        finally:
            dripping.cancel()
            writer.close()

    tasks = [asyncio.create_task(trickle()) for _ in range(args.slowloris)]
    await asyncio.sleep(min(cap / 2, 5))
    health = await _timed(_health(relay))
    await asyncio.gather(*tasks)
    median = statistics.median(lived) if lived else None
    life = (
        f"the relay ended {len(lived)} after {median:.1f} s median ({max(lived):.1f} s max)"
        if lived
        else "the relay ended none"
    )
    return (
        f"slowloris: {args.slowloris} heads trickling 1 byte/s for up to {cap:g} s: {life}; "
        f"outcomes: {_counts(ended)}; /healthz meanwhile {health}"
    )


async def disk(bench: Bench) -> str:
    """4 MiB posts to channels no listener holds, a new channel after each refusal of one:
    how many bytes does the relay write before it says no?"""
    args = bench.args
    caps = ["--max-channel-mb", str(args.channel_mb), "--max-store-mb", str(args.store_mb)]
    relay = bench.relay("disk", *caps)
    body = os.urandom(4 * MIB)
    channel = await _channel(relay)
    accepted, refusals = 0, Counter()
    started = time.perf_counter()
    for _ in range(args.disk_posts):
        answer = await request(relay.host, relay.port, _post(f"/c/{channel}", body), 60)
        if isinstance(answer, Response) and 200 <= answer.status < 300:
            accepted += 1
            continue
        refusals[_said(answer)] += 1
        if not isinstance(answer, Response) or answer.status != 503:
            break  # 507 (the relay is full), or something else: that is the figure
        channel = await _channel(relay)  # this channel is full: try another
    elapsed = time.perf_counter() - started
    on_disk = sum(f.stat().st_size for f in relay.data_dir.rglob("*") if f.is_file())
    return (
        f"disk: 4 MiB posts, no listener, {' '.join(caps)}: {accepted} accepted "
        f"({accepted * 4} MiB) in {elapsed:.1f} s, refused: {_counts(refusals)}; relay data "
        f"dir {on_disk / MIB:.0f} MiB after {accepted + sum(refusals.values())} posts"
    )


async def memory(bench: Bench) -> str:
    """Concurrent large uploads (each to its own channel, so no byte cap refuses them): the
    relay's peak resident memory."""
    args = bench.args
    relay = bench.relay("memory")
    channels = [await _channel(relay) for _ in range(args.uploads)]
    body = os.urandom(args.upload_mb * MIB)
    before = relay.rss()
    peak = Peak(relay)
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(request(relay.host, relay.port, _post(f"/c/{c}", body), 120) for c in channels)
    )
    elapsed = time.perf_counter() - started
    top = peak.stop()
    said = Counter(_said(a) for a in answers)
    return (
        f"memory: {args.uploads} concurrent {args.upload_mb} MiB uploads: relay RSS "
        f"{before / MIB:.0f} MiB before, peak {top / MIB:.0f} MiB; answers {_counts(said)} "
        f"in {elapsed:.1f} s"
    )


async def rate(bench: Bench) -> str:
    """Posts to one channel as fast as 8 connections go, under --rate; then channels made
    from one address as fast as it can."""
    args = bench.args
    relay = bench.relay("rate", "--rate", f"{args.rate:g}")
    channel = await _channel(relay)
    said = await _flood(args.rate_posts, 8, lambda: _post(f"/c/{channel}", b"{}"), relay)
    made = await _flood(args.creations, 1, lambda: _post("/api/channels", b"{}"), relay)
    return (
        f"rate: {args.rate_posts} posts to one channel under --rate {args.rate:g} in "
        f"{said[1]:.2f} s: {_counts(said[0])}\n"
        f"channel creation: {args.creations} from one address in {made[1]:.2f} s: "
        f"{_counts(made[0])}"
    )


async def _flood(
    count: int, concurrency: int, make: Callable[[], bytes], relay: Relay
) -> tuple[Counter[str], float]:
    said: Counter[str] = Counter()
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            said[_said(await request(relay.host, relay.port, make(), 10))] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return said, round(time.perf_counter() - started, 3)


def _handshake(channel: str, token: str) -> bytes:
    return (
        f"GET /c/{channel}/ws HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


async def tokens(bench: Bench) -> str:
    """Listener websocket handshakes with wrong tokens, as fast as 16 connections go: how
    many a second the relay answers, and whether an unknown channel is answered alike."""
    args = bench.args
    relay = bench.relay("tokens")
    channel = await _channel(relay)
    wrong = await request(relay.host, relay.port, _handshake(channel, "wrong-" + "x" * 40))
    unknown = await request(relay.host, relay.port, _handshake("nochannel", "x" * 46))
    alike = (
        isinstance(wrong, Response)
        and isinstance(unknown, Response)
        and (wrong.status, _reason(wrong)) == (unknown.status, _reason(unknown))
    )
    said, seconds = await _flood(
        args.tokens, 16, lambda: _handshake(channel, f"{random.getrandbits(128):032x}"), relay
    )
    return (
        f"wrong tokens: {args.tokens} handshakes in {seconds:.2f} s "
        f"({args.tokens / seconds:,.0f}/s): {_counts(said)}; first wrong token {_said(wrong)}, "
        f"unknown channel {_said(unknown)}: {'alike' if alike else 'they differ'}"
    )


def _reason(answer: Response) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return json.loads(answer.body)["error"]
    return answer.body.decode("latin-1")


async def fuzz(bench: Bench) -> str:
    """tests/support/http_fuzz.py's hostile HTTP at a relay with a listener (`hooktap listen`)
    and a raw handler: inputs tried, crashes, and whether every 2xx reached the handler."""
    args = bench.args
    relay = bench.relay("fuzz", "--max-body-mb", "1")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    async with raw_handler() as handler:
        relay_url = f"http://{relay.host}:{relay.port}"
        listen = ["listen", "--relay", relay_url, "--forward", handler.url, "--json", "--no-tui"]
        listener = bench.fleet.start("fuzz-listen", [*bench.hooktap, *listen])
        ready = json.loads(listener.wait_for("stdout", '"ready"'))
        channel = ready["webhook_url"].rstrip("/").rsplit("/", 1)[1]
        generator = Generator(seed, channel, f"{relay.host}:{relay.port}", max_body=MIB)
        peak = Peak(relay)
        slots = asyncio.Semaphore(32)
        exchanges: list[Exchange] = []
        unhealthy, crashed = 0, False
        started = time.perf_counter()

        async def one(conn: Connection) -> Exchange:
            async with slots:
                return await exchange(relay.host, relay.port, conn)

        for first in range(0, args.fuzz, 250):
            batch = [generator.connection() for _ in range(min(250, args.fuzz - first))]
            exchanges += await asyncio.gather(*(one(c) for c in batch))
            if relay.child.popen.poll() is not None:
                crashed = True
                break
            answer = await _health(relay)
            unhealthy += not (isinstance(answer, Response) and answer.status == 200)
        elapsed = time.perf_counter() - started
        sent = {m.seq: m for e in exchanges for m in e.connection.messages}
        accepted = {
            m.seq
            for e in exchanges
            for m, r in zip(e.connection.messages, e.responses, strict=False)
            if m.target is not None and 200 <= r.status < 300
        }
        deadline = time.monotonic() + 15  # a 202 reaches the handler once the listener asks
        while not accepted <= {r.seq() for r in handler.requests} and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        top = peak.stop()
    got = {r.seq(): r for r in handler.requests}
    lost = len(accepted - got.keys())
    wrong = sum(
        1
        for seq, r in got.items()
        if (m := sent.get(seq)) is None
        or r.body != m.body
        or r.target.decode("latin-1") != m.target
    )
    answers = Counter(  # a 5xx by its own status: 505 is a refusal, a 500 would be a bug
        str(r.status) if r.status >= 500 else f"{r.status // 100}xx"
        for e in exchanges
        for r in e.responses[: len(e.connection.messages)]
    )
    requests = sum(len(e.connection.messages) for e in exchanges)
    answers["no answer"] = requests - sum(answers.values())
    return (
        f"fuzz (seed {seed}): {requests} requests on {len(exchanges)} connections in "
        f"{elapsed:.0f} s: {_counts(answers)}; relay crashes {int(crashed)}, tracebacks "
        f"{relay.tracebacks()}, /healthz failures {unhealthy}, RSS peak {top / MIB:.0f} MiB; "
        f"2xx {len(accepted)}, lost {lost}, not byte-exact {wrong}"
    )


RUN: dict[str, Callable[[Bench], Awaitable[str]]] = {
    f.__name__: f for f in (idle, slowloris, disk, memory, rate, tokens, fuzz)
}


# --- running -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", action="append", choices=list(RUN), help="run only these (repeat)")
    p.add_argument("--quick", action="store_true", help="smaller counts, a smoke run")
    p.add_argument("--nofile", type=int, default=1024, help="the relays' open-file limit (1024)")
    p.add_argument("--idle", type=int, help="idle connections to open (default: --nofile + 76)")
    p.add_argument("--idle-wait", type=float, default=12.0, help="seconds to hold them (12)")
    p.add_argument("--slowloris", type=int, default=200, help="trickling heads (200)")
    p.add_argument("--slowloris-seconds", type=float, default=30.0, help="cap per head (30)")
    p.add_argument("--channel-mb", type=int, default=64, help="disk: --max-channel-mb (64)")
    p.add_argument("--store-mb", type=int, default=160, help="disk: --max-store-mb (160)")
    p.add_argument("--disk-posts", type=int, default=100, help="disk: most 4 MiB posts (100)")
    p.add_argument("--uploads", type=int, default=10, help="memory: concurrent uploads (10)")
    p.add_argument("--upload-mb", type=int, default=30, help="memory: MiB each (30)")
    p.add_argument("--rate", type=float, default=20.0, help="the relay's --rate (20)")
    p.add_argument("--rate-posts", type=int, default=400, help="posts under --rate (400)")
    p.add_argument("--creations", type=int, default=60, help="channels made from one address")
    p.add_argument("--tokens", type=int, default=1000, help="wrong-token handshakes (1000)")
    p.add_argument("--fuzz", type=int, default=5000, help="fuzz connections (5000)")
    p.add_argument("--seed", type=int, help="fuzz seed (default: random, printed)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (relay logs)")
    p.add_argument("--hooktap", metavar="CMD", help="command that runs hooktap (A/B a change)")
    args = p.parse_args(argv)
    if args.quick:
        args.idle_wait, args.slowloris_seconds, args.slowloris = 12.0, 15.0, 100
        args.disk_posts, args.rate_posts, args.tokens, args.fuzz = 60, 200, 500, 1000
    return args


def _raise_own_file_limit(needed: int) -> None:
    """The benchmark holds as many sockets as it throws at the relay, and more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def run(args: argparse.Namespace) -> int:
    _raise_own_file_limit(max(args.idle or args.nofile + 76, args.slowloris) + 1024)
    workdir = Path(tempfile.mkdtemp(prefix="hooktap-abuse-"))
    bench = Bench(args, workdir)
    try:
        for name in args.only or RUN:
            say(f"{name} ... (logs in {workdir})")
            try:
                line = asyncio.run(RUN[name](bench))
            except RuntimeError as exc:  # a relay that would not start, a channel refused
                line = f"{name}: could not run: {exc}"
            finally:
                bench.fleet.stop_all()
                bench.fleet.children.clear()
            print(line, flush=True)
    except KeyboardInterrupt:
        say("interrupted; stopping every process started")
        return 130
    finally:
        bench.fleet.stop_all()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    interrupt_on_signals()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
