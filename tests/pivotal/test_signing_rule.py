"""The re-signing rule's two checks: original_matches (replay, copy as curl) and refresh_if_held
(deliveries that waited), held to svix's own verdicts where svix can judge."""

from __future__ import annotations

import time

import pytest
from test_signing import OTHER, SECRET, svix_accepts  # svix's own verdict, wall clock

from hooktap.pivotal.signing import (
    InvalidSecret,
    original_matches,
    refresh_if_held,
    sign,
    signed_headers,
    verify,
)

BODY = b'{"id":"evt_1","type":"customer.at_risk","data":{"object":{"health_score":12}}}'
NOW = 1_714_557_600
DAY = 86_400


def signed(ts: int = NOW, body: bytes = BODY, secret: str = SECRET) -> list[tuple[str, str]]:
    return signed_headers(secret, body, msg_id="msg_1", timestamp=ts)


def with_header(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in headers]


# --- original_matches ------------------------------------------------------------------------


@pytest.mark.parametrize("age", [0, 299, 7 * 60, 30 * DAY, -DAY])
def test_a_genuine_signature_matches_whatever_its_age(age: int) -> None:
    assert original_matches(SECRET, signed(NOW - age), BODY) is None


def test_a_tampered_body_does_not_match() -> None:
    tampered = BODY.replace(b'"health_score":12', b'"health_score":99')
    assert original_matches(SECRET, signed(), tampered) == "no signature matches the secret"
    # Old and tampered: the age does not hide the mismatch.
    assert original_matches(SECRET, signed(NOW - DAY), tampered) == (
        "no signature matches the secret"
    )


def test_another_secret_does_not_match() -> None:
    # Stored "valid" under one secret means nothing for the secret given now.
    assert original_matches(OTHER, signed(), BODY) == "no signature matches the secret"
    assert original_matches(SECRET, signed(secret=OTHER), BODY) == (
        "no signature matches the secret"
    )


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([("content-type", "application/json")], "no svix-id, svix-timestamp or svix-signature"),
        ([(n, v) for n, v in signed() if n != "svix-signature"], "missing svix-signature header"),
        ([(n, v) for n, v in signed() if n != "svix-id"], "missing svix-id header"),
        (with_header(signed(), "svix-signature", ""), "svix-signature header is empty"),
        (with_header(signed(), "svix-timestamp", "soon"), "svix-timestamp 'soon' is not a number"),
        (with_header(signed(), "svix-timestamp", "nan"), "svix-timestamp 'nan' is not a number"),
        (with_header(signed(), "svix-signature", "abc"), "entry 'abc' has no version prefix"),
        (with_header(signed(), "svix-signature", "v1,abc"), "'v1,abc' is not valid base64"),
        (with_header(signed(), "svix-signature", "v1,é"), "'v1,é' is not valid base64"),
        (with_header(signed(), "svix-signature", "v2,AAAA"), "has no v1 entry (versions: v2)"),
    ],
)
def test_broken_headers_say_why(headers: list[tuple[str, str]], reason: str) -> None:
    found = original_matches(SECRET, headers, BODY)
    assert found is not None and reason in found
    # The same words verify() uses for the delivery's verdict.
    assert reason in verify(SECRET, headers, BODY, now=NOW).reason


def test_the_timestamp_is_part_of_what_was_signed() -> None:
    """Moving an old signature's timestamp forward is a forgery, not a genuine delivery."""
    moved = with_header(signed(NOW - DAY), "svix-timestamp", str(NOW))
    assert original_matches(SECRET, moved, BODY) == "no signature matches the secret"


def test_entries_are_walked_as_svix_walks_them() -> None:
    good = sign(SECRET, "msg_1", NOW, BODY)
    stale = sign(OTHER, "msg_1", NOW, BODY)
    several = with_header(signed(), "svix-signature", f"{stale} v2,xyz= {good}")
    assert original_matches(SECRET, several, BODY) is None
    choke_first = with_header(signed(), "svix-signature", f"abc {good}")
    assert "no version prefix" in (original_matches(SECRET, choke_first, BODY) or "")


@pytest.mark.parametrize(
    "signature", ["{good}", "{good} v1,abc", "v1,abc {good}", "{good}  v1,AAAA", "v1,AAAA"]
)
def test_agrees_with_svix_on_a_fresh_delivery(signature: str) -> None:
    """Where the timestamp is fresh, "matches" is exactly what svix accepts."""
    now = int(time.time())
    good = sign(SECRET, "msg_1", now, BODY)
    headers = with_header(signed(now), "svix-signature", signature.format(good=good))
    assert (original_matches(SECRET, headers, BODY) is None) == svix_accepts(headers, BODY)


def test_unbranded_and_non_utf8_deliveries() -> None:
    unbranded = [(n.replace("svix-", "webhook-"), v) for n, v in signed(NOW - DAY)]
    assert original_matches(SECRET, unbranded, BODY) is None
    binary = b"\x89PNG\r\n\x1a\n\xff\x00"
    headers = signed(NOW - DAY, body=binary)
    assert original_matches(SECRET, headers, binary) is None
    assert original_matches(SECRET, headers, binary + b"!") == "no signature matches the secret"


def test_an_unusable_secret_is_the_callers_mistake() -> None:
    with pytest.raises(InvalidSecret, match="not valid base64"):
        original_matches("whsec_!!!", signed(), BODY)


# --- refresh_if_held -------------------------------------------------------------------------


def test_valid_on_arrival_and_expired_now_is_refreshed_for_svix() -> None:
    now = time.time()
    received = now - 3600  # held an hour (paused, or queued at the relay)
    original = signed(int(received) - 2)
    assert not svix_accepts(original, BODY)
    fresh = refresh_if_held(SECRET, original, BODY, received)
    assert fresh is not None
    assert svix_accepts(fresh, BODY)  # the handler takes it now
    assert dict(fresh)["svix-id"] == "msg_1"  # the same message: de-duplication still works
    assert abs(int(dict(fresh)["svix-timestamp"]) - now) < 5
    assert [n for n, _ in fresh] == [n for n, _ in original]  # order and names kept


def test_injected_clock_sets_the_new_timestamp() -> None:
    original = signed(NOW)
    fresh = refresh_if_held(SECRET, original, BODY, NOW + 1, now=NOW + 3600.7)
    assert fresh is not None
    assert dict(fresh)["svix-timestamp"] == str(NOW + 3600)
    assert verify(SECRET, fresh, BODY, now=NOW + 3600).status == "valid"


def test_still_fresh_is_left_alone() -> None:
    assert refresh_if_held(SECRET, signed(NOW), BODY, NOW + 1, now=NOW + 200) is None
    assert refresh_if_held(SECRET, signed(NOW), BODY, NOW, now=NOW + 300) is None  # the edge


@pytest.mark.parametrize("signed_before_arrival", [301, 600, DAY])
def test_stale_on_arrival_is_never_refreshed(signed_before_arrival: int) -> None:
    """A genuine but old request posted again (a captured one, replayed by anyone) was
    already expired when it arrived: refreshing it would launder a replay attack."""
    captured = signed(NOW - signed_before_arrival)
    assert original_matches(SECRET, captured, BODY) is None  # the HMAC itself is genuine
    assert refresh_if_held(SECRET, captured, BODY, NOW, now=NOW + 3600) is None


def test_the_arrival_window_edge() -> None:
    at_edge = signed(NOW - 300)
    assert refresh_if_held(SECRET, at_edge, BODY, NOW, now=NOW + 3600) is not None
    future = signed(NOW + 301)  # signed too far ahead of arrival: svix refused it then
    assert refresh_if_held(SECRET, future, BODY, NOW, now=NOW + 3600) is None


def test_anything_not_valid_on_arrival_is_not_refreshed() -> None:
    later = NOW + 3600
    tampered = BODY.replace(b"12", b"99")
    assert refresh_if_held(SECRET, signed(NOW), tampered, NOW, now=later) is None
    assert refresh_if_held(SECRET, signed(NOW, secret=OTHER), BODY, NOW, now=later) is None
    assert refresh_if_held(SECRET, [("content-type", "x")], BODY, NOW, now=later) is None
    broken = [(n, v) for n, v in signed(NOW) if n != "svix-id"]
    assert refresh_if_held(SECRET, broken, BODY, NOW, now=later) is None
    # An unusable secret cannot sign anything: no refresh, and no exception either.
    assert refresh_if_held("whsec_!!!", signed(NOW), BODY, NOW, now=later) is None
