"""Replays against a real handler that verifies like the FastAPI example in Pivotal's docs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hooktap.home import history_db
from hooktap.pivotal.signing import signed_headers
from hooktap.records import Attempt, Delivery
from hooktap.replay import FORCED, NotGenuine, check_options, describe_replay, replay
from hooktap.store import AmbiguousId, Store
from support.history import another_writer, finish, longest_stall, record
from support.servers import running_listener, running_relay, serve
from support.verifying import BODY, VerifyingHandler, stored_delivery
from test_pivotal_path import _hooktap as hooktap  # the CLI in its own process, awaited


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
    record(store, delivery)
    finish(
        store,
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


async def test_replay_waits_for_a_busy_history_off_the_event_loop(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    """With another process mid-write, recording the replay waits on SQLite's busy timeout:
    on a worker thread (the listener's history thread in `hooktap listen`), never on the
    event loop that forwards deliveries and draws the inspector."""
    original = stored_delivery(secret, handler.url + "/webhooks/pivotal")
    with store_with(tmp_path, original) as store:
        with another_writer(store.path, 0.8):
            attempt, stall = await longest_stall(replay(store, "dlv_01", secret=secret))
        assert stall < 0.4, f"the event loop stalled {stall:.2f} s"
        assert attempt.status == 200 and attempt.id is not None
        assert [a.kind for a in store.attempts("dlv_01")] == ["forward", "replay"]


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
        record(store, stored_delivery(secret, "", id="dlv_02"))
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


# --- the re-signing rule: only a genuine original is re-signed --------------------------------

TAMPERED = BODY.replace(b'"name":"Acme"', b'"name":"Acme","health_score":99')


def forged(secret: str, target: str, **kwargs: object) -> Delivery:
    """Pivotal's signed headers with another body: what anyone can post to the public URL."""
    d = stored_delivery(secret, target, **kwargs)  # type: ignore[arg-type]
    d.body, d.signature, d.signature_reason = TAMPERED, "invalid", "no signature matches"
    return d


async def test_a_forged_delivery_is_not_re_signed_and_nothing_is_sent(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    with store_with(tmp_path, forged(secret, handler.url)) as store:
        with pytest.raises(NotGenuine) as refused:
            await replay(store, "dlv_01", secret=secret)
        assert refused.value.reason == "no signature matches the secret"
        assert "would make it look genuine to your handler" in str(refused.value)
        # Edited, it is still the forged original that decides.
        with pytest.raises(NotGenuine):
            await replay(store, "dlv_01", secret=secret, body=BODY)
        with pytest.raises(NotGenuine):
            await replay(store, "dlv_01", secret=secret, new_id=True)
        assert handler.seen == []
        assert [a.kind for a in store.attempts("dlv_01")] == ["forward"]


async def test_force_re_signs_it_and_says_so(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    with store_with(tmp_path, forged(secret, handler.url)) as store:
        attempt = await replay(store, "dlv_01", secret=secret, force=True)
        assert attempt.status == 200  # the handler takes it: what --force is for, and warns of
        assert handler.seen[0].body == TAMPERED
        assert attempt.note == f"{FORCED} (no signature matches the secret)"
        assert store.attempts("dlv_01")[-1].note == attempt.note
        edited = await replay(store, "dlv_01", secret=secret, body=BODY, force=True, new_id=True)
        assert edited.status == 200
        assert (
            edited.note == f"edited body, {FORCED} (no signature matches the secret), new svix-id"
        )


async def test_a_forged_delivery_without_a_secret_or_as_is_keeps_its_bad_signature(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    """Nothing is re-signed, so nothing is laundered: it goes, and the handler rejects it."""
    with store_with(tmp_path, forged(secret, handler.url)) as store:
        plain = await replay(store, "dlv_01")
        as_is = await replay(store, "dlv_01", secret=secret, as_is=True)
        assert [plain.status, as_is.status] == [401, 401]
        assert "already invalid on arrival" in plain.note and "as-is:" in as_is.note
        assert [s.body for s in handler.seen] == [TAMPERED, TAMPERED]


async def test_the_rule_is_decided_now_with_the_secret_given_now(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    other = "whsec_" + "B" * 32
    genuine = stored_delivery(secret, handler.url)
    genuine.signature = "no-secret"  # the listener had no secret then: check it now
    with store_with(tmp_path, genuine) as store:
        attempt = await replay(store, "dlv_01", secret=secret)
        assert (attempt.status, attempt.note) == (200, "re-signed")
        with pytest.raises(NotGenuine, match="no signature matches"):
            await replay(store, "dlv_01", secret=other)  # stored "valid" or not: not this one's
        tampered = forged(secret, handler.url, id="dlv_02")
        tampered.signature = "no-secret"
        record(store, tampered)
        with pytest.raises(NotGenuine):
            await replay(store, "dlv_02", secret=secret)
        assert len(handler.seen) == 1


async def test_broken_svix_headers_are_refused_with_the_reason(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    broken = stored_delivery(secret, handler.url)
    broken.headers = [(n, v) for n, v in broken.headers if n != "svix-timestamp"]
    unsigned = stored_delivery(secret, handler.url, id="dlv_02", signed=False)
    with store_with(tmp_path, broken) as store:
        record(store, unsigned)
        with pytest.raises(NotGenuine, match="missing svix-timestamp header"):
            await replay(store, "dlv_01", secret=secret)
        # Signature headers typed into an unsigned delivery's edit are a forgery too.
        typed = [*unsigned.headers, ("svix-id", "msg_x"), ("svix-timestamp", "1")]
        typed.append(("svix-signature", "v1,AAAA"))
        with pytest.raises(NotGenuine, match="no svix-id, svix-timestamp or svix-signature"):
            await replay(store, "dlv_02", secret=secret, headers=typed)
        assert handler.seen == []


def test_force_refuses_what_it_cannot_do(secret: str) -> None:
    with pytest.raises(ValueError, match="needs the endpoint secret"):
        check_options(secret=None, as_is=False, new_id=False, force=True)
    with pytest.raises(ValueError, match="nothing to force"):
        check_options(secret=secret, as_is=True, new_id=False, force=True)


def test_describe_what_a_re_send_of_a_forged_delivery_would_do(secret: str) -> None:
    bad = forged(secret, "x")
    # The inspector knows only that a secret is set: the stored verdict stands in.
    assert describe_replay(bad, secret_known=True) == (
        "re-signed only if you confirm (or with --force): its original signature did not "
        "match the secret (no signature matches)"
    )
    # With the secret, the original itself is checked, whatever was stored.
    assert "(no signature matches the secret)" in describe_replay(
        bad, secret_known=True, secret=secret
    )
    bad.signature = "valid"
    assert "only if you confirm" in describe_replay(bad, secret_known=True, secret=secret)
    genuine = stored_delivery(secret, "x")
    genuine.signature, genuine.signature_reason = "invalid", "checked with an old secret"
    assert describe_replay(genuine, secret_known=True, secret=secret) == "re-signed"
    expired = stored_delivery(secret, "x")
    expired.signature = "expired"
    expired.signature_reason = "timestamp 1 h old; the signature does not match either (x)"
    assert "only if you confirm" in describe_replay(expired, secret_known=True)
    expired.signature_reason = "timestamp 1 h old; the signature itself matches the secret"
    assert describe_replay(expired, secret_known=True) == "re-signed"
    assert describe_replay(bad, secret_known=True, secret=secret, force=True).startswith(FORCED)


# --- end to end: a forgery through the relay and listener, then `hooktap replay` ----------------
# Everything real: the relay (make_app), the Listener, the verifying handler, the SQLite history
# and the hooktap CLI as a separate process.


async def record_two(tmp_path: Path, handler: VerifyingHandler, secret: str) -> dict[str, str]:
    """Post a forged and a genuine-but-old delivery through a real relay and listener; return
    the stored ids by verdict."""
    async with (
        running_relay(tmp_path / "relay") as relay_url,
        running_listener(
            relay_url, handler.url + "/webhooks/pivotal", history_db(), secret=secret
        ) as live,
        aiohttp.ClientSession() as http,
    ):
        # Pivotal's real headers for one body, sent with another: anyone can do this.
        fresh = signed_headers(secret, BODY, msg_id="msg_forged")
        # A genuine delivery signed an hour ago (held, or a test of an old event).
        old = signed_headers(secret, BODY, msg_id="msg_old", timestamp=int(time.time()) - 3600)
        for headers, body in ((fresh, TAMPERED), (old, BODY)):
            async with http.post(live.webhook_url, data=body, headers=headers) as resp:
                assert resp.status == 401  # the handler's svix check refused both
    with Store(history_db()) as store:
        return {row.signature: row.id for row in store.query()}


async def test_forged_delivery_is_refused_and_a_genuine_old_one_is_re_signed(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    ids = await record_two(tmp_path, handler, secret)
    assert set(ids) == {"invalid", "expired"}
    before = len(handler.seen)

    code, out, err = await hooktap("replay", ids["invalid"], "--secret", secret)
    assert code == 2, (out, err)
    assert "its original signature did not match the secret: no signature matches" in err
    assert "look genuine to your handler" in err and "--force" in err
    assert "Traceback" not in err
    assert len(handler.seen) == before  # the handler received nothing

    code, out, err = await hooktap("replay", ids["expired"], "--secret", secret, "--json")
    assert code == 0, (out, err)
    result = json.loads(out)
    assert (result["status"], result["note"]) == (200, "re-signed")
    assert handler.seen[-1].status == 200 and handler.seen[-1].body == BODY
    assert handler.header(len(handler.seen) - 1, "svix-id") == "msg_old"

    with Store(history_db()) as store:  # the refusal left no trace; the replay did
        assert [a.kind for a in store.attempts(ids["invalid"])] == ["forward"]
        assert [a.kind for a in store.attempts(ids["expired"])] == ["forward", "replay"]


async def test_force_sends_it_re_signed_and_the_note_says_forced(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    ids = await record_two(tmp_path, handler, secret)
    code, out, err = await hooktap("replay", ids["invalid"], "--secret", secret, "--force")
    assert code == 0, (out, err)
    assert "forced: re-signed although its original signature did not match" in out
    assert handler.seen[-1].body == TAMPERED and handler.seen[-1].status == 200
    with Store(history_db()) as store:
        assert store.attempts(ids["invalid"])[-1].note.startswith("forced: ")


async def test_bulk_replay_skips_the_forged_one_and_counts_it(
    tmp_path: Path, handler: VerifyingHandler, secret: str
) -> None:
    ids = await record_two(tmp_path, handler, secret)
    before = len(handler.seen)
    code, out, err = await hooktap("replay", "--since", "1h", "--secret", secret)
    assert code == 1, (out, err)  # not everything was sent
    assert f"{ids['invalid']}  not sent: its original signature did not match the secret" in out
    assert "--force re-signs it anyway" in out
    assert f"{ids['expired']}  " in out and "  200  " in out
    assert "Replayed 1: 1 got a 2xx, 0 did not. Skipped 1 whose original signature" in err
    assert [s.body for s in handler.seen[before:]] == [BODY]

    code, out, err = await hooktap("replay", "--since", "1h", "--secret", secret, "--force")
    assert code == 0, (out, err)
    assert "Replayed 2: 2 got a 2xx, 0 did not." in err
    assert [s.body for s in handler.seen[before + 1 :]] == [TAMPERED, BODY]


async def test_edit_of_a_forged_delivery_is_refused_before_the_editor_opens(
    tmp_path: Path, handler: VerifyingHandler, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await record_two(tmp_path, handler, secret)
    marker = tmp_path / "editor-ran"
    script = tmp_path / "editor.py"
    script.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    code, _, err = await hooktap("replay", ids["invalid"], "--edit", "--secret", secret)
    assert code == 2 and "--force" in err
    assert not marker.exists()
    body = tmp_path / "genuine.json"
    body.write_bytes(BODY)  # even the genuine body: it is the original that decides
    code, _, err = await hooktap(
        "replay", ids["invalid"], "--body-file", str(body), "--secret", secret
    )
    assert code == 2 and "--force" in err
