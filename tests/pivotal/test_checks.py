"""`hooktap check` against real handlers on loopback: Pivotal's own (as published and done
right), and others wrong in known ways, at the right path and at a wrong one."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from fastapi import FastAPI, HTTPException, Request, Response
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.pivotal.checks import FAIL, PASS, UNKNOWN, CheckResult, Report, run_checks
from hooktap.pivotal.signing import InvalidSecret
from support.fastapi_app import SECRET, Handled, correct_handler, docs_handler, serve

NAMES = [
    "signed delivery",
    "tampered body",
    "wrong signature",
    "missing svix-id",
    "missing svix-timestamp",
    "missing svix-signature",
    "timestamp 6 min old",
    "re-serialized body",
    "retry answered 2xx",
    "retry processed once",
    "out-of-order events",
]
ACCEPTING = {"signed delivery", "retry answered 2xx", "out-of-order events"}
REJECTIONS = set(NAMES) - ACCEPTING - {"retry processed once"}


def trusting_handler() -> FastAPI:
    """Skips verification altogether."""
    app = FastAPI()

    @app.post("/webhooks/pivotal")
    async def receive(request: Request) -> Response:
        await request.json()
        return Response("ok")

    return app


def reserializing_handler() -> FastAPI:
    """Parses the JSON, then verifies json.dumps of it: the classic mistake."""
    app = FastAPI()
    wh = Webhook(SECRET)

    @app.post("/webhooks/pivotal")
    async def receive(request: Request) -> Response:
        payload = await request.json()
        try:
            wh.verify(json.dumps(payload), dict(request.headers))
        except WebhookVerificationError as exc:
            raise HTTPException(401, "invalid signature") from exc
        return Response("ok")

    return app


def with_verdict(report: Report, verdict: str) -> set[str]:
    return {r.name for r in report.results if r.verdict == verdict}


def result(report: Report, name: str) -> CheckResult:
    return next(r for r in report.results if r.name == name)


async def test_correct_handler_passes_everything_it_can_be_judged_on() -> None:
    async with serve(correct_handler()) as url:
        report = await run_checks(url, SECRET)
    assert [r.name for r in report.results] == NAMES
    assert with_verdict(report, FAIL) == set(), report.results
    assert with_verdict(report, UNKNOWN) == {"retry processed once"}
    assert report.diagnosis is None
    assert result(report, "signed delivery").got.startswith("200 in ")
    assert result(report, "tampered body").got.startswith("401 in ")
    assert "duplicate, already handled" in result(report, "retry answered 2xx").got


async def test_a_retry_processed_twice_is_never_reported_as_idempotent() -> None:
    """Both of Pivotal's examples process a retry again; `check` cannot see that, so it says
    what it saw and that the rest is unknown, for the deduping handler just the same."""
    verdicts = {}
    for make in (docs_handler, correct_handler):
        handled = Handled()
        async with serve(make(SECRET, handled)) as url:
            report = await run_checks(url, SECRET)
        once = result(report, "retry processed once")
        event_id = once.got.split("event ", 1)[1].split()[0]
        verdicts[make.__name__] = (once.verdict, handled.times(event_id))
        assert "cannot be seen from here" in once.got
        assert "200 in " in once.got and ", then 200 in " in once.got  # what it saw
        assert result(report, "retry answered 2xx").verdict == PASS
        assert not any(r.passed and "processed" in r.name for r in report.results)
    assert verdicts == {"docs_handler": (UNKNOWN, 2), "correct_handler": (UNKNOWN, 1)}


async def test_a_wrong_path_is_not_counted_as_refusals_and_is_named() -> None:
    async with serve(correct_handler()) as url:
        root = url.removesuffix("/webhooks/pivotal") + "/"
        report = await run_checks(root, SECRET)
    assert all("404 in " in r.got for r in report.results)
    assert with_verdict(report, PASS) == set()
    assert with_verdict(report, FAIL) == ACCEPTING
    assert with_verdict(report, UNKNOWN) == REJECTIONS | {"retry processed once"}
    tampered = result(report, "tampered body")
    assert "not counted as a refusal: the genuine delivery was refused too (404" in tampered.got
    netloc = root.removeprefix("http://").rstrip("/")
    assert report.diagnosis == (
        "every request got 404: is the path right? Pivotal's handlers live at "
        f"/webhooks/pivotal; try --forward {netloc}/webhooks/pivotal"
    )


async def test_a_route_without_post_is_named() -> None:
    app = FastAPI()

    @app.get("/webhooks/pivotal")
    async def only_get() -> str:
        return "ok"

    async with serve(app) as url:
        report = await run_checks(url, SECRET)
    assert with_verdict(report, PASS) == set()
    assert report.diagnosis is not None
    assert report.diagnosis.startswith("every request got 405: the route at /webhooks/pivotal")
    assert "does not take POST" in report.diagnosis


async def test_handler_that_skips_verification_fails_every_rejection() -> None:
    async with serve(trusting_handler()) as url:
        report = await run_checks(url, SECRET)
    assert with_verdict(report, FAIL) == REJECTIONS
    tampered = result(report, "tampered body")
    assert tampered.got.startswith("200 in ")
    assert "accepted a delivery it should refuse" in tampered.got
    assert tampered.expected.startswith("4xx")
    assert report.diagnosis is None


async def test_handler_that_reserializes_refuses_everything_and_gets_no_credit() -> None:
    """It can verify nothing, so it refuses forgeries by accident: those refusals are not
    counted, and the report says why the genuine delivery was refused."""
    async with serve(reserializing_handler()) as url:
        report = await run_checks(url, SECRET)
    assert with_verdict(report, FAIL) == ACCEPTING
    assert with_verdict(report, PASS) == set()
    signed = result(report, "signed delivery")
    assert signed.got.startswith("401 in ")
    assert "Pivotal would retry" in signed.got
    assert signed.expected == "2xx within 10 s"
    assert report.diagnosis is not None
    assert report.diagnosis.startswith("every request got 401, though it was signed")
    assert "raw body" in report.diagnosis


async def test_pivotals_published_example_crashes_on_missing_headers() -> None:
    async with serve(docs_handler()) as url:
        report = await run_checks(url, SECRET)
    missing = {"missing svix-id", "missing svix-timestamp", "missing svix-signature"}
    assert with_verdict(report, FAIL) == missing
    got = result(report, "missing svix-id").got
    assert got.startswith("500 in ")
    assert "a 5xx says the handler failed on it, not that it refused it" in got
    assert "answer 4xx" in got
    # Pivotal retries a 4xx as well as a 5xx (retries.py): no advice may say otherwise.
    assert not any("retr" in r.got for r in report.results if r.name in REJECTIONS)


async def test_slow_handler_times_out() -> None:
    release = asyncio.Event()
    app = FastAPI()

    @app.post("/webhooks/pivotal")
    async def receive(request: Request) -> Response:
        await release.wait()
        return Response("ok")

    async with serve(app) as url:
        try:
            report = await run_checks(url, SECRET, timeout=0.3)
        finally:
            release.set()
    signed = result(report, "signed delivery")
    assert not signed.passed
    assert signed.got.startswith("no response (no answer in 0.3 s)")
    assert with_verdict(report, FAIL) == ACCEPTING
    assert with_verdict(report, PASS) == set()
    assert report.diagnosis == (
        f"nothing answered at {url} (no answer in 0.3 s): is your handler running?"
    )


async def test_nothing_listening() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    report = await run_checks(f"http://127.0.0.1:{port}/", SECRET, timeout=2)
    assert with_verdict(report, PASS) == set()
    assert with_verdict(report, FAIL) == ACCEPTING
    judged = [r for r in report.results if r.name != "retry processed once"]
    assert all("no response (Cannot connect to host 127.0.0.1" in r.got for r in judged)
    assert report.diagnosis is not None
    assert report.diagnosis.startswith(f"nothing answered at http://127.0.0.1:{port}/")


async def test_bad_secret_is_refused_before_sending() -> None:
    with pytest.raises(InvalidSecret):
        await run_checks("http://127.0.0.1:9/", "whsec_!!!")
