"""`hooktap check`: hold a local handler to Pivotal's rules, over real HTTP.

Each check sends one or two deliveries the way Pivotal (through Svix) would, good or deliberately
broken, and compares what the handler answered with what Pivotal needs: a 2xx within 10 s for a
genuine delivery (anything else, a 4xx included, is retried: see retries.py), and a refusal for
anything forged or stale, which Pivotal never sent: a 4xx, as Pivotal's example answers 401.

What it cannot see, it does not judge. A refusal counts only when the same URL accepted the
genuine delivery: a wrong path answers 404 to everything, forged or not. And whether a handler
did a retried message's work twice happens inside it (its database, its emails): the report
says which answers it saw and that the rest is unknown, never that the handler is idempotent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from hooktap.pivotal import catalog
from hooktap.pivotal.retries import failure
from hooktap.pivotal.rules import path_advice
from hooktap.pivotal.signing import parse_secret, sign, signed_headers
from hooktap.records import Headers

LIMIT_S = 10.0  # Pivotal's rule: answer within 10 seconds
STALE_S = 6 * 60  # one minute past the 5-minute tolerance
EVENT = "customer.updated"  # the event checked with, unless a route takes other types
# Characters a re-serializer rewrites (see catalog.encode), in a realistic customer name.
NAME = "Zürich Freight <EU> & Co"
# Where each record keeps a name-like text, to carry NAME: the first of these it has.
_TEXT_FIELDS = ("name", "title", "first_name", "message")

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"


@dataclass(frozen=True)
class CheckResult:
    """One rule: what Pivotal expects of the handler and what the handler actually did.

    `verdict` is pass, fail, or unknown when what hooktap can see does not decide it."""

    name: str
    verdict: str
    expected: str
    got: str

    @property
    def passed(self) -> bool:
        return self.verdict == PASS


@dataclass(frozen=True)
class Report:
    """Every check's result, and, when the target itself looks wrong, why and what to try."""

    url: str
    results: list[CheckResult]
    diagnosis: str | None

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.results)


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

    @property
    def is_2xx(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299


ACCEPT = "2xx within 10 s"
REJECT = "4xx (e.g. 400 or 401)"


class _Run:
    """The state one run shares: the session, the target, the secret, the clock, and every
    answer seen (for the diagnosis)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        secret: str,
        timeout: float,
        event_type: str,
    ):
        self.session = session
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.event_type = event_type
        self.replies: list[_Reply] = []

    def event(self) -> tuple[dict[str, Any], bytes]:
        doc = catalog.sample(self.event_type)
        record = doc["data"]["object"]
        if field := _text_field(record):
            record[field] = NAME
        return doc, catalog.encode(doc)

    async def send(self, headers: Headers, body: bytes) -> _Reply:
        reply = await self._send(headers, body)
        self.replies.append(reply)
        return reply

    async def _send(self, headers: Headers, body: bytes) -> _Reply:
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


def _text_field(record: dict[str, Any]) -> str | None:
    return next((k for k in _TEXT_FIELDS if isinstance(record.get(k), str)), None)


def _accepted(reply: _Reply) -> str | None:
    """None when Pivotal would count this as delivered, else what went wrong."""
    why = failure(reply.status, reply.duration_s * 1000, reply.error)
    if why is None:
        return None
    if reply.status is None:
        return f"{reply.describe()}; Pivotal would retry"
    return f"{reply.describe()}; Pivotal would retry it ({why})"


def _rejected(reply: _Reply) -> str | None:
    """None when the handler refused the delivery the way Pivotal needs, else what it did."""
    if reply.status is None:
        return f"{reply.describe()}; reject it quickly instead"
    if reply.is_2xx:
        return f"{reply.describe()}; the handler accepted a delivery it should refuse"
    if reply.status >= 500:
        return (
            f"{reply.describe()}; a 5xx says the handler failed on it, not that it refused "
            "it: check the signature first and answer 4xx (Pivotal's example answers 401)"
        )
    if not 400 <= reply.status <= 499:
        return f"{reply.describe()}; answer 4xx"
    return None


def _result(name: str, expected: str, got: str, problem: str | None) -> CheckResult:
    return CheckResult(name, FAIL if problem else PASS, expected, problem or got)


async def _signed(run: _Run) -> tuple[CheckResult, _Reply]:
    _, body = run.event()
    reply = await run.send(signed_headers(run.secret, body), body)
    return _result("signed delivery", ACCEPT, reply.describe(), _accepted(reply)), reply


# --- deliveries Pivotal never sends: each should be refused -----------------------------------


@dataclass(frozen=True)
class _Forgery:
    name: str
    what: str  # what is wrong with it, after "4xx: "
    make: Callable[[_Run], tuple[Headers, bytes]]


def _tampered(run: _Run) -> tuple[Headers, bytes]:
    doc, body = run.event()
    headers = signed_headers(run.secret, body)
    record = doc["data"]["object"]
    if isinstance(record.get("health_score"), int):
        record["health_score"] += 1
    elif field := _text_field(record):
        record[field] += " (edited)"
    else:
        doc["created_at"] = _later(doc["created_at"])
    return headers, catalog.encode(doc)


def _wrong_signature(run: _Run) -> tuple[Headers, bytes]:
    _, body = run.event()
    headers = signed_headers(run.secret, body)
    other = parse_secret("whsec_" + "QUFB" * 8)  # a well-formed secret that is not theirs
    msg_id, ts = dict(headers)["svix-id"], int(dict(headers)["svix-timestamp"])
    forged = [
        (n, sign(other, msg_id, ts, body) if n == "svix-signature" else v) for n, v in headers
    ]
    return forged, body


def _missing(header: str) -> _Forgery:
    def make(run: _Run) -> tuple[Headers, bytes]:
        _, body = run.event()
        return [(n, v) for n, v in signed_headers(run.secret, body) if n != header], body

    return _Forgery(f"missing {header}", f"no {header} header", make)


def _stale(run: _Run) -> tuple[Headers, bytes]:
    _, body = run.event()
    return signed_headers(run.secret, body, timestamp=int(time.time()) - STALE_S), body


def _reserialized(run: _Run) -> tuple[Headers, bytes]:
    doc, body = run.event()
    headers = signed_headers(run.secret, body)
    return headers, json.dumps(doc, indent=2).encode()  # same JSON value, other bytes


FORGERIES: tuple[_Forgery, ...] = (
    _Forgery("tampered body", "body changed after signing", _tampered),
    _Forgery("wrong signature", "signed with another secret", _wrong_signature),
    _missing("svix-id"),
    _missing("svix-timestamp"),
    _missing("svix-signature"),
    _Forgery(
        "timestamp 6 min old",
        "correctly signed, but outside the 5-minute tolerance (replay attack)",
        _stale,
    ),
    _Forgery(
        "re-serialized body",
        "same JSON with other whitespace, original signature; "
        "verify the raw bytes, not re-stringified JSON",
        _reserialized,
    ),
)


async def _refusal(run: _Run, forgery: _Forgery, genuine: _Reply) -> CheckResult:
    headers, body = forgery.make(run)
    reply = await run.send(headers, body)
    expected = f"{REJECT}: {forgery.what}"
    if not reply.is_2xx and not genuine.is_2xx:
        # The same URL refused the genuine delivery too: this refusal says nothing about
        # signature checks (a wrong path answers 404 to everything).
        return CheckResult(
            forgery.name,
            UNKNOWN,
            expected,
            f"{reply.describe()}; not counted as a refusal: the genuine delivery was "
            f"refused too ({genuine.describe()})",
        )
    return _result(forgery.name, expected, reply.describe(), _rejected(reply))


# --- sequences: a retry, and events out of order ----------------------------------------------


async def _retry(run: _Run) -> list[CheckResult]:
    doc, body = run.event()
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
    seen = f"{first.describe()}, then {second.describe()}"
    answered = _result(
        "retry answered 2xx",
        f"{ACCEPT} both times for the same svix-id (a non-2xx makes Pivotal retry again)",
        seen,
        problem,
    )
    if first.is_2xx and second.is_2xx:
        unseen = (
            f"cannot be seen from here: event {doc['id']} went twice with svix-id {msg_id} "
            f"and got 2xx both times ({seen}), as it would if the work was done twice. "
            f"Check your handler's side effects (rows, emails) for {doc['id']} happened once"
        )
    else:
        unseen = f"not judged: the handler did not accept both deliveries ({seen})"
    once = CheckResult(
        "retry processed once",
        UNKNOWN,
        "the second delivery's work skipped: every retry carries the same id",
        unseen,
    )
    return [answered, once]


async def _out_of_order(run: _Run) -> CheckResult:
    older_doc, older = run.event()
    newer_doc, _ = run.event()
    newer_doc["created_at"] = _later(older_doc["created_at"])
    record = newer_doc["data"]["object"]
    if "updated_at" in record:
        record["updated_at"] = newer_doc["created_at"]
    if "health_score" in record:
        record["health_score"] = 40
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


def _diagnose(url: str, genuine: _Reply, replies: list[_Reply]) -> str | None:
    """When the genuine delivery was not accepted, why the target looks wrong and what to try;
    None when it was."""
    if genuine.is_2xx:
        return None
    if all(r.status is None for r in replies):
        return f"nothing answered at {url} ({genuine.error}): is your handler running?"
    status = genuine.status
    if status is None:
        return f"the genuine delivery got no answer ({genuine.error}): is your handler running?"
    every = "every request" if {r.status for r in replies} == {status} else "the genuine delivery"
    said = f"{every} got {status}"
    if advice := path_advice(status, url, "try"):
        return f"{said}: {advice}"
    if status in (400, 401, 403):
        return (
            f"{said}, though it was signed with the secret you gave: is that the endpoint's "
            "signing secret your handler verifies with? A handler that verifies re-serialized "
            "JSON instead of the raw body refuses everything too"
        )
    if 300 <= status <= 399:
        return (
            f"{said}, a redirect: Pivotal does not follow redirects, so point --forward at "
            "the URL it redirects to"
        )
    if status >= 500:
        return (
            f"{said}: your handler fails on a genuine delivery; its log says why (the record "
            "is in data.object)"
        )
    return f"{said}: the target does not accept Pivotal's deliveries"


async def run_checks(
    target_url: str, secret: str, timeout: float = LIMIT_S, event_type: str = EVENT
) -> Report:
    """Run every check against `target_url`, in order, one request at a time, each delivery
    a sample of `event_type` (a catalog type: a route's handler may know only its own).

    Sequential on purpose: the retry and ordering checks are about sequence, and a dev
    server handling one request at a time should not fail for being hit in parallel. Raises
    InvalidSecret for a bad secret; handler failures are results, never exceptions.
    """
    key = parse_secret(secret)
    # A fresh connection per delivery, as a webhook sender makes: a pooled keep-alive
    # connection that the handler closed after a 500 would fail the next check spuriously.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        run = _Run(session, target_url, key, timeout, event_type)
        signed, genuine = await _signed(run)
        results = [signed]
        for forgery in FORGERIES:
            results.append(await _refusal(run, forgery, genuine))
        results.extend(await _retry(run))
        results.append(await _out_of_order(run))
        return Report(target_url, results, _diagnose(target_url, genuine, run.replies))
