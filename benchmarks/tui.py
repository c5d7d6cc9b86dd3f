"""How the inspector holds up: open time over 100,000 stored deliveries, scrolling through
them, and key-press latency while 500 deliveries a second arrive.

    python benchmarks/tui.py                      # both parts
    python benchmarks/tui.py --only open --db /tmp/100k.db   # keep the history between runs

The app runs headless (Textual's run_test), so terminal I/O is left out but everything else a
terminal session does (compositing, workers, the store) is in. For the live part the process
is laid out as `hooktap listen` is: the embedded relay, the listener and the TUI share one
asyncio loop; Pivotal (the sender) and the user's handler are separate processes.

Latency is measured from the moment a key event is handed to the app (as the terminal input
thread does) to the first screen update after the key's handler ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# --- the other processes ----------------------------------------------------------------------


async def run_handler() -> None:
    """The user's local handler: answers 200 at once, prints its port."""
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


async def run_sender(url: str, rate: float, seconds: float, secret: str) -> None:
    """Pivotal: signed deliveries at `rate` per second for `seconds`; prints what it achieved."""
    import aiohttp

    from hooktap.pivotal import catalog
    from hooktap.pivotal.signing import signed_headers

    kinds = catalog.event_types()
    bodies = [catalog.encode(catalog.sample(k)) for k in kinds]
    statuses: list[int] = []
    sem = asyncio.Semaphore(400)

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        body = bodies[i % len(bodies)]
        async with sem:
            try:
                async with http.post(url, data=body, headers=signed_headers(secret, body)) as r:
                    await r.read()
                    statuses.append(r.status)
            except aiohttp.ClientError:
                statuses.append(0)

    connector = aiohttp.TCPConnector(limit=400)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        tasks = []
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, i)))
        sent_in = time.perf_counter() - start
        await asyncio.gather(*tasks)
        done_in = time.perf_counter() - start
    ok = sum(1 for s in statuses if 200 <= s < 300)
    print(json.dumps({"sent": total, "ok": ok, "sent_in": sent_in, "done_in": done_in}))


# --- measuring --------------------------------------------------------------------------------


class KeyTimer:
    """Times keys from hand-over to the first screen update after the key's handler ran."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.handled_at: float | None = None
        self.painted_at: float | None = None
        original = app._display

        def display(screen, renderable) -> None:  # type: ignore[no-untyped-def]
            if self.handled_at is not None and self.painted_at is None and renderable is not None:
                self.painted_at = time.perf_counter()
            original(screen, renderable)

        app._display = display

    def wrap(self, owner: object, name: str) -> None:
        original: Callable[..., object] = getattr(owner, name)

        def handled(*args: object, **kwargs: object) -> object:
            result = original(*args, **kwargs)
            if self.handled_at is None:
                self.handled_at = time.perf_counter()
            return result

        setattr(owner, name, handled)

    async def press(self, key: str, timeout: float = 5.0) -> float:
        from textual import events

        self.handled_at = self.painted_at = None
        start = time.perf_counter()
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(self.app)
        self.app._driver.send_message(event)
        while self.painted_at is None:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"key {key!r} not handled in {timeout} s")
            await asyncio.sleep(0.0005)
        return (self.painted_at - start) * 1000


def summary(label: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[int(len(ms) * 0.95) - 1] if len(ms) >= 20 else ms[-1]
    return (
        f"{label}: n={len(ms)}  median {statistics.median(ms):.1f} ms  p95 {p95:.1f} ms  "
        f"max {ms[-1]:.1f} ms"
    )


# --- part 1: open and scroll 100,000 ----------------------------------------------------------


def build_history(path: Path, count: int) -> None:
    from hooktap.pivotal import catalog
    from hooktap.pivotal.signing import signed_headers
    from hooktap.records import Attempt, Delivery
    from hooktap.store import Store

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    kinds = catalog.event_types()
    bodies = [catalog.encode(catalog.sample(k)) for k in kinds]
    start = time.time() - 30 * 86400
    with Store(path) as store:
        for i in range(count):
            body = bodies[i % len(bodies)]
            received = start + i * 25.0
            d = Delivery(
                id=f"dlv_{i:09d}",
                received_at=received,
                method="POST",
                path="/webhooks/pivotal",
                query="",
                headers=signed_headers(secret, body, timestamp=int(received)),
                body=body,
                target="http://localhost:8000",
                signature="valid" if i % 50 else "invalid",
                svix_id=f"msg_{i % (count - count // 20)}",
                event_type=kinds[i % len(kinds)],
                state="dispatched",
            )
            status = 500 if i % 13 == 0 else 200
            forward = Attempt(d.id, "forward", received, d.target, status=status)
            store.write_batch([d], [(d.id, forward)])  # as the listener writes: one commit
            if i and i % 20000 == 0:
                print(f"  … {i:,} stored", flush=True)


async def bench_open(db: Path) -> None:
    from hooktap.store import Store
    from hooktap.tui.app import HooktapApp

    start = time.perf_counter()
    store = Store(db)
    app = HooktapApp(store)
    async with app.run_test(size=(140, 42)) as pilot:
        while not (app.deliveries.rows and app._detail_data is not None):
            await asyncio.sleep(0.001)
        await pilot.pause()
        opened = time.perf_counter() - start
        total = store.count()
        print(f"open with {total:,} stored deliveries: {opened * 1000:.0f} ms to rows and detail")
        while app.total is None:
            await asyncio.sleep(0.01)
        print(
            f"  (count {app.total:,} and header stats fill in after: "
            f"{(time.perf_counter() - start) * 1000:.0f} ms)"
        )
        timer = KeyTimer(app)
        timer.wrap(app.deliveries, "move_to")
        timer.wrap(app.deliveries, "show_rows")
        down = [await timer.press("down") for _ in range(300)]
        print(summary("  cursor down (300 rows)", down))
        pages = [await timer.press("pagedown") for _ in range(150)]
        print(summary("  page down (150 pages, keyset paging as it goes)", pages))
        print(f"  rows held by the list after {len(pages)} pages: {len(app.deliveries.rows)}")
        end = [await timer.press(k) for k in ("end", "home") * 10]
        print(summary("  end / home (jump to oldest / newest)", end))
        await app.action_quit()
    store.close()


# --- part 2: keys while 500 deliveries a second arrive ----------------------------------------


async def probe_lag(out: list[float]) -> None:
    """How late a 10 ms sleep wakes: how long anything (a key) waits for the loop."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(0.01)
        out.append((time.perf_counter() - began - 0.01) * 1000)


async def start_handler(me: str) -> tuple[asyncio.subprocess.Process, int]:
    handler = await asyncio.create_subprocess_exec(
        sys.executable, me, "--role", "handler", stdout=asyncio.subprocess.PIPE
    )
    assert handler.stdout is not None
    return handler, int((await handler.stdout.readline()).decode())


async def send(me: str, url: str, rate: float, seconds: float, secret: str) -> dict[str, float]:
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        me,
        "--role",
        "sender",
        url,
        str(rate),
        str(seconds),
        secret,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await sender.communicate()
    return json.loads(out)


async def bench_baseline(rate: float, seconds: float) -> None:
    """The same stream through the listener and embedded relay with no TUI: the loop's base load."""
    from hooktap.listen.events import Ready
    from hooktap.listen.listener import Listener, ListenerConfig
    from hooktap.listen.target import parse_target
    from hooktap.store import Store

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    me = str(Path(__file__).resolve())
    handler, port = await start_handler(me)
    store = Store(Path(os.environ["HOOKTAP_HOME"]) / "baseline.db")
    listener = Listener(
        ListenerConfig(target=parse_target(str(port)), port=0, secret=secret), store
    )
    ready = asyncio.Event()
    listener.subscribe(lambda e: ready.set() if isinstance(e, Ready) else None)
    task = asyncio.create_task(listener.run())
    try:
        await ready.wait()
        assert listener.creds is not None
        lags: list[float] = []
        probe = asyncio.create_task(probe_lag(lags))
        result = await send(me, listener.creds.webhook_url, rate, seconds, secret)
        probe.cancel()
        print(
            f"baseline, no TUI: {result['ok']:,} of {result['sent']:,} answered 2xx; drained "
            f"{result['done_in'] - result['sent_in']:.2f} s after the last send"
        )
        print(summary("  event-loop lag (listener + relay alone)", lags))
    finally:
        await listener.stop()
        await task
        handler.kill()
        await handler.wait()
        store.close()


async def bench_live(rate: float, seconds: float) -> None:
    from hooktap.listen.listener import Listener, ListenerConfig
    from hooktap.listen.target import parse_target
    from hooktap.store import Store
    from hooktap.tui.app import HooktapApp

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    me = str(Path(__file__).resolve())
    handler, port = await start_handler(me)
    store = Store(Path(os.environ["HOOKTAP_HOME"]) / "live.db")
    listener = Listener(
        ListenerConfig(target=parse_target(str(port)), port=0, secret=secret), store
    )
    app = HooktapApp(store, listener)
    try:
        async with app.run_test(size=(140, 42)) as pilot:
            while not app.webhook_url:
                await pilot.pause(0.01)
            timer = KeyTimer(app)
            timer.wrap(app, "action_tab")
            timer.wrap(app.deliveries, "move_to")
            lags: list[float] = []
            probe = asyncio.create_task(probe_lag(lags))
            sender = asyncio.create_task(send(me, app.webhook_url, rate, seconds, secret))
            await asyncio.sleep(1.0)  # let the stream reach full rate
            following: list[float] = []
            moving: list[float] = []
            deadline = time.perf_counter() + seconds - 2
            half = time.perf_counter() + (seconds - 2) / 2
            tabs = ["1", "2", "3", "4"]
            i = 0
            while time.perf_counter() < deadline:
                if time.perf_counter() < half:
                    following.append(await timer.press(tabs[i % 4]))  # rows keep streaming in
                else:
                    moving.append(await timer.press("down" if i % 2 else "up"))
                i += 1
                await asyncio.sleep(0.05)
            result = await sender
            probe.cancel()
            while app.feed.counts.received < result["ok"]:
                await pilot.pause(0.05)
            print(
                f"live: {result['sent']:,} deliveries sent at {rate:.0f}/s "
                f"({result['sent'] / result['sent_in']:.0f}/s achieved), {result['ok']:,} "
                f"answered 2xx, all {app.feed.counts.received:,} shown; "
                f"drained {result['done_in'] - result['sent_in']:.2f} s after the last send"
            )
            print(summary("  key latency, following (tab keys 1-4)", following))
            print(summary("  key latency, reading a row (up/down)", moving))
            print(summary("  event-loop lag (listener + relay + TUI)", lags))
            await app.action_quit()
    finally:
        handler.kill()
        await handler.wait()
        store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("bench", "handler", "sender"), default="bench")
    parser.add_argument("--only", choices=("open", "live"))
    parser.add_argument("--db", type=Path, help="history to open (built if missing)")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    if args.role == "handler":
        await run_handler()
        return
    if args.role == "sender":
        url, rate, seconds, secret = args.rest
        await run_sender(url, float(rate), float(seconds), secret)
        return
    home = Path(tempfile.mkdtemp(prefix="hooktap-bench-"))
    os.environ["HOOKTAP_HOME"] = str(home)
    try:
        if args.only in (None, "open"):
            db = args.db or home / "history.db"
            if not db.exists():
                print(f"building {args.count:,} stored deliveries in {db} …", flush=True)
                began = time.perf_counter()
                build_history(db, args.count)
                print(f"  built in {time.perf_counter() - began:.0f} s")
            await bench_open(db)
        if args.only in (None, "live"):
            await bench_baseline(args.rate, args.seconds)
            await bench_live(args.rate, args.seconds)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # a --db history is kept; ours is not


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    asyncio.run(main())
