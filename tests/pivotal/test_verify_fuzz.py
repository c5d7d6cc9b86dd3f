"""Property tests for signature verification: whatever headers and body reach the listener from
the public URL, `verify` answers with one of its five verdicts and a reason of its own, never an
exception; and a delivery the secret really signed stays "valid" beside any junk, and stops
being valid as soon as one byte of its body changes.

The genuine signatures are made by the svix library itself (by hand, with hmac, only for bodies
svix cannot take as text), so "valid" here means what a user's svix-based handler means.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svix.webhooks import Webhook

from hooktap.pivotal.signing import SVIX_MAX_BODY, Verdict, verify

VERDICTS = {"valid", "invalid", "expired", "unsigned", "no-secret"}
FIELDS = ("id", "timestamp", "signature")
SIGNATURE_NAMES = [f"{brand}-{field}" for brand in ("svix", "webhook") for field in FIELDS]
FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
# verify()'s own last resort: a reason that starts so means some input reached an exception no
# check foresaw, which is a verdict without an explanation a person could act on.
SAFETY_NET = "could not verify"

# -- anything at all ---------------------------------------------------------------------------

# Any text, lone surrogates and control characters included: verify() takes str headers, and a
# caller other than the relay (a HAR file, an edited replay) need not hand it latin-1.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
huge = st.integers(10_000, 200_000).flatmap(
    lambda n: st.sampled_from(["v1," + "A" * n, "1" * n, "msg_" + "x" * n, " " * n])
)
timestamps = st.one_of(
    st.sampled_from(
        ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "0x10", "1_700_000_000", " 17 ", "1e2"]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(str),
    st.integers(-1000, 1000).map(lambda d: str(int(time.time()) + d)),
    st.just("9" * 400),
)
entries = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: "v1," + base64.b64encode(b).decode()),
    st.sampled_from(["v1,", "v1", "v1,a,b", "v2,xyz", "v1,@@@", "v1,====", "", "v1a,AAAA", ","]),
    st.text(max_size=12).map(lambda t: "v1," + t),
    any_text,
)
signatures = st.lists(entries, min_size=1, max_size=4).map(" ".join)
values = st.one_of(any_text, timestamps, signatures, huge, st.just(""))


def cased(name: str) -> st.SearchStrategy[str]:
    """`name` as different senders write it: svix and HTTP/2 lowercase, others Title-Case."""
    return st.sampled_from([name, name.upper(), name.title(), name.swapcase(), name.capitalize()])


signature_names = st.sampled_from(SIGNATURE_NAMES).flatmap(cased)
names = st.one_of(signature_names, any_text, st.sampled_from(["", "content-type", " svix-id"]))
any_headers = st.lists(st.tuples(names, values), max_size=12)
bodies = st.one_of(
    st.binary(max_size=200),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=60).map(str.encode),
    st.just(b""),
    st.just(b"\xff" + b"x" * SVIX_MAX_BODY),  # past svix's share, judged by hand
)


def _valid_secret(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


keys = st.binary(min_size=24, max_size=64)
secrets_ = st.one_of(
    st.none(),
    st.just(""),
    keys.map(_valid_secret),
    st.sampled_from(["whsec_", "whsec_!!!", "abc_def", "   ", "whsec_c2hvcnQ="]),
    any_text,
)
clocks = st.one_of(
    st.none(),
    st.floats(),  # nan and infinities too
    st.integers(-1000, 1000).map(lambda d: time.time() + d),
)
tolerances = st.one_of(st.just(300), st.integers(-10, 10**6), st.integers(-(2**70), 2**70))


def _judged(
    secret: str | None, headers: list[tuple[str, str]], body: bytes, now: float | None, tol: int
) -> Verdict:
    verdict = verify(secret, headers, body, now=now, tolerance=tol)
    assert isinstance(verdict, Verdict)
    assert verdict.status in VERDICTS, verdict
    assert isinstance(verdict.reason, str) and verdict.reason, verdict
    assert not verdict.reason.startswith(SAFETY_NET), verdict
    return verdict


@FUZZ
@given(secrets_, any_headers, bodies, clocks, tolerances)
def test_any_headers_and_body_get_one_of_the_five_verdicts(
    secret: str | None,
    headers: list[tuple[str, str]],
    body: bytes,
    now: float | None,
    tolerance: int,
) -> None:
    verdict = _judged(secret, headers, body, now, tolerance)
    named = {name.lower() for name, _ in headers} & set(SIGNATURE_NAMES)
    # "unsigned" means exactly: not one signature header, under any brand or case.
    assert (verdict.status == "unsigned") == (not named), (verdict, named)
    if not secret:
        # Without a secret nothing can be judged genuine, or stale.
        assert verdict.status in {"unsigned", "invalid", "no-secret"}, verdict


# -- a genuine delivery, among junk ------------------------------------------------------------


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:  # svix takes text only: its scheme, by hand, over the bytes
        mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
        return "v1," + base64.b64encode(mac.digest()).decode()
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), text)


# Junk that cannot stand in for the genuine headers: any name but the six signature names...
other_names = names.filter(lambda n: n.lower() not in SIGNATURE_NAMES)
# ...or webhook-* ones, which svix-* headers outrank wherever they stand.
outranked = st.sampled_from(SIGNATURE_NAMES[3:]).flatmap(cased)
junk_beside = st.lists(st.tuples(st.one_of(other_names, outranked), values), max_size=8)
# After the genuine headers, anything: the first of a repeated header is the one that counts.
junk_after = any_headers
# Well-formed entries beside the genuine one in svix-signature: other keys' v1 signatures and
# other versions, which svix skips over.
extra_entries = st.lists(
    st.one_of(
        st.binary(min_size=32, max_size=32).map(lambda b: "v1," + base64.b64encode(b).decode()),
        st.from_regex(r"v[2-9a-z],[A-Za-z0-9+/=_.-]{0,20}", fullmatch=True),
    ),
    max_size=3,
)


@st.composite
def genuine(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], bytes, float | None, int]:
    """A delivery signed with the secret, its headers scattered among junk, and a clock and
    tolerance inside whose window its timestamp falls (wall clock and svix's own 300 s, or an
    injected clock and any window)."""
    key = draw(keys)
    body = draw(bodies)
    msg_id = draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30))
    if draw(st.booleans()):
        now, tolerance = None, 300
        timestamp = int(time.time()) + draw(st.integers(-200, 200))  # well inside the window
    else:
        tolerance = draw(st.integers(0, 10**6))
        timestamp = draw(st.integers(0, 253_402_214_400 - 2 * 10**6))
        now = float(timestamp + draw(st.integers(-tolerance, tolerance)))  # edges included
    entries_ = draw(extra_entries)
    entries_.insert(draw(st.integers(0, len(entries_))), _signature(key, msg_id, timestamp, body))
    signed = [
        (draw(cased(f"svix-{field}")), value)
        for field, value in (("id", msg_id), ("timestamp", str(timestamp)), ("signature", ""))
    ]
    signed[2] = (signed[2][0], " ".join(entries_))
    headers = draw(st.permutations([*signed, *draw(junk_beside)])) + draw(junk_after)
    return _valid_secret(key), headers, body, now, tolerance


@FUZZ
@given(genuine())
def test_a_genuine_signature_is_valid_whatever_junk_stands_beside_it(
    delivery: tuple[str, list[tuple[str, str]], bytes, float | None, int],
) -> None:
    secret, headers, body, now, tolerance = delivery
    assert _judged(secret, headers, body, now, tolerance).status == "valid"


@FUZZ
@given(genuine(), st.data())
def test_flipping_any_body_byte_makes_a_genuine_signature_not_valid(
    delivery: tuple[str, list[tuple[str, str]], bytes, float | None, int], data: st.DataObject
) -> None:
    secret, headers, body, now, tolerance = delivery
    if not body:
        body = b"{}"  # nothing to flip: sign a byte first
        headers = _resigned(secret, headers, body)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    assert _judged(secret, headers, body, now, tolerance).status == "valid"
    assert _judged(secret, headers, tampered, now, tolerance).status != "valid"


def _resigned(secret: str, headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    """The same headers with the genuine entry (the first svix-signature) signing `body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    first = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    fresh = _signature(key, first["svix-id"], int(first["svix-timestamp"]), body)
    out, done = [], False
    for name, value in headers:
        if name.lower() == "svix-signature" and not done:
            value, done = fresh, True
        out.append((name, value))
    return out
