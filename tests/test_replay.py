"""Replays against a real handler that verifies like the FastAPI example in Pivotal's docs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from hooktap.records import Attempt, Delivery
from hooktap.replay import describe_replay, replay
from hooktap.store import AmbiguousId, Store
from support.servers import serve
from support.verifying import BODY, VerifyingHandler, stored_delivery


@pytest.fixture
async def handler(secret: str) -> AsyncIterator[VerifyingHandler]:
    h = VerifyingHandler(secret)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", h.handle)
    async with serve(app) as url:
        h.url = url
        yield h


def store_with(tmp_path: Path, delivery: Delivery) -> Store:
    store = Store(tmp_path / "history.db")
    store.add_delivery(delivery)
    store.finish(
        delivery.id,
        Attempt(
            delivery_id=delivery.id,
            kind="forward",
            started_at=delivery.received_at,
            target_url=delivery.target + "/tail?x=1",
            status=503,
            response_body=b"down",
            duration_ms=4.0,
        ),
    )
    return store


async def test_resigned_replay_passes_verification(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    original = stored_delivery(secret, handler.url + "/webhooks/pivotal")
    with store_with(tmp_path, original) as store:
        attempt = await replay(store, "dlv_01", secret=secret)
        assert attempt.status == 200
        assert attempt.error is None
        assert attempt.kind == "replay"
        assert attempt.note == "re-signed"
        assert attempt.target_url == handler.url + "/webhooks/pivotal/tail?x=1"
        seen = handler.seen[0]
        assert seen.path_qs == "/webhooks/pivotal/tail?x=1"
        assert seen.body == BODY
        assert handler.header(0, "svix-id") == "msg_original"  # kept: same message
        assert abs(int(handler.header(0, "svix-timestamp")) - time.time()) < 5
        # Order and case survive the re-signing.
        names = [n for n, _ in seen.headers]
        assert names.index("X-Trace") > names.index("svix-signature")
        assert names.index("Content-Type") < names.index("X-Trace")


async def test_as_is_is_rejected_and_says_why(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    original = stored_delivery(secret, handler.url)
    with store_with(tmp_path, original) as store:
        attempt = await replay(store, "dlv_01", secret=secret, as_is=True)
        assert attempt.status == 401
        assert attempt.note.startswith("as-is: the handler will see a stale (expired) signature")
        stored_sig = next(v for n, v in original.headers if n == "svix-signature")
        assert handler.header(0, "svix-signature") == stored_sig
        assert handler.header(0, "svix-timestamp") == next(
            v for n, v in original.headers if n == "svix-timestamp"
        )


async def test_without_secret_sends_stored_signature(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    with store_with(tmp_path, stored_delivery(secret, handler.url)) as store:
        attempt = await replay(store, "dlv_01")
        assert attempt.status == 401
        assert attempt.note.startswith(
            "no secret: sent with the stored signature; the handler will see a stale (expired)"
        )


async def test_edited_body_is_resigned_and_recorded(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    edited = BODY.replace(b"Acme", b"Acme Corporation")
    with store_with(tmp_path, stored_delivery(secret, handler.url)) as store:
        attempt = await replay(store, "dlv_01", secret=secret, body=edited)
        assert attempt.status == 200
        assert attempt.note == "edited body, re-signed"
        assert handler.seen[0].body == edited
        assert handler.header(0, "content-length") == str(len(edited))
        assert store.attempts("dlv_01")[-1].request_body == edited
        assert store.get("dlv_01").body == BODY  # the original is untouched


async def test_edited_body_as_is_fails_and_says_invalid(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    edited = BODY.replace(b"Acme", b"Other")
    with store_with(tmp_path, stored_delivery(secret, handler.url, age=10)) as store:
        attempt = await replay(store, "dlv_01", body=edited, as_is=True)
        assert attempt.status == 401
        assert "invalid signature (the body changed" in attempt.note
        assert handler.header(0, "content-length") == str(len(edited))


async def test_new_id(tmp_path: Path, handler: VerifyingHandler, secret: str) -> None:
    with store_with(tmp_path, stored_delivery(secret, handler.url)) as store:
        attempt = await replay(store, "dlv_01", secret=secret, new_id=True)
        assert attempt.status == 200
        assert attempt.note == "re-signed, new svix-id"
        new = handler.header(0, "svix-id")
        assert new != "msg_original" and new.startswith("msg_")
        assert ("svix-id", new) in attempt.request_headers


async def test_attempts_accumulate_and_original_is_never_overwritten(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    original = stored_delivery(secret, handler.url)
    with store_with(tmp_path, original) as store:
        before = store.get("dlv_01")
        first = store.first_attempt("dlv_01")
        await replay(store, "dlv_01", secret=secret)
        await replay(store, "dlv_", secret=secret, as_is=True)  # a unique prefix works too
        await replay(store, "dlv_01", secret=secret, new_id=True)
        attempts = store.attempts("dlv_01")
        assert [(a.kind, a.status) for a in attempts] == [
            ("forward", 503),
            ("replay", 200),
            ("replay", 401),
            ("replay", 200),
        ]
        assert attempts[0] == first
        assert store.first_attempt("dlv_01") == first
        assert store.get("dlv_01") == before
        summary = store.query()[0]
        assert (summary.status, summary.attempts) == (503, 4)


async def test_target_override_and_unreachable_target(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    with store_with(tmp_path, stored_delivery(secret, "http://127.0.0.1:9")) as store:
        refused = await replay(store, "dlv_01", secret=secret, timeout=2)
        assert refused.status is None
        assert "refused" in refused.error
        ok = await replay(store, "dlv_01", secret=secret, target=handler.url + "/elsewhere")
        assert ok.status == 200
        assert handler.seen[0].path_qs == "/elsewhere/tail?x=1"
        assert [a.status for a in store.attempts("dlv_01")] == [503, None, 200]


async def test_unsigned_delivery_is_not_signed(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    with store_with(tmp_path, stored_delivery(secret, handler.url, signed=False)) as store:
        attempt = await replay(store, "dlv_01", secret=secret)
        assert attempt.note == "unsigned: sent without a signature, as it arrived"
        assert handler.header(0, "svix-signature") is None
        assert attempt.status == 401


async def test_refusals(tmp_path: Path, secret: str) -> None:
    with store_with(tmp_path, stored_delivery(secret, "")) as store:
        store.add_delivery(stored_delivery(secret, "", id="dlv_02"))
        with pytest.raises(LookupError, match="no stored delivery"):
            await replay(store, "nope")
        with pytest.raises(AmbiguousId):
            await replay(store, "dlv_0")
        with pytest.raises(ValueError, match="no stored forward target"):
            await replay(store, "dlv_01", secret=secret)
        with pytest.raises(ValueError, match="forward target"):
            await replay(store, "dlv_01", target="ftp://x")
        with pytest.raises(ValueError, match="whsec_"):
            await replay(store, "dlv_01", target="8000", secret="whsec_short")
        with pytest.raises(ValueError, match="needs re-signing"):
            await replay(store, "dlv_01", target="8000", new_id=True)
        with pytest.raises(ValueError, match="cannot give a new svix-id"):
            await replay(store, "dlv_01", target="8000", secret=secret, as_is=True, new_id=True)
        assert len(store.attempts("dlv_01")) == 1  # nothing was sent, nothing recorded


def test_describe_fresh_and_invalid_signatures(secret: str) -> None:
    fresh = stored_delivery(secret, "x", age=60)
    note = describe_replay(fresh, secret_known=False, as_is=True)
    assert note.startswith("as-is: the handler will see the original signature")
    assert "5-minute window" in note
    bad = stored_delivery(secret, "x", age=60)
    bad.signature = "invalid"
    note = describe_replay(bad, secret_known=True, as_is=True)
    assert "invalid signature (it was already invalid on arrival)" in note
    both = describe_replay(fresh, secret_known=True, body_edited=True, headers_edited=True)
    assert both == "edited body and headers, re-signed"
