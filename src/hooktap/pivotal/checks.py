"""`hooktap check`: hold a local handler to Pivotal's rules, over real HTTP.

Each check sends one or two deliveries the way Pivotal (through Svix) would, good or deliberately
broken, and compares what the handler answered with what Pivotal needs: a 2xx within 10 s for a
genuine delivery (anything else means retries), a 4xx for anything forged or stale (a 5xx
would be retried for a day, a 2xx means the handler trusts forgeries).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from hooktap.pivotal import catalog
from hooktap.pivotal.signing import parse_secret, sign, signed_headers

Headers = list[tuple[str, str]]
LIMIT_S = 10.0  # Pivotal's rule: answer within 10 seconds
STALE_S = 6 * 60  # one minute past the 5-minute tolerance
EVENT = "customer.updated"
# Characters a re-serializer rewrites (see catalog.encode), in a realistic customer name.
NAME = "Zürich Freight <EU> & Co"


@dataclass(frozen=True)
class CheckResult:
    """One rule: what Pivotal expects of the handler and what the handler actually did."""

    name: str
    passed: bool
    expected: str
    got: str


@dataclass(frozen=True)
class _Reply:
    status: int | None
    duration_s: float
    body: str = ""
    error: str | None = None

    def describe(self) -> str:
        if self.status is None:
            return f"no response ({self.error})"
        text = f"{self.status} in {self.duration_s * 1000:.0f} ms"
        return f"{text}: {self.body}" if self.body else text


ACCEPT = "2xx within 10 s"
REJECT = "4xx (e.g. 400 or 401)"


class _Run:
    """The state one run shares: the session, the target, the secret, the clock."""

    def __init__(self, session: aiohttp.ClientSession, url: str, secret: str, timeout: float):
        self.session = session
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def event(self, **overrides: str) -> tuple[dict[str, Any], bytes]:
        doc = catalog.sample(EVENT, {"data.object.name": json.dumps(NAME), **overrides})
        return doc, catalog.encode(doc)

    async def send(self, headers: Headers, body: bytes) -> _Reply:
        started = time.monotonic()
        try:
            async with self.session.post(
                self.url,
                data=body,
                headers=headers,
                allow_redirects=False,  # Svix does not follow redirects either
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                raw = await resp.read()
                text = raw[:120].decode("utf-8", "replace").strip().replace("\n", " ")
                return _Reply(resp.status, time.monotonic() - started, text)
        except TimeoutError:
            return _Reply(
                None, time.monotonic() - started, error=f"no answer in {self.timeout:g} s"
            )
        except aiohttp.ClientError as exc:
            return _Reply(None, time.monotonic() - started, error=str(exc) or type(exc).__name__)


def _accepted(reply: _Reply) -> str | None:
    """None when Pivotal would count this as delivered, else what went wrong."""
    if reply.status is None:
        return f"{reply.describe()}; Pivotal would retry"
    if not 200 <= reply.status <= 299:
        return f"{reply.describe()}; Pivotal would retry it"
    if reply.duration_s > LIMIT_S:
        return f"{reply.describe()}; too slow, Pivotal would time out and retry"
    return None


def _rejected(reply: _Reply) -> str | None:
    """None when the handler refused the delivery the way Pivotal needs, else what it did."""
    if reply.status is None:
        return f"{reply.describe()}; reject it quickly instead"
    if 200 <= reply.status <= 299:
        return f"{reply.describe()}; the handler accepted a delivery it should refuse"
    if reply.status >= 500:
        return f"{reply.describe()}; a 5xx makes Pivotal retry it for a day, answer 4xx"
    if not 400 <= reply.status <= 499:
        return f"{reply.describe()}; answer 4xx"
    return None


def _result(name: str, expected: str, got: str, problem: str | None) -> CheckResult:
    return CheckResult(name, problem is None, expected, problem or got)


async def _signed(run: _Run) -> CheckResult:
    _, body = run.event()
    reply = await run.send(signed_headers(run.secret, body), body)
    return _result("signed delivery", ACCEPT, reply.describe(), _accepted(reply))


async def _tampered(run: _Run) -> CheckResult:
    doc, body = run.event()
    headers = signed_headers(run.secret, body)
    doc["data"]["object"]["health_score"] += 1
    forged = catalog.encode(doc)
    reply = await run.send(headers, forged)
    return _result(
        "tampered body", f"{REJECT}: body changed after signing", reply.describe(), _rejected(reply)
    )


async def _wrong_signature(run: _Run) -> CheckResult:
    _, body = run.event()
    headers = signed_headers(run.secret, body)
    other = parse_secret("whsec_" + "QUFB" * 8)  # a well-formed secret that is not theirs
    msg_id, ts = dict(headers)["svix-id"], int(dict(headers)["svix-timestamp"])
    forged = [
        (n, sign(other, msg_id, ts, body) if n == "svix-signature" else v) for n, v in headers
    ]
    reply = await run.send(forged, body)
    return _result(
        "wrong signature",
        f"{REJECT}: signed with another secret",
        reply.describe(),
        _rejected(reply),
    )


def _missing(header: str) -> Callable[[_Run], Awaitable[CheckResult]]:
    async def check(run: _Run) -> CheckResult:
        _, body = run.event()
        headers = [(n, v) for n, v in signed_headers(run.secret, body) if n != header]
        reply = await run.send(headers, body)
        return _result(
            f"missing {header}", f"{REJECT}: no {header} header", reply.describe(), _rejected(reply)
        )

    return check


async def _stale(run: _Run) -> CheckResult:
    _, body = run.event()
    headers = signed_headers(run.secret, body, timestamp=int(time.time()) - STALE_S)
    reply = await run.send(headers, body)
    return _result(
        "timestamp 6 min old",
        f"{REJECT}: correctly signed, but outside the 5-minute tolerance (replay attack)",
        reply.describe(),
        _rejected(reply),
    )


async def _reserialized(run: _Run) -> CheckResult:
    doc, body = run.event()
    headers = signed_headers(run.secret, body)
    pretty = json.dumps(doc, indent=2).encode()  # same JSON value, other bytes
    reply = await run.send(headers, pretty)
    return _result(
        "re-serialized body",
        f"{REJECT}: same JSON with other whitespace, original signature; "
        "verify the raw bytes, not re-stringified JSON",
        reply.describe(),
        _rejected(reply),
    )


async def _duplicate(run: _Run) -> CheckResult:
    _, body = run.event()
    first_headers = signed_headers(run.secret, body)
    msg_id = dict(first_headers)["svix-id"]
    first = await run.send(first_headers, body)
    # A retry: same svix-id and body, signed afresh at the time of the new attempt.
    second = await run.send(signed_headers(run.secret, body, msg_id=msg_id), body)
    problem = _accepted(first)
    if problem:
        problem = f"first delivery: {problem}"
    elif problem := _accepted(second):
        problem = f"second delivery of the same svix-id: {problem}"
    return _result(
        "same svix-id twice",
        f"{ACCEPT} both times (retries repeat the id; skip the work, still answer 2xx)",
        f"{first.describe()}, then {second.describe()}",
        problem,
    )


async def _out_of_order(run: _Run) -> CheckResult:
    older_doc, older = run.event()
    newer_doc, _ = run.event()
    newer_doc["created_at"] = _later(older_doc["created_at"])
    newer_doc["data"]["object"]["updated_at"] = newer_doc["created_at"]
    newer_doc["data"]["object"]["health_score"] = 40
    newer = catalog.encode(newer_doc)
    first = await run.send(signed_headers(run.secret, newer), newer)
    second = await run.send(signed_headers(run.secret, older), older)
    problem = _accepted(first)
    if problem:
        problem = f"newer event (sent first): {problem}"
    elif problem := _accepted(second):
        problem = f"older event (sent second): {problem}"
    return _result(
        "out-of-order events",
        f"{ACCEPT} for both (order is best-effort; read state from data.object, do not refuse)",
        f"{first.describe()}, then {second.describe()}",
        problem,
    )


def _later(iso: str) -> str:
    """An ISO timestamp one minute after `iso`, in the same Z form."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(minutes=1)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


CHECKS: tuple[Callable[[_Run], Awaitable[CheckResult]], ...] = (
    _signed,
    _tampered,
    _wrong_signature,
    _missing("svix-id"),
    _missing("svix-timestamp"),
    _missing("svix-signature"),
    _stale,
    _reserialized,
    _duplicate,
    _out_of_order,
)


async def run_checks(target_url: str, secret: str, timeout: float = LIMIT_S) -> list[CheckResult]:
    """Run every check against `target_url`, in order, one request at a time.

    Sequential on purpose: the duplicate and ordering checks are about sequence, and a dev
    server handling one request at a time should not fail for being hit in parallel. Raises
    InvalidSecret for a bad secret; handler failures are results, never exceptions.
    """
    key = parse_secret(secret)
    # A fresh connection per delivery, as a webhook sender makes: a pooled keep-alive
    # connection that the handler closed after a 500 would fail the next check spuriously.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        run = _Run(session, target_url, key, timeout)
        results = []
        for check in CHECKS:
            results.append(await check(run))
        return results
