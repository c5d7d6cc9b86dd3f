#!/usr/bin/env python
"""Microseconds per delivery for each step of the tunnel's hot path, in one process.

`tunnel.py --profile` says which functions the relay and the listener spend their time in;
this times those steps alone on the same bodies (1 KB and 1 MB, svix-signed, Pivotal-shaped),
next to a candidate cheaper way of doing the same thing, so a change can be judged before it
is made. Candidates are sketches for measurement, not drop-in code: each says what it skips.

    python benchmarks/hotpath.py            # all steps
    python benchmarks/hotpath.py --only sqlite
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hooktap.listen import forward
from hooktap.listen.http_request import prepare_headers, request_head
from hooktap.listen.http_response import ResponseParser
from hooktap.pivotal.envelope import parse_envelope
from hooktap.pivotal.signing import SVIX_MAX_BODY, verify
from hooktap.protocol import Delivery, decode, encode
from hooktap.records import Attempt
from hooktap.records import Delivery as Record
from hooktap.relay.db import RelayDB, new_delivery_id
from hooktap.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tunnel import KIB, MIB, SECRET, SECRET_KEY, Plan

BATCH = 32


def timeit(fn: Callable[[], object], budget: float = 0.6, per: int = 1) -> float:
    """Microseconds per item: run fn (which handles `per` items) until `budget` seconds pass."""
    fn()  # warm
    runs = 0
    start = time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed > budget or runs >= 100_000:
            return elapsed / (runs * per) * 1e6


def row(name: str, us: float, note: str = "") -> None:
    print(f"  {name:<64} {us:>9.1f} µs  {note}".rstrip())


def frame_for(plan: Plan, seq: int) -> Delivery:
    return Delivery(
        id=new_delivery_id(time.time()),
        received_at=time.time(),
        method="POST",
        path="/webhooks/pivotal",
        query="",
        headers=[("Host", "127.0.0.1:8787"), *plan.headers[seq].items()],
        body=plan.body(seq),
        remote="127.0.0.1",
        scheme="http",
        host="127.0.0.1:8787",
    )


# --- relay -------------------------------------------------------------------------------------


def bench_relay_sqlite(plan: Plan, tmp: Path, size_label: str) -> None:
    db = RelayDB(tmp / f"relay-{size_label}.db")
    db.create_channel("bench", "tok")
    frame = frame_for(plan, 0)
    counter = iter(range(10**9))

    def one() -> None:
        frame.id = f"d{next(counter)}"
        db.enqueue("bench", frame)
        db.confirm("bench", frame.id)

    def batched() -> None:
        ids = [f"d{next(counter)}" for _ in range(BATCH)]
        meta = json.dumps({"method": frame.method, "headers": frame.headers})
        with db.db:  # one transaction for a tick's worth of inserts, one for the deletes
            db.db.execute("BEGIN")
            db.db.executemany(
                "INSERT INTO queue (channel, id, received_at, meta, body) VALUES (?,?,?,?,?)",
                [("bench", i, 0.0, meta, frame.body) for i in ids],
            )
        with db.db:
            db.db.execute("BEGIN")
            db.db.executemany(
                "DELETE FROM queue WHERE channel = ? AND id = ?", [("bench", i) for i in ids]
            )

    row(
        f"relay {size_label}: channel_exists (SELECT per request)",
        timeit(lambda: db.channel_exists("bench")),
        "candidate: an in-memory set, ~0.1 µs",
    )
    row(f"relay {size_label}: enqueue + confirm, one commit each (now)", timeit(one))
    row(
        f"relay {size_label}: same, {BATCH} per transaction (group commit)",
        timeit(batched, per=BATCH),
    )
    db.close()


def bench_frames(plan: Plan, size_label: str) -> None:
    frame = frame_for(plan, 0)
    data = encode(frame)
    row(f"frames {size_label}: encode Delivery", timeit(lambda: encode(frame)))
    row(f"frames {size_label}: decode Delivery", timeit(lambda: decode(data)))


# --- listener ----------------------------------------------------------------------------------


def bench_store(plan: Plan, tmp: Path, size_label: str) -> None:
    store = Store(tmp / f"history-{size_label}.db")
    counter = iter(range(10**9))
    frame = frame_for(plan, 0)

    def record() -> Record:
        return Record(
            id=f"d{next(counter)}",
            received_at=time.time(),
            method="POST",
            path=frame.path,
            query="",
            headers=frame.headers,
            body=frame.body,
            channel="bench",
            target="http://127.0.0.1:8000",
            signature="valid",
            svix_id=f"msg_{next(counter)}",
            event_type="story.updated",
            state="dispatched",
        )

    def attempt(delivery_id: str) -> Attempt:
        return Attempt(
            delivery_id,
            "forward",
            time.time(),
            "http://127.0.0.1:8000/x",
            status=200,
            response_headers=[("Content-Length", "3")],
            response_body=b"ok\n",
        )

    def one_by_one() -> None:
        # What the listener pays at concurrency 1: each write its own GroupCommit batch.
        d = record()
        store.write_batch([d], [])
        store.write_batch([], [(d.id, attempt(d.id))])

    row(f"listener {size_label}: write_batch, 1 delivery per commit (C=1)", timeit(one_by_one))
    db = store._db  # measurement only: the cost of one empty write transaction

    def empty_commit() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("COMMIT")

    row(f"listener {size_label}: one empty BEGIN IMMEDIATE/COMMIT", timeit(empty_commit))

    def grouped() -> None:
        # BATCH deliveries per commit: what GroupCommit gets when BATCH are in flight.
        records = [record() for _ in range(BATCH)]
        store.write_batch(records, [])
        store.write_batch([], [(d.id, attempt(d.id)) for d in records])

    row(
        f"listener {size_label}: write_batch, {BATCH} deliveries per commit",
        timeit(grouped, per=BATCH),
    )
    store.close()


def bench_verify(plan: Plan, size_label: str) -> None:
    frame = frame_for(plan, 0)
    headers = frame.headers
    body = frame.body
    assert verify(SECRET, headers, body).status == "valid"
    h = dict(plan.headers[0])
    msg_id, ts, sig = h["svix-id"], h["svix-timestamp"], h["svix-signature"]

    def single_hmac() -> bool:
        # One HMAC over the bytes as they are: no decode, no f-string copy, no svix re-check.
        mac = hmac.new(SECRET_KEY, f"{msg_id}.{ts}.".encode(), hashlib.sha256)
        mac.update(body)
        given = base64.b64decode(sig.split(",", 1)[1])
        return hmac.compare_digest(mac.digest(), given)

    assert single_hmac()
    judge = "svix" if len(body) <= SVIX_MAX_BODY else "one streaming HMAC, no svix"
    row(
        f"verify {size_label}: verify() now ({judge})",
        timeit(lambda: verify(SECRET, headers, body)),
    )
    row(f"verify {size_label}: candidate, one streaming HMAC over bytes", timeit(single_hmac))


def envelope_prefix(body: bytes, limit: int = 64 * KIB) -> tuple[str | None, ...] | None:
    """Candidate: read top-level keys in order and stop once id, type and created_at are
    known, skipping nothing it has not parsed; fall back to a full parse for small bodies."""
    if len(body) <= limit:
        env = parse_envelope(body)
        return (env.id, env.type, env.created_at) if env else None
    try:
        text = body[:limit].decode("utf-8", "ignore")
    except UnicodeDecodeError:
        return None
    dec = json.JSONDecoder()
    pos = text.find("{") + 1
    found: dict[str, object] = {}
    ws = " \t\r\n"
    while pos and len(found) < 3:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if pos >= len(text) or text[pos] != '"':
            return None
        key, pos = dec.raw_decode(text, pos)
        while pos < len(text) and text[pos] in ws + ":":
            pos += 1
        if key not in ("id", "type", "created_at"):
            return None  # a big value before the labels: give up (no label), never parse it
        value, pos = dec.raw_decode(text, pos)
        found[key] = value
        while pos < len(text) and text[pos] in ws + ",":
            pos += 1
    t = found.get("type")
    return (found.get("id"), t, found.get("created_at")) if isinstance(t, str) else None  # type: ignore[return-value]


def bench_envelope(plan: Plan, size_label: str) -> None:
    body = plan.body(0)
    env = parse_envelope(body)
    assert env is not None and envelope_prefix(body) == (env.id, env.type, env.created_at)
    row(
        f"envelope {size_label}: parse_envelope (json.loads of the body)",
        timeit(lambda: parse_envelope(body)),
    )
    row(
        f"envelope {size_label}: candidate, top-level prefix scan",
        timeit(lambda: envelope_prefix(body)),
    )


def bench_h11(plan: Plan, size_label: str) -> None:
    frame = frame_for(plan, 0)
    wire = prepare_headers(
        "POST",
        frame.headers,
        frame.body,
        "127.0.0.1:8000",
        remote="127.0.0.1",
        scheme="http",
        host="127.0.0.1:8787",
    )
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
        b"Date: Sun, 23 Nov 2025 21:00:00 GMT\r\nServer: Python/3.11 aiohttp/3.14.5\r\n\r\nok\n"
    )
    body = frame.body

    # The forwarder's own code, minus the socket: the checked head, the bytes _roundtrip
    # writes (one buffer for small bodies, head and body apart for big ones), and the
    # connection's httptools parser reading the answer.
    reader = ResponseParser()

    def now() -> None:
        head = request_head("POST", "/webhooks/pivotal", wire)
        data = head + body if len(body) <= forward._COALESCE else head
        assert data
        reader.begin(False)
        reader.feed(response)
        assert reader.done and reader.status == 200 and reader.chunks == [b"ok\n"]

    try:
        import h11  # not a dependency any more; uvicorn (a test dependency) still brings it
    except ImportError:
        row(f"forward {size_label}: h11 request + response (old)", float("nan"), "not installed")
    else:
        conn = h11.Connection(h11.CLIENT)  # kept alive across requests, as the forwarder was

        def with_h11() -> None:
            req = h11.Request(
                method=b"POST",
                target=b"/webhooks/pivotal",
                headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in wire],
            )
            data = conn.send(req) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            assert data
            conn.receive_data(response)
            while True:
                ev = conn.next_event()
                if isinstance(ev, h11.Response):
                    [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ev.headers.raw_items()]
                elif isinstance(ev, h11.EndOfMessage):
                    conn.start_next_cycle()
                    break

        row(f"forward {size_label}: h11 request + response (old)", timeit(with_h11))
    row(f"forward {size_label}: request_head + httptools response (now)", timeit(now))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["sqlite", "frames", "verify", "envelope", "h11"])
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hooktap-hotpath-") as tmp_name:
        tmp = Path(tmp_name)
        for size, label in ((KIB, "1KB"), (MIB, "1MB")):
            plan = Plan(size, 1, f"hot{label}", signed=True)
            print(f"{label} body ({size} bytes), per delivery:")
            if args.only in (None, "sqlite"):
                bench_relay_sqlite(plan, tmp, label)
                bench_store(plan, tmp, label)
            if args.only in (None, "frames"):
                bench_frames(plan, label)
            if args.only in (None, "verify"):
                bench_verify(plan, label)
            if args.only in (None, "envelope"):
                bench_envelope(plan, label)
            if args.only in (None, "h11"):
                bench_h11(plan, label)
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
