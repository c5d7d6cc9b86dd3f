"""`hooktap check` against real handlers on loopback: one right, three wrong in known ways."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from fastapi import FastAPI, HTTPException, Request, Response
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.pivotal.checks import CheckResult, run_checks
from hooktap.pivotal.signing import InvalidSecret
from support.fastapi_app import SECRET, correct_handler, serve

ALL = {
    "signed delivery",
    "tampered body",
    "wrong signature",
    "missing svix-id",
    "missing svix-timestamp",
    "missing svix-signature",
    "timestamp 6 min old",
    "re-serialized body",
    "same svix-id twice",
    "out-of-order events",
}
REJECTIONS = ALL - {"signed delivery", "same svix-id twice", "out-of-order events"}


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


def seed_handler_verbatim() -> FastAPI:
    """Pivotal's FastAPI example as published: headers read with [], only
    WebhookVerificationError caught."""
    app = FastAPI()
    wh = Webhook(SECRET)

    def handle(evt: object) -> None:
        pass

    @app.post("/webhooks/pivotal")
    async def receive(request: Request) -> str:
        body = await request.body()
        try:
            evt = wh.verify(
                body,
                {
                    "svix-id": request.headers["svix-id"],
                    "svix-timestamp": request.headers["svix-timestamp"],
                    "svix-signature": request.headers["svix-signature"],
                },
            )
        except WebhookVerificationError as exc:
            raise HTTPException(401, "invalid signature") from exc
        handle(evt)
        return "ok"

    return app


def failed(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if not r.passed}


async def test_correct_handler_passes_everything() -> None:
    async with serve(correct_handler()) as url:
        results = await run_checks(url, SECRET)
    assert [r.name for r in results] == [
        "signed delivery",
        "tampered body",
        "wrong signature",
        "missing svix-id",
        "missing svix-timestamp",
        "missing svix-signature",
        "timestamp 6 min old",
        "re-serialized body",
        "same svix-id twice",
        "out-of-order events",
    ]
    assert failed(results) == set(), results
    by_name = {r.name: r for r in results}
    assert by_name["signed delivery"].got.startswith("200 in ")
    assert by_name["tampered body"].got.startswith("401 in ")
    assert "duplicate, already handled" in by_name["same svix-id twice"].got


async def test_handler_that_skips_verification_fails_every_rejection() -> None:
    async with serve(trusting_handler()) as url:
        results = await run_checks(url, SECRET)
    assert failed(results) == REJECTIONS
    tampered = next(r for r in results if r.name == "tampered body")
    assert tampered.got.startswith("200 in ")
    assert "accepted a delivery it should refuse" in tampered.got
    assert tampered.expected.startswith("4xx")


async def test_handler_that_reserializes_fails_the_accepting_checks() -> None:
    """It can verify nothing, so it refuses all forgeries (passing those checks by accident)
    and also every genuine delivery."""
    async with serve(reserializing_handler()) as url:
        results = await run_checks(url, SECRET)
    assert failed(results) == {"signed delivery", "same svix-id twice", "out-of-order events"}
    signed = next(r for r in results if r.name == "signed delivery")
    assert signed.got.startswith("401 in ")
    assert "Pivotal would retry" in signed.got
    assert signed.expected == "2xx within 10 s"


async def test_pivotals_own_example_crashes_on_missing_headers() -> None:
    async with serve(seed_handler_verbatim()) as url:
        results = await run_checks(url, SECRET)
    assert failed(results) == {
        "missing svix-id",
        "missing svix-timestamp",
        "missing svix-signature",
    }
    missing = next(r for r in results if r.name == "missing svix-id")
    assert missing.got.startswith("500 in ")
    assert "answer 4xx" in missing.got


async def test_slow_handler_times_out() -> None:
    release = asyncio.Event()
    app = FastAPI()

    @app.post("/webhooks/pivotal")
    async def receive(request: Request) -> Response:
        await release.wait()
        return Response("ok")

    async with serve(app) as url:
        try:
            results = await run_checks(url, SECRET, timeout=0.3)
        finally:
            release.set()
    signed = next(r for r in results if r.name == "signed delivery")
    assert not signed.passed
    assert signed.got.startswith("no response (no answer in 0.3 s)")
    assert failed(results) == ALL


async def test_nothing_listening() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    results = await run_checks(f"http://127.0.0.1:{port}/", SECRET, timeout=2)
    assert failed(results) == ALL
    assert all("no response (Cannot connect to host 127.0.0.1" in r.got for r in results)


async def test_bad_secret_is_refused_before_sending() -> None:
    with pytest.raises(InvalidSecret):
        await run_checks("http://127.0.0.1:9/", "whsec_!!!")
