"""Refusals from a relay on the internet: every malformed or misrouted request gets the
relay's JSON (`{"error": reason}`), and the log gets one line for it, no traceback, and only
a bounded number of lines however many bad requests arrive. A real `hooktap relay` process,
raw sockets for the requests no HTTP client would send."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from support.procs import Proc, Procs

CHANNEL_PATH = "/c/abc"  # no such channel: what matters is whether routing refuses the path

MALFORMED = {
    "bad request line": b"GARBAGE\r\n\r\n",
    "bad header name": b"POST /c/abc HTTP/1.1\r\nHost: relay\r\nBad Header: x\r\n\r\n",
    "control byte in a header": (
        b"POST /c/abc HTTP/1.1\r\nHost: relay\r\nX-Token: hush-7f3a\x01\r\n\r\n"
    ),
    "junk bytes": b"\x00\xff\xfe\x9c junk \x01\x02\r\n\r\n",
    "TLS to the plain port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32,
    "request line too long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: relay\r\n\r\n",
}

ROUTED = {
    # Decoded, %0A is a line break, which no route's pattern matches: aiohttp's own 404.
    "line feed in the path": (
        b"POST /c/abc/x%0Ay HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n",
        404,
    ),
    "method not allowed": (
        b"DELETE /api/channels HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n",
        405,
    ),
    "no such route": (b"GET /nowhere HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n", 404),
    # aiohttp would answer in the version asked for ("HTTP/2.0 200"), which no client reads.
    "HTTP/2.0 in the request line": (
        b"POST /c/abc HTTP/2.0\r\nHost: relay\r\nContent-Length: 2\r\n\r\nhi",
        505,
    ),
    "HTTP/0.9 in the request line": (b"GET /healthz HTTP/0.9\r\nHost: relay\r\n\r\n", 505),
    # aiohttp's own 417 is a text page, raised before any middleware runs.
    "an Expect other than 100-continue": (
        b"POST /c/abc HTTP/1.1\r\nHost: relay\r\nExpect: x-junk\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nhi",
        417,
    ),
    # Refused by the relay's own ingress (problem()), not by routing: its reason is logged too.
    "no such channel": (
        b"POST /c/abc HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        404,
    ),
}


def exchange(port: int, raw: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Send `raw`, read the answer until the relay closes: status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    # HTTP/1.x whatever version the request named (an unparsable one is answered in 1.0).
    assert lines[0].startswith(("HTTP/1.1 ", "HTTP/1.0 ")), lines[0]
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def relay_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def reason_of(headers: dict[str, str], body: bytes) -> str:
    assert headers.get("Content-Type", "").startswith("application/json"), (headers, body)
    payload = json.loads(body)
    assert isinstance(payload["error"], str) and payload["error"], payload
    return payload["error"]


def log_after_start(proc: Proc) -> list[str]:
    proc.stop()
    _, err = proc.rest()
    start = next(i for i, line in enumerate(err) if "listening on" in line)
    return err[start + 1 :]


def test_each_malformed_or_misrouted_request_gets_json_and_one_log_line(
    procs: Procs, tmp_path: Path
) -> None:
    proc, url = procs.relay(tmp_path / "relay")
    port = relay_port(url)
    reasons: dict[str, str] = {}
    for name, raw in MALFORMED.items():
        status, headers, body = exchange(port, raw)
        assert status == 400, (name, body)
        reasons[name] = reason_of(headers, body)
        assert reasons[name].startswith("malformed request: "), (name, reasons[name])
    for name, (raw, expected) in ROUTED.items():
        status, headers, body = exchange(port, raw)
        assert status == expected, (name, body)
        reasons[name] = reason_of(headers, body)
    assert "x%0Ay" in reasons["line feed in the path"]
    assert "DELETE is not allowed on /api/channels" in reasons["method not allowed"]
    # The parser quotes the bytes it choked on; neither the answer nor the log repeats them.
    assert "hush-7f3a" not in reasons["control byte in a header"]

    lines = log_after_start(proc)
    text = "\n".join(lines)
    assert "Traceback" not in text and "aiohttp" not in text and "hush-7f3a" not in text
    # One line per refusal, with its reason, and nothing else but the stop.
    refusals = [line for line in lines if "SIGTERM: stopping" not in line]
    assert len(refusals) == len(MALFORMED) + len(ROUTED), lines
    assert sum("400 from 127.0.0.1: malformed request: " in line for line in refusals) == len(
        MALFORMED
    )
    for name in ROUTED:
        assert sum(reasons[name] in line for line in refusals) == 1, (name, lines)


def test_a_thousand_bad_requests_cost_the_log_a_bounded_number_of_lines(
    procs: Procs, tmp_path: Path
) -> None:
    """Half unparseable, half misrouted, at a relay logging text and one logging JSON."""
    relays = {fmt: procs.relay(tmp_path / fmt, "--log-format", fmt)[1] for fmt in ("text", "json")}
    sent = 1000
    for url in relays.values():
        for _ in range(sent // 2):
            assert exchange(relay_port(url), MALFORMED["bad request line"])[0] == 400
            assert exchange(relay_port(url), ROUTED["no such route"][0])[0] == 404
    for proc in procs.started:
        # What was left out is counted in one line, once the limiter's window (10 s) is over.
        proc.wait_stderr("left out", timeout=15)
    text_log, json_log = (log_after_start(proc) for proc in procs.started)

    records = [json.loads(line) for line in json_log]
    logged = [r for r in records if r["event"] in ("refused", "request")]
    assert all(r["reason"] and r["status"] in (400, 404) for r in logged), logged
    left_out = sum(r["left_out"] for r in records if r["event"] == "log-limited")
    assert 0 < len(logged) <= 20 and len(logged) + left_out == sent
    assert len(json_log) <= len(logged) + 5  # the summaries, the stopping lines

    logged_text = [line for line in text_log if "malformed request" in line or " 404 " in line]
    summaries = [line for line in text_log if "left out of the log" in line]
    left_out = sum(int(line.split(" more ")[0].rsplit(" ", 1)[1]) for line in summaries)
    assert 0 < len(logged_text) <= 20 and len(logged_text) + left_out == sent
    assert len(text_log) <= len(logged_text) + 5
    print(f"{sent} bad requests: {len(text_log)} text log lines, {len(json_log)} JSON lines")
