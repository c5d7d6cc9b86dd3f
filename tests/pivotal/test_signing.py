"""Signing and verification, checked against the svix library itself wherever it can judge."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.pivotal.signing import (
    SVIX_MAX_BODY,
    InvalidSecret,
    Verdict,
    is_signed,
    parse_secret,
    resign,
    sign,
    signed_headers,
    verify,
)

KEY = bytes(range(24))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()
BODY = b'{"id":"evt_1","type":"customer.updated","created_at":"2024-05-01T10:00:00Z","data":{}}'
NOW = 1_714_557_600


def delivery(body: bytes = BODY, ts: int = NOW, msg_id: str = "msg_1") -> list[tuple[str, str]]:
    return signed_headers(SECRET, body, msg_id=msg_id, timestamp=ts)


def svix_accepts(headers: list[tuple[str, str]], body: bytes) -> bool:
    """What a user's handler built on svix would decide (wall clock, 5-minute window)."""
    try:
        Webhook(SECRET).verify(body, dict(headers))
    except (WebhookVerificationError, ValueError):
        return False
    return True


# --- parse_secret ----------------------------------------------------------------------------


def test_parse_secret_accepts_prefixed_and_bare_base64() -> None:
    assert parse_secret(SECRET) == SECRET
    assert parse_secret(SECRET[len("whsec_") :]) == SECRET
    assert parse_secret("  " + SECRET + "\n") == SECRET


def test_parse_secret_adds_missing_padding() -> None:
    key = b"k" * 25  # base64 of 25 bytes ends in "="
    padded = base64.b64encode(key).decode()
    assert padded.endswith("=")
    assert parse_secret("whsec_" + padded.rstrip("=")) == "whsec_" + padded


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("whsec_", "nothing after the prefix"),
        ("whsec_!!!", "got 'whsec_!!!': not valid base64"),
        ("sk_live_" + "A" * 32, "unknown prefix 'sk_'"),
        ("whsec_" + "A" * 31 + "-", "not valid base64"),
        ("whsec_" + "A" * 33, "not valid base64"),  # length 1 mod 4 can never decode
        ("whsec_dGVzdA==", "key is 4 bytes"),
    ],
)
def test_parse_secret_rejects_with_a_precise_message(secret: str, fragment: str) -> None:
    with pytest.raises(InvalidSecret) as err:
        parse_secret(secret)
    assert fragment in str(err.value)
    assert str(err.value).startswith("secret must look like whsec_<base64>")


def test_parse_secret_does_not_echo_a_long_secret_whole() -> None:
    bad = "whsec_" + "A" * 40 + "!"
    with pytest.raises(InvalidSecret) as err:
        parse_secret(bad)
    assert bad not in str(err.value)
    assert "47 chars" in str(err.value)


def test_invalid_secret_is_a_value_error() -> None:
    assert issubclass(InvalidSecret, ValueError)


# --- sign ------------------------------------------------------------------------------------


def test_sign_matches_svix_and_hand_hmac() -> None:
    by_hand = base64.b64encode(
        hmac.new(KEY, b"msg_1.%d." % NOW + BODY, hashlib.sha256).digest()
    ).decode()
    assert sign(SECRET, "msg_1", NOW, BODY) == "v1," + by_hand
    svix_sig = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())
    assert sign(SECRET, "msg_1", NOW, BODY) == svix_sig


def test_sign_handles_non_utf8_bodies_by_hand() -> None:
    body = b"\xff\xfe binary \x80"
    expected = hmac.new(KEY, b"msg_2.%d." % NOW + body, hashlib.sha256).digest()
    assert sign(SECRET, "msg_2", NOW, body) == "v1," + base64.b64encode(expected).decode()


def test_svix_verifies_what_we_sign() -> None:
    now = int(time.time())
    headers = signed_headers(SECRET, BODY, timestamp=now)
    Webhook(SECRET).verify(BODY, dict(headers))  # raises if not
    assert svix_accepts(headers, BODY)


def test_signed_headers_look_like_a_pivotal_delivery() -> None:
    headers = signed_headers(SECRET, BODY, msg_id="msg_x", timestamp=NOW)
    names = [n for n, _ in headers]
    assert names == ["content-type", "svix-id", "svix-timestamp", "svix-signature", "user-agent"]
    values = dict(headers)
    assert values["content-type"] == "application/json"
    assert values["svix-id"] == "msg_x"
    assert values["svix-timestamp"] == str(NOW)
    assert values["user-agent"].startswith("Svix-Webhooks/")
    fresh = dict(signed_headers(SECRET, BODY))
    assert fresh["svix-id"].startswith("msg_") and len(fresh["svix-id"]) == 31
    assert abs(int(fresh["svix-timestamp"]) - time.time()) < 5


# --- verify ----------------------------------------------------------------------------------


def test_valid_delivery() -> None:
    assert verify(SECRET, delivery(), BODY, now=NOW + 10) == Verdict(
        "valid", "signature matches the secret"
    )


def test_valid_against_wall_clock_uses_svix() -> None:
    headers = delivery(ts=int(time.time()))
    assert verify(SECRET, headers, BODY).status == "valid"
    assert verify(OTHER, headers, BODY).status == "invalid"


def test_header_names_in_any_case_and_unbranded() -> None:
    mixed = [(n.upper() if n.startswith("svix") else n, v) for n, v in delivery()]
    assert verify(SECRET, mixed, BODY, now=NOW).status == "valid"
    unbranded = [(n.replace("svix-", "Webhook-"), v) for n, v in delivery()]
    assert verify(SECRET, unbranded, BODY, now=NOW).status == "valid"


def test_unsigned_and_no_secret() -> None:
    plain = [("content-type", "application/json")]
    assert verify(SECRET, plain, BODY, now=NOW).status == "unsigned"
    verdict = verify(None, delivery(), BODY, now=NOW)
    assert verdict.status == "no-secret"
    assert "PIVOTAL_WEBHOOK_SECRET" in verdict.reason


def test_is_signed_reads_the_signature_header_as_svix_does() -> None:
    """The one test behind the re-send rule, the replay note and the copied curl."""
    assert is_signed(delivery())
    assert is_signed([(n.upper(), v) for n, v in delivery()])
    assert is_signed([(n.replace("svix-", "Webhook-"), v) for n, v in delivery()])
    assert not is_signed([("content-type", "application/json")])
    # An id and a timestamp without a signature leave nothing to re-sign.
    assert not is_signed([(n, v) for n, v in delivery() if n != "svix-signature"])


def test_unusable_secret_is_a_verdict_not_an_exception() -> None:
    verdict = verify("whsec_!!!", delivery(), BODY, now=NOW)
    assert verdict.status == "no-secret"
    assert "not valid base64" in verdict.reason


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_partial_headers_name_the_missing_one(missing: str) -> None:
    headers = [(n, v) for n, v in delivery() if n != missing]
    assert verify(SECRET, headers, BODY, now=NOW) == Verdict("invalid", f"missing {missing} header")
    # No secret could make it pass, so the structural fault wins over "no-secret".
    assert verify(None, headers, BODY, now=NOW).status == "invalid"


def test_tampered_body_and_wrong_secret() -> None:
    tampered = BODY.replace(b"updated", b"churned")
    assert verify(SECRET, delivery(), tampered, now=NOW) == Verdict(
        "invalid", "no signature matches the secret"
    )
    assert verify(OTHER, delivery(), BODY, now=NOW).reason == "no signature matches the secret"


def test_non_utf8_body_correctly_signed_is_valid() -> None:
    body = b"\x89PNG\r\n\x1a\n\xff\x00"
    headers = signed_headers(SECRET, body, msg_id="msg_b", timestamp=NOW)
    assert verify(SECRET, headers, body, now=NOW).status == "valid"
    assert verify(SECRET, headers, body + b"!", now=NOW).status == "invalid"
    # svix itself cannot even look at it; we must not crash either.
    with pytest.raises(UnicodeDecodeError):
        Webhook(SECRET).verify(body, dict(headers))
    live = signed_headers(SECRET, body, timestamp=int(time.time()))
    assert verify(SECRET, live, body).status == "valid"


def with_sig(value: str) -> list[tuple[str, str]]:
    return [(n, value if n == "svix-signature" else v) for n, v in delivery()]


def test_signature_entry_without_comma() -> None:
    verdict = verify(SECRET, with_sig("abc"), BODY, now=NOW)
    assert verdict == Verdict("invalid", "svix-signature entry 'abc' has no version prefix")


def test_signature_entry_with_bad_base64() -> None:
    verdict = verify(SECRET, with_sig("v1,abc"), BODY, now=NOW)
    assert verdict == Verdict("invalid", "svix-signature entry 'v1,abc' is not valid base64")


def test_only_unknown_versions() -> None:
    verdict = verify(SECRET, with_sig("v2,AAAA"), BODY, now=NOW)
    assert verdict == Verdict("invalid", "svix-signature has no v1 entry (versions: v2)")


def test_several_entries_one_good() -> None:
    good = sign(SECRET, "msg_1", NOW, BODY)
    stale = sign(OTHER, "msg_1", NOW, BODY)
    assert verify(SECRET, with_sig(f"{stale} v2,xyz= {good}"), BODY, now=NOW).status == "valid"


@pytest.mark.parametrize("ts", ["x", "", "nan", "inf", "1e400"])
def test_garbage_timestamps(ts: str) -> None:
    headers = [(n, ts if n == "svix-timestamp" else v) for n, v in delivery()]
    verdict = verify(SECRET, headers, BODY, now=NOW)
    assert verdict.status == "invalid"
    if ts:
        assert verdict.reason == f"svix-timestamp {ts!r} is not a number"
    else:
        assert verdict.reason == "svix-timestamp header is empty"


def test_expired_old_says_how_old_and_whether_signature_matches() -> None:
    verdict = verify(SECRET, delivery(), BODY, now=NOW + 7 * 60)
    assert verdict.status == "expired"
    assert verdict.reason == (
        "timestamp 7 min old, tolerance 5 min; the signature itself matches the secret"
    )
    bad = verify(OTHER, delivery(), BODY, now=NOW + 7 * 60)
    assert bad.status == "expired"
    assert "does not match" in bad.reason


def test_expired_in_the_future() -> None:
    verdict = verify(SECRET, delivery(), BODY, now=NOW - 7 * 60)
    assert verdict.status == "expired"
    assert verdict.reason.startswith("timestamp 7 min in the future, tolerance 5 min")


def test_just_past_the_tolerance_reads_as_past_it() -> None:
    """ "5 min old, tolerance 5 min" read as inside the window: the seconds say it is not."""
    verdict = verify(SECRET, delivery(), BODY, now=NOW + 312)
    assert verdict.status == "expired"
    assert verdict.reason.startswith("timestamp 5 min 12 s old, tolerance 5 min;")


def test_tolerance_boundary_and_custom_tolerance() -> None:
    assert verify(SECRET, delivery(), BODY, now=NOW + 300).status == "valid"
    assert verify(SECRET, delivery(), BODY, now=NOW + 301).status == "expired"
    assert verify(SECRET, delivery(), BODY, now=NOW + 301, tolerance=600).status == "valid"


def test_expired_against_wall_clock() -> None:
    headers = delivery(ts=int(time.time()) - 6 * 60)
    verdict = verify(SECRET, headers, BODY)
    assert verdict.status == "expired"
    assert verdict.reason.startswith("timestamp 6 min old")


@pytest.mark.parametrize(
    "signature",
    [
        "{good}",
        "{good} v1,abc",  # svix stops at the good one before choking
        "v1,abc {good}",  # svix chokes first
        "abc {good}",
        "{good}  v1,AAAA",
        "v1,AAAA  {good}",  # empty entry before the good one
        "v1,{good_b64},x",
        "v2,{good_b64}",
        "v1,{good_b64}!!",  # svix's lenient base64 drops the junk
        "v1,AAAA",
    ],
)
def test_agrees_with_svix_on_odd_signature_headers(signature: str) -> None:
    now = int(time.time())
    good = sign(SECRET, "msg_1", now, BODY)
    value = signature.format(good=good, good_b64=good[3:])
    headers = [
        (n, value if n == "svix-signature" else v) for n, v in delivery(ts=now, msg_id="msg_1")
    ]
    expected = svix_accepts(headers, BODY)
    ours = verify(SECRET, headers, BODY, now=now)  # injected clock: our own mirror decides
    assert (ours.status == "valid") == expected, ours
    assert (verify(SECRET, headers, BODY).status == "valid") == expected


# Above SVIX_MAX_BODY hooktap hashes the bytes itself instead of asking svix: same answers.
BIG = b'{"id":"evt_big","data":"' + "é".encode() * (SVIX_MAX_BODY // 2) + b'"}'


@pytest.mark.parametrize(
    "signature", ["{good}", "v1,abc {good}", "{good}  v1,AAAA", "v2,{good_b64}", "v1,AAAA"]
)
@pytest.mark.parametrize("tamper", [False, True])
def test_big_bodies_get_svix_verdicts_without_svix(signature: str, tamper: bool) -> None:
    assert len(BIG) > SVIX_MAX_BODY
    now = int(time.time())
    good = sign(SECRET, "msg_1", now, BIG)
    value = signature.format(good=good, good_b64=good[3:])
    headers = [(n, value if n == "svix-signature" else v) for n, v in delivery(BIG, ts=now)]
    body = BIG[:-3] + b"X" + BIG[-2:] if tamper else BIG
    ours = verify(SECRET, headers, body)
    assert (ours.status == "valid") == svix_accepts(headers, body), ours
    assert ours.status in ("valid", "invalid")


def test_big_expired_body_judged_like_svix() -> None:
    old = int(time.time()) - 600
    headers = delivery(BIG, ts=old)
    assert not svix_accepts(headers, BIG)
    verdict = verify(SECRET, headers, BIG)
    assert verdict.status == "expired"
    assert "the signature itself matches" in verdict.reason


def test_fractional_timestamp_signed_like_svix() -> None:
    """svix floors the timestamp before signing; a handler accepts this, so must we."""
    now = int(time.time())
    good = sign(SECRET, "msg_1", now, BODY)
    headers = [("svix-id", "msg_1"), ("svix-timestamp", f"{now}.7"), ("svix-signature", good)]
    assert svix_accepts(headers, BODY)
    assert verify(SECRET, headers, BODY, now=now).status == "valid"


def test_duplicate_headers_first_wins() -> None:
    headers = [*delivery(), ("svix-signature", "v1,AAAA")]
    assert verify(SECRET, headers, BODY, now=NOW).status == "valid"


def test_verify_never_raises_on_odd_input() -> None:
    odd: list[list[tuple[str, str]]] = [
        [("svix-id", "\x00"), ("svix-timestamp", "-1e30"), ("svix-signature", ",,,")],
        [("svix-id", "x"), ("svix-timestamp", str(NOW)), ("svix-signature", " ")],
        [("svix-id", "x"), ("svix-timestamp", str(NOW)), ("svix-signature", "v1,")],
    ]
    for headers in odd:
        verdict = verify(SECRET, headers, b"\xff" * 10, now=NOW)
        assert verdict.status in {"invalid", "expired"}, verdict
        assert verdict.reason


# --- resign ----------------------------------------------------------------------------------


def test_resign_keeps_position_case_and_id() -> None:
    original = [
        ("Host", "example.test"),
        ("Svix-Id", "msg_keep"),
        ("Content-Length", "3"),
        ("Svix-Timestamp", str(NOW)),
        ("Svix-Signature", "v1,stale"),
        ("X-Extra", "1"),
    ]
    body = b'{"edited": true}'
    later = NOW + 3600
    out = resign(original, body, SECRET, now=later)
    assert [n for n, _ in out] == [n for n, _ in original]
    values = dict(out)
    assert values["Svix-Id"] == "msg_keep"
    assert values["Svix-Timestamp"] == str(later)
    assert values["Content-Length"] == str(len(body))
    assert values["Svix-Signature"] == sign(SECRET, "msg_keep", later, body)
    assert verify(SECRET, out, body, now=later).status == "valid"
    assert original[1] == ("Svix-Id", "msg_keep") and original[4][1] == "v1,stale"  # a copy


def test_resign_new_id_and_missing_headers_appended() -> None:
    original = [("content-type", "application/json")]
    out = resign(original, BODY, SECRET, now=NOW, new_id=True)
    assert [n for n, _ in out] == ["content-type", "svix-id", "svix-timestamp", "svix-signature"]
    assert dict(out)["svix-id"].startswith("msg_")
    assert verify(SECRET, out, BODY, now=NOW).status == "valid"
    replaced = resign(delivery(), BODY, SECRET, now=NOW, new_id=True)
    assert dict(replaced)["svix-id"] != "msg_1"


def test_resign_for_a_real_replay_passes_svix() -> None:
    old = delivery(ts=NOW)  # days old: a handler would reject it as is
    assert not svix_accepts(old, BODY)
    fresh = resign(old, BODY, SECRET)
    assert svix_accepts(fresh, BODY)


def test_resign_updates_unbranded_headers_in_place() -> None:
    unbranded = [(n.replace("svix-", "webhook-"), v) for n, v in delivery()]
    out = resign(unbranded, BODY, SECRET, now=NOW + 999)
    assert [n for n, _ in out] == [n for n, _ in unbranded]
    assert verify(SECRET, out, BODY, now=NOW + 999).status == "valid"
