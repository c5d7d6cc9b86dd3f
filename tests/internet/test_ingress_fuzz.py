"""The relay's public ingress under a few thousand hostile requests (tests/support/http_fuzz.py:
valid and malformed HTTP/1.1 over raw sockets, pipelined, cut short, with junk headers and
lying lengths), against a real `hooktap relay` process with a real Listener connected and a raw
handler behind it that records the bytes it gets.

What must hold, whatever arrived:
- the relay keeps serving (/healthz between batches) with bounded memory (its RSS, by psutil)
  and writes no traceback;
- every request the relay answered 2xx reached the handler once, body and path tail byte for
  byte; a request whose framing is ambiguous is never accepted, and nothing the fuzzer did not
  send as a request (the rest of a body past a short Content-Length) ever reaches the handler;
- a request with nothing wrong with it is delivered; every refusal the relay makes itself is
  JSON with an "error" reason.

The seed is printed (and taken from HOOKTAP_FUZZ_SEED), so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from hooktap.listen.events import DeliveryReceived
from support.http_fuzz import (
    Exchange,
    Generator,
    Message,
    RawHandler,
    Recorded,
    Response,
    exchange,
    raw_handler,
)
from support.procs import Procs
from support.servers import running_listener, until

MAX_RSS = 200 * 1024 * 1024
MAX_BODY_MB = 1  # the relay's --max-body-mb: bodies just past it are among the inputs
BATCH = 250
_EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")
CONCURRENCY = 32


def _seed() -> int:
    chosen = os.environ.get("HOOKTAP_FUZZ_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(2**32)


class Rss:
    """The relay's resident memory, sampled every 50 ms while the fuzz runs: the peak, not
    just what is left between batches."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0

    async def watch(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.05)

    def sample(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self.peak = max(self.peak, self.process.memory_info().rss)


async def _healthz(host: str, port: int) -> str | None:
    """None if /healthz answers 200 "ok" within 5 s, else what happened."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    except (OSError, TimeoutError) as exc:
        return f"/healthz: {exc!r}"
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or json.loads(body).get("status") != "ok":
        return f"/healthz answered {data[:200]!r}"
    return None


async def fuzz(procs: Procs, tmp_path: Path, connections: int) -> None:
    seed = _seed()
    print(f"ingress fuzz: seed {seed} (HOOKTAP_FUZZ_SEED={seed} reproduces), {connections} conns")
    relay, url = procs.relay(tmp_path / "relay", "--max-body-mb", str(MAX_BODY_MB))
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rss = Rss(relay.popen.pid)
    watcher = asyncio.create_task(rss.watch())
    problems: list[str] = []
    exchanges: list[Exchange] = []
    async with (
        raw_handler() as handler,
        running_listener(url, handler.url, tmp_path / "history.db") as live,
    ):
        channel = live.webhook_url.rstrip("/").rsplit("/", 1)[1]
        generator = Generator(seed, channel, parts.netloc, max_body=MAX_BODY_MB << 20)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def limited(job: Awaitable[Exchange]) -> Exchange:
            async with slots:
                return await job

        for start in range(0, connections, BATCH):
            batch = [generator.connection() for _ in range(min(BATCH, connections - start))]
            exchanges += await asyncio.gather(*(limited(exchange(host, port, c)) for c in batch))
            if relay.popen.poll() is not None:
                problems.append(
                    f"the relay exited: code {relay.popen.returncode}, by connection {start}"
                )
                break
            if (failed := await _healthz(host, port)) is not None:
                problems.append(f"not serving: after {start + len(batch)} connections, {failed}")
        accepted = {m.seq for e in exchanges for m, r in _answered(e) if _delivered(m, r)}
        with contextlib.suppress(TimeoutError):  # a 202 is handed over when the listener asks
            await until(lambda: accepted <= {r.seq() for r in handler.requests}, 15)
        lost = sorted(accepted - {r.seq() for r in handler.requests})  # type: ignore[type-var]
        problems += [f"answered 2xx, never reached the handler: seq {seq}" for seq in lost]
        through_listener = {
            _seq_of(e.delivery.headers) for e in live.events if isinstance(e, DeliveryReceived)
        }
    watcher.cancel()
    rss.sample()
    relay.stop()
    _, err = relay.rest()
    problems += [p for e in exchanges for p in _check_answers(e, through_listener)]
    problems += _check_handler(exchanges, handler)
    if rss.peak > MAX_RSS:
        problems.append(f"relay RSS too high: peaked at {rss.peak / 2**20:.0f} MiB")
    if tracebacks := [line for line in err if "Traceback" in line]:
        problems.append(
            f"tracebacks in the relay's stderr: {len(tracebacks)}, e.g.\n" + _first(err)
        )
    answers = Counter(f"{r.status // 100}xx" for e in exchanges for r in e.responses)
    print(
        f"ingress fuzz: {sum(len(e.connection.messages) for e in exchanges)} requests on "
        f"{len(exchanges)} connections; answers {dict(sorted(answers.items()))}; "
        f"{len(handler.requests)} delivered; relay RSS peak {rss.peak / 2**20:.0f} MiB; "
        f"{len(problems)} problems"
    )
    kinds: dict[str, list[str]] = {}
    for problem in problems:
        kinds.setdefault(re.sub(r"\d+", "N", problem.split(":")[0]), []).append(problem)
    report = "\n".join(
        f"{len(some):5} x {kind}, e.g.\n" + "\n".join(f"        {p[:400]}" for p in some[:3])
        for kind, some in sorted(kinds.items(), key=lambda item: -len(item[1]))
    )
    assert not problems, f"seed {seed}: {len(problems)} problems, by kind:\n{report}"


def _answered(e: Exchange) -> list[tuple[Message, Response]]:
    return list(zip(e.connection.messages, e.responses, strict=False))


def _delivered(message: Message, response: Response) -> bool:
    """Answered 2xx for the channel: the handler must have it."""
    return message.target is not None and 200 <= response.status < 300


def _seq_of(headers: list[tuple[str, str]]) -> int | None:
    values = [v for n, v in headers if n.lower() == "x-fuzz-seq"]
    return int(values[0]) if len(values) == 1 and values[0].isdigit() else None


def _first(err: list[str]) -> str:
    """The first traceback: where it starts, and the exception that ends it."""
    start = next(i for i, line in enumerate(err) if "Traceback" in line)
    ends = (i for i in range(start, len(err)) if _EXCEPTION.match(err[i]))
    return "\n".join([*err[start : start + 3], "  ...", err[next(ends, start)]])


def _refusal_problem(response: Response, method: str = "") -> str | None:
    """None if `response` is a refusal in the relay's shape: JSON with an "error" reason (or
    no body at all, as an answer to HEAD must be)."""
    status, body = response.status, response.body
    if method == "HEAD" and not body:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return f"{status} refusal is not JSON: {body[:120]!r}"
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str) or not doc["error"]:
        return f"{status} refusal has no 'error' reason: {body[:120]!r}"
    return None


def _check_answers(e: Exchange, via_listener: set[int | None]) -> list[str]:
    """What the relay answered on one connection."""
    problems: list[str] = []
    conn = e.connection
    where = f"connection {conn.number}"
    if e.error.startswith("not HTTP"):
        problems.append(f"answer not HTTP: {where}, {e.error}")
    # A parser may refuse a whole pipeline for a fault in its last request, and a server may
    # take a half-close for a close (RFC 9112 9.6): a clean request is owed delivery only on a
    # connection where nothing else is wrong.
    all_clean = all(m.clean for m in conn.messages) and not (conn.leftover or conn.half_close)
    for i, message in enumerate(conn.messages):
        response = e.responses[i] if i < len(e.responses) else None
        about = f"{where} message {i} ({message.label}, seq {message.seq}): {message.raw[:100]!r}"
        if response is None:
            if all_clean:
                problems.append(f"clean request got no answer: {e.error or 'closed'}, {about}")
            continue
        accepted = 200 <= response.status < 300
        if all_clean and not accepted:
            problems.append(
                f"clean request refused: {response.status} {response.body[:150]!r}, {about}"
            )
        if accepted and message.target is not None and message.body is None:
            problems.append(f"accepted what it must refuse: {about}")
        own = not accepted and message.seq not in via_listener  # not the handler's answer
        if own and (why := _refusal_problem(response, message.method)):
            problems.append(f"{why}: {about}")
    for response in e.responses[len(conn.messages) :]:  # the rest of a body, taken as a request
        if 200 <= response.status < 300:
            problems.append(f"bytes past a short Content-Length accepted: {where}")
        elif why := _refusal_problem(response):
            problems.append(f"{why}: {where}, the bytes past a short Content-Length")
    return problems


def _check_handler(exchanges: list[Exchange], handler: RawHandler) -> list[str]:
    """What reached the handler: only what was sent as a deliverable request, each once, byte
    for byte."""
    problems: list[str] = []
    sent = {m.seq: m for e in exchanges for m in e.connection.messages if m.seq is not None}
    got: dict[int | None, list[Recorded]] = {}
    for recorded in handler.requests:
        got.setdefault(recorded.seq(), []).append(recorded)
    for seq, records in got.items():
        message = sent.get(seq) if seq is not None else None
        if message is None or message.target is None or message.body is None:
            problems.append(f"the handler got a non-request: {records[0]}")
            continue
        if len(records) > 1:
            problems.append(f"delivered more than once: seq {seq}, {len(records)} times")
        record = records[0]
        if record.body != message.body:
            problems.append(
                f"body differs: seq {seq} ({message.label}), the handler got "
                f"{len(record.body)} bytes of {len(message.body)} sent: {message.raw[:100]!r}"
            )
        target = record.target.decode("latin-1")
        if target != message.target:
            sent_as = message.target[:120]
            problems.append(f"target differs: seq {seq}, got {target[:120]!r}, sent {sent_as!r}")
    return problems


async def test_ingress_fuzz_few_thousand_requests(procs: Procs, tmp_path: Path) -> None:
    await fuzz(procs, tmp_path, 2500)


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_ingress_fuzz_soak(procs: Procs, tmp_path: Path) -> None:
    await fuzz(procs, tmp_path, 50_000)
