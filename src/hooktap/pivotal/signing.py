"""Svix signatures: check a delivery, sign a fresh one, re-sign a replay.

Pivotal signs with Svix, and our users verify with the svix library, so "valid" here must mean
exactly "the user's svix-based handler would accept it". The svix library is the authority
whenever it can decide (it reads the wall clock and hard-codes a 5-minute window); around it we
mirror its rules step by step so that every rejection gets a specific reason, so an injected
clock or a non-UTF-8 body (which svix cannot take) still gets a verdict, and so that none of the
exceptions svix raises besides its own (UnicodeDecodeError, ValueError, binascii.Error) ever
escape: a bad signature is data, not a crash.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from hooktap.records import Headers

SECRET_PREFIX = "whsec_"
# Svix's API refuses endpoint secrets shorter than 24 bytes (32 base64 characters).
MIN_KEY_BYTES = 24
DEFAULT_TOLERANCE = 300  # seconds; the window svix enforces
SVIX_TOLERANCE = 300
# Bodies up to this size are judged by svix itself. svix decodes a body to str and encodes it
# back before its HMAC, holding the GIL throughout: for 1 MiB that is ~1.7 ms against ~0.6 ms
# for the same HMAC over the bytes, which needs no GIL. Above it (far above any Pivotal event)
# hooktap computes svix's scheme itself; tests hold the two to the same verdicts.
SVIX_MAX_BODY = 256 * 1024
USER_AGENT = "Svix-Webhooks/1.0 (hooktap; +https://www.svix.com/http-sender/)"

_FIELDS = ("id", "timestamp", "signature")
_BRANDS = ("svix", "webhook")  # svix-* wins over webhook-*, as in svix's own lookup
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class InvalidSecret(ValueError):
    """A secret that cannot be an endpoint secret; the message says what is wrong with it."""


@dataclass(frozen=True)
class Verdict:
    """What hooktap concluded about a delivery's signature, and why, in words for a human."""

    status: str  # valid | invalid | expired | unsigned | no-secret
    reason: str


# --- secrets ---------------------------------------------------------------------------------


def _shown(secret: str) -> str:
    """Quote a bad secret without echoing a whole real one into terminals and logs."""
    return (
        repr(secret) if len(secret) <= 14 else repr(secret[:10] + "…") + f" ({len(secret)} chars)"
    )


@functools.lru_cache(maxsize=8)  # the listener decodes the same secret for every delivery
def _secret_key(secret: str) -> bytes:
    """Decode a secret to its HMAC key, strictly: svix silently drops stray characters, which
    turns a copy-paste accident into a mysterious 'no signature matches'."""
    raw = secret.strip()
    fail = f"secret must look like whsec_<base64>; got {_shown(raw)}"
    if not raw:
        raise InvalidSecret("secret must look like whsec_<base64>; got an empty string")
    if raw.startswith(SECRET_PREFIX):
        encoded = raw[len(SECRET_PREFIX) :]
    else:
        prefix = re.match(r"[A-Za-z]+_", raw)
        if prefix:
            raise InvalidSecret(f"{fail}: unknown prefix {prefix.group(0)!r}, expected 'whsec_'")
        encoded = raw
    if not encoded:
        raise InvalidSecret(f"{fail}: nothing after the prefix")
    unpadded = encoded.rstrip("=")
    if not _BASE64.fullmatch(encoded) or len(unpadded) % 4 == 1:
        raise InvalidSecret(f"{fail}: not valid base64")
    try:
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        raise InvalidSecret(f"{fail}: not valid base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise InvalidSecret(
            f"{fail}: key is {len(key)} bytes, Svix secrets are at least {MIN_KEY_BYTES}"
        )
    return key


def parse_secret(secret: str) -> str:
    """Check a user-supplied secret up front, so a typo is reported once, clearly, instead of
    as every delivery being 'invalid'. Returns the canonical whsec_<padded base64> form."""
    return SECRET_PREFIX + base64.b64encode(_secret_key(secret)).decode("ascii")


# --- signing ---------------------------------------------------------------------------------


def _hmac_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Svix scheme by hand, over the raw bytes: for bodies svix refuses because they are not
    UTF-8, and for those too big to be worth svix's copies (see SVIX_MAX_BODY).

    Streamed, not concatenated: no copy of the body, and hashlib lets go of the GIL while it
    hashes a big one, so a worker thread can do it beside the event loop."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The svix-signature value Pivotal would send for this body: "v1,<base64>"."""
    key = _secret_key(secret)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _hmac_signature(key, msg_id, timestamp, body)
    from svix.webhooks import Webhook  # see _svix_verdict for why it is imported here

    return Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), text)


def new_msg_id() -> str:
    """A fresh Svix-looking message id ("msg_" + 27 base62 characters, like a KSUID)."""
    return "msg_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(27))


def signed_headers(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> Headers:
    """The headers of a fresh Pivotal delivery of `body`, names lowercase as Svix's sender sends
    them. Content-Length is left to the HTTP client, which knows the final body."""
    msg_id = msg_id or new_msg_id()
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return [
        ("content-type", "application/json"),
        ("svix-id", msg_id),
        ("svix-timestamp", str(ts)),
        ("svix-signature", sign(secret, msg_id, ts, body)),
        ("user-agent", USER_AGENT),
    ]


def _set_header(headers: Headers, names: tuple[str, ...], value: str, fallback: str) -> None:
    """Overwrite every header called one of `names` where it stands, else append `fallback`."""
    wanted = {n.lower() for n in names}
    hit = False
    for i, (name, _) in enumerate(headers):
        if name.lower() in wanted:
            headers[i] = (name, value)
            hit = True
    if not hit:
        headers.append((fallback, value))


def resign(
    headers: Headers,
    body: bytes,
    secret: str,
    *,
    now: int | None = None,
    new_id: bool = False,
) -> Headers:
    """Headers for re-sending `body`, so a replay passes the handler's verification.

    Edits in place (same position, same name casing) rather than rebuilding, because header
    order and case are part of what we promise to reproduce. Both brands (svix-*, webhook-*)
    are updated when present, so no stale copy survives next to the new one.
    """
    out = list(headers)
    ts = int(time.time()) if now is None else int(now)
    found = _find(out)
    kept = found.get("id", ("", ""))[1]
    msg_id = new_msg_id() if new_id or not kept else kept
    for field, value in (
        ("id", msg_id),
        ("timestamp", str(ts)),
        ("signature", sign(secret, msg_id, ts, body)),
    ):
        _set_header(out, tuple(f"{b}-{field}" for b in _BRANDS), value, f"svix-{field}")
    for i, (name, _) in enumerate(out):
        if name.lower() == "content-length":
            out[i] = (name, str(len(body)))
    return out


# --- verification ----------------------------------------------------------------------------


def _find(headers: Headers) -> dict[str, tuple[str, str]]:
    """field -> (header name as sent, value); first occurrence, svix-* before webhook-*."""
    first: dict[str, tuple[str, str]] = {}
    for name, value in headers:
        first.setdefault(name.lower(), (name, value))
    found: dict[str, tuple[str, str]] = {}
    for field in _FIELDS:
        for brand in _BRANDS:
            hit = first.get(f"{brand}-{field}")
            if hit is not None:
                found[field] = hit
                break
    return found


def signature_header(headers: Headers, field: str) -> str | None:
    """The value of svix-`field` (or webhook-`field`), read the way svix reads it."""
    hit = _find(headers).get(field)
    return hit[1] if hit is not None else None


def is_signed(headers: Headers) -> bool:
    """Whether the headers carry a signature to verify or re-sign: the one test the re-send
    rule, the replay note and the copied curl all ask, so they never disagree."""
    return signature_header(headers, "signature") is not None


def describe_age(seconds: float) -> str:
    """A timestamp's distance from now in the unit a person would use ("7 min", "2 h").

    Under an hour the seconds stay: "5 min" beside a 5-minute tolerance read as inside it
    when the timestamp was 5 min 12 s old."""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if seconds < 2 * 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600:.0f} h"
    return f"{seconds // 86400:.0f} days"


def _match(
    key: bytes, msg_id: str, signed_ts: datetime, sig_header: tuple[str, str], body: bytes
) -> str | None:
    """None when a signature entry matches, else why not.

    Walks the entries exactly as svix does: space-separated, stopping at the first entry it
    would choke on (svix raises there, so the handler rejects even if a later entry is good).
    """
    # The same HMAC svix computes (the sign/verify agreement is tested), over the raw bytes
    # once; svix itself is asked below, so its work is not done twice per delivery.
    ts = math.floor(signed_ts.timestamp())
    expected = base64.b64decode(_hmac_signature(key, msg_id, ts, body)[3:])
    name, header = sig_header
    versions: list[str] = []
    for entry in header.split(" "):
        if entry == "":
            return f"{name} has an empty entry (two spaces in a row?)"
        parts = entry.split(",")
        if len(parts) == 1:
            return f"{name} entry {entry[:40]!r} has no version prefix"
        if len(parts) > 2:
            return f"{name} entry {entry[:40]!r} has more than one comma"
        version, sig = parts
        versions.append(version)
        if version != "v1":
            continue
        try:
            given = base64.b64decode(sig)
        except ValueError:  # binascii.Error, or non-ASCII text (a plain ValueError)
            return f"{name} entry {entry[:40]!r} is not valid base64"
        if hmac.compare_digest(expected, given):
            return None
    if "v1" not in versions:
        return f"{name} has no v1 entry (versions: {', '.join(versions)})"
    return "no signature matches the secret"


class _CannotJudge(Exception):
    """svix cannot read this body (it decodes it as UTF-8 first); we judge it ourselves."""


def _svix_verdict(key: bytes, found: dict[str, tuple[str, str]], body: bytes) -> str | None:
    """Ask svix itself; None when it accepts, else the message of whatever it raised.

    svix is imported on first use, not with this module: importing it (its whole API client)
    takes ~0.5 s, which every hooktap command paid at start, `hooktap relay` included, which
    never verifies anything. After the first call the import is a dictionary lookup."""
    from svix.webhooks import Webhook, WebhookVerificationError

    try:
        Webhook(key).verify(body, {f"svix-{f}": found[f][1] for f in _FIELDS})
    except UnicodeDecodeError as exc:
        raise _CannotJudge from exc
    except (WebhookVerificationError, ValueError) as exc:  # binascii errors included
        return f"{type(exc).__name__}: {exc}"
    return None


_Signed = tuple[dict[str, tuple[str, str]], datetime]


def _read(headers: Headers) -> _Signed | Verdict:
    """The svix fields and the signed moment, or the verdict on headers that cannot carry a
    signature: "unsigned" (none at all) or "invalid" (no secret could make them pass)."""
    found = _find(headers)
    if not found:
        return Verdict("unsigned", "no svix-id, svix-timestamp or svix-signature header")
    brand = "svix" if any(n.lower().startswith("svix-") for n, _ in found.values()) else "webhook"
    for field in _FIELDS:
        if field not in found:
            return Verdict("invalid", f"missing {brand}-{field} header")
        if found[field][1] == "":
            return Verdict("invalid", f"{found[field][0]} header is empty")
    ts_name, ts_text = found["timestamp"]
    try:
        signed_ts = datetime.fromtimestamp(float(ts_text), tz=UTC)  # as svix; rejects nan/inf
    except (ValueError, OverflowError, OSError):
        return Verdict("invalid", f"{ts_name} {ts_text[:40]!r} is not a number")
    return found, signed_ts


def _verify(
    secret: str | None, headers: Headers, body: bytes, now: float | None, tolerance: int
) -> Verdict:
    read = _read(headers)
    if isinstance(read, Verdict):
        return read
    found, signed_ts = read
    ts = float(found["timestamp"][1])  # parsed by _read; unrounded, unlike the datetime
    if not secret:
        return Verdict(
            "no-secret", "signed, but no secret given (--secret or PIVOTAL_WEBHOOK_SECRET)"
        )
    try:
        key = _secret_key(secret)
    except InvalidSecret as exc:
        return Verdict("no-secret", f"signed, but the secret given is unusable: {exc}")

    clock = time.time() if now is None else now
    age = clock - ts
    # Where svix can judge (wall clock, its own window, a UTF-8 body of at most SVIX_MAX_BODY),
    # its word is final; not within a second of the window's edge, where its later clock read
    # could disagree.
    # Asking it first means a valid delivery costs one HMAC, not two.
    svix_can_judge = (
        now is None
        and tolerance == SVIX_TOLERANCE
        and abs(age) < tolerance - 1
        and len(body) <= SVIX_MAX_BODY
    )
    if svix_can_judge:
        try:
            refusal = _svix_verdict(key, found, body)
        except _CannotJudge:
            pass  # a non-UTF-8 body: judged below, by the same HMAC svix would compute
        else:
            if refusal is None:
                return Verdict("valid", "signature matches the secret")
            problem = _match(key, found["id"][1], signed_ts, found["signature"], body)
            return Verdict("invalid", problem or f"svix rejected it: {refusal}")

    problem = _match(key, found["id"][1], signed_ts, found["signature"], body)
    if age > tolerance or -age > tolerance:
        when = "old" if age > 0 else "in the future"
        sig = (
            "the signature itself matches the secret"
            if problem is None
            else f"the signature does not match either ({problem})"
        )
        return Verdict(
            "expired",
            f"timestamp {describe_age(age)} {when}, tolerance {describe_age(tolerance)}; {sig}",
        )
    if problem is not None:
        return Verdict("invalid", problem)
    return Verdict("valid", "signature matches the secret")


def verify(
    secret: str | None,
    headers: Headers,
    body: bytes,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> Verdict:
    """Judge one delivery's signature. Never raises: whatever arrives, the answer is a Verdict.

    Structural faults (a missing header, a timestamp that is not a number) are reported as
    "invalid" even without a secret, because no secret could make them pass.
    """
    try:
        return _verify(secret, headers, body, now, tolerance)
    except Exception as exc:  # a verdict, never a crash in the listener's loop
        return Verdict("invalid", f"could not verify: {type(exc).__name__}: {exc}")


# --- the re-signing rule ---------------------------------------------------------------------
# Re-signing makes a request genuine in the handler's eyes, so only a delivery whose original
# signature the secret produced may be re-signed; anything else would launder a payload that
# anyone could have posted to the public URL.


def original_matches(secret: str, headers: Headers, body: bytes) -> str | None:
    """None when an entry of the delivery's signature matches `secret`, whatever the age of
    its timestamp (a genuine delivery that is merely old); else why not, in words.

    The check is made now, with the secret given now: a delivery stored as "no-secret" may be
    genuine, and one stored as "valid" under another secret is not. Raises InvalidSecret for
    an unusable secret (a caller's mistake); odd headers or bodies never raise.
    """
    key = _secret_key(secret)
    read = _read(headers)
    if isinstance(read, Verdict):
        return read.reason
    found, signed_ts = read
    try:
        return _match(key, found["id"][1], signed_ts, found["signature"], body)
    except Exception as exc:  # as in verify(): whatever arrived gets an answer
        return f"could not verify: {type(exc).__name__}: {exc}"


def refresh_if_held(
    secret: str, headers: Headers, body: bytes, received_at: float, now: float | None = None
) -> Headers | None:
    """Headers re-signed with a fresh timestamp (same svix-id, same body) for a delivery that
    was valid when it arrived at `received_at` and has expired since, waiting somewhere (paused,
    queued at the relay); None when it needs no refresh or must not get one.

    Valid on arrival, not merely matching: a request captured long ago and posted again was
    already stale when it arrived, and refreshing it would hand the handler a replay attack.
    """
    if verify(secret, headers, body, now=received_at).status != "valid":
        return None
    clock = time.time() if now is None else now
    if verify(secret, headers, body, now=clock).status != "expired":
        return None
    return resign(headers, body, secret, now=int(clock))
