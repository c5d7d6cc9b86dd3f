"""Re-send a stored delivery: the one function behind `hooktap replay`, the TUI's `r` key and
its edit screen, so all three sign, send and record a replay identically.

A replay is a new Attempt linked to the original delivery; the delivery and its first forward
are never touched. With the endpoint secret known, the request is re-signed with a fresh
timestamp (the handler's svix check allows 5 minutes, and a stored delivery is usually older),
keeping the svix-id unless asked for a new one: a handler that de-duplicates on svix-id will
skip a replay that keeps it, which is sometimes the point of the test and sometimes not.

Re-signing vouches for the payload, so only a delivery whose original signature matches the
secret (checked at replay time, whatever its age) is re-signed. Anything else could have been
posted by anyone to the public URL; re-signing it needs `force`, and without it replay raises
NotGenuine before sending anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hooktap.listen.forward import Forwarder
from hooktap.listen.group_commit import StoreCall
from hooktap.listen.http_request import prepare_headers
from hooktap.listen.routes import Routing
from hooktap.listen.target import parse_target
from hooktap.pivotal.signing import (
    DEFAULT_TOLERANCE,
    describe_age,
    is_signed,
    original_matches,
    parse_secret,
    resign,
    signature_header,
)
from hooktap.records import Attempt, Delivery, Headers
from hooktap.store import Store

FORCED = "forced: re-signed although its original signature did not match"


class NotGenuine(ValueError):
    """Re-signing was refused: the original signature does not match the secret, so a re-signed
    copy would look genuine to the handler. Nothing was sent."""

    def __init__(self, delivery_id: str, reason: str) -> None:
        super().__init__(
            f"{delivery_id}: its original signature did not match the secret: {reason}. "
            "Re-signing would make it look genuine to your handler."
        )
        self.delivery_id = delivery_id
        self.reason = reason


def resign_refusal(delivery: Delivery, secret: str | None) -> str | None:
    """Why re-signing `delivery` with `secret` would launder it, or None when it may be
    re-signed, or when there is nothing to re-sign (no secret, or it arrived unsigned)."""
    if not secret or not is_signed(delivery.headers):
        return None
    return original_matches(secret, delivery.headers, delivery.body)


def _stored_mismatch(delivery: Delivery) -> str | None:
    """Without the secret itself, the verdict stored on arrival stands in for the check."""
    reason = delivery.signature_reason or "its verdict on arrival"
    if delivery.signature == "invalid" or (
        delivery.signature == "expired" and "does not match" in reason
    ):
        return reason
    return None


def stored_signature_outlook(
    delivery: Delivery, headers: Headers, *, body_edited: bool, now: float | None = None
) -> str:
    """What a svix-verifying handler will make of a request sent with its stored signature."""
    if not is_signed(headers):
        return "no signature at all (it arrived unsigned)"
    if body_edited:
        return "an invalid signature (the body changed after it was signed)"
    if delivery.signature == "invalid":
        return "an invalid signature (it was already invalid on arrival)"
    stamp = signature_header(headers, "timestamp")
    try:
        age = (time.time() if now is None else now) - float(stamp or "")
    except ValueError:
        return "an invalid signature (no usable svix-timestamp)"
    if abs(age) > DEFAULT_TOLERANCE:
        return (
            f"a stale (expired) signature: signed {describe_age(age)} "
            f"{'ago' if age > 0 else 'in the future'}, svix allows 5 minutes"
        )
    left = DEFAULT_TOLERANCE - abs(age)
    return f"the original signature, inside svix's 5-minute window for {left:.0f} s more"


def describe_replay(
    delivery: Delivery,
    *,
    secret_known: bool,
    as_is: bool = False,
    new_id: bool = False,
    body_edited: bool = False,
    headers_edited: bool = False,
    headers: Headers | None = None,
    now: float | None = None,
    secret: str | None = None,
    force: bool = False,
) -> str:
    """The note stored on the replay's Attempt and shown to the user: how it was signed and,
    when it was not re-signed, what the handler's verification will see.

    With `secret`, whether the original may be re-signed is checked against it; without it
    (only `secret_known`) the stored verdict stands in, which is what the inspector can say
    before a re-send.
    """
    sent = delivery.headers if headers is None else headers
    edited = " and ".join(
        what for what, flag in (("body", body_edited), ("headers", headers_edited)) if flag
    )
    prefix = f"edited {edited}, " if edited else ""
    if not is_signed(sent) and not as_is:
        return f"{prefix}unsigned: sent without a signature, as it arrived"
    if as_is or not secret_known:
        outlook = stored_signature_outlook(delivery, sent, body_edited=body_edited, now=now)
        how = "as-is:" if as_is else "no secret: sent with the stored signature;"
        return f"{prefix}{how} the handler will see {outlook}"
    # The sent headers carry a signature here; the rule asks whether the original's matched.
    mismatch = (
        original_matches(secret, delivery.headers, delivery.body)
        if secret
        else _stored_mismatch(delivery)
    )
    if mismatch is None:
        return prefix + "re-signed" + (", new svix-id" if new_id else "")
    if force:
        return f"{prefix}{FORCED} ({mismatch})" + (", new svix-id" if new_id else "")
    return (
        f"{prefix}re-signed only if you confirm (or with --force): its original signature "
        f"did not match the secret ({mismatch})"
    )


def check_options(
    *, secret: str | None, as_is: bool, new_id: bool, force: bool = False
) -> str | None:
    """Refuse combinations that cannot do what they say; return the canonical secret."""
    if as_is and new_id:
        raise ValueError("--as-is sends the stored headers untouched; it cannot give a new svix-id")
    if as_is and force:
        raise ValueError("--as-is sends the stored headers untouched; there is nothing to force")
    if force and not secret:
        raise ValueError(
            "--force re-signs, which needs the endpoint secret (--secret or PIVOTAL_WEBHOOK_SECRET)"
        )
    if new_id and not secret:
        raise ValueError(
            "a new svix-id needs re-signing: give the endpoint secret "
            "(--secret or PIVOTAL_WEBHOOK_SECRET)"
        )
    return parse_secret(secret) if secret else None  # InvalidSecret is a ValueError


async def replay(
    store: Store,
    delivery_id: str,
    *,
    target: str | None = None,
    secret: str | None = None,
    new_id: bool = False,
    body: bytes | None = None,
    headers: Headers | None = None,
    as_is: bool = False,
    force: bool = False,
    timeout: float = 10.0,
    call: StoreCall = asyncio.to_thread,
) -> Attempt:
    """Send a stored delivery again and record the try as a new "replay" attempt.

    `target` overrides the delivery's stored forward target; `body`/`headers` replace the stored
    ones (an edit). Network failures come back as an Attempt with `error` set, like a forward.
    Its two store calls (read the delivery, record the attempt) go through `call`.
    Raises LookupError for an unknown id (AmbiguousId for an ambiguous prefix), NotGenuine when
    it would re-sign a delivery whose original signature does not match and `force` is not set,
    and ValueError for a bad target, a bad secret or contradictory options.
    """
    check_options(secret=secret, as_is=as_is, new_id=new_id, force=force)
    delivery = await call(store.get, delivery_id)
    if delivery is None:
        raise LookupError(f"no stored delivery with id {delivery_id!r}")
    attempt = await send_copy(
        delivery,
        target or delivery.target,
        secret=secret,
        new_id=new_id,
        body=body,
        headers=headers,
        as_is=as_is,
        force=force,
        timeout=timeout,
    )
    await call(store.add_attempt, attempt)
    return attempt


async def send_copy(
    delivery: Delivery,
    target: str,
    *,
    secret: str | None = None,
    new_id: bool = False,
    body: bytes | None = None,
    headers: Headers | None = None,
    as_is: bool = False,
    force: bool = False,
    timeout: float = 10.0,
) -> Attempt:
    """replay() without the history: send `delivery` (stored, or a HAR file's request) to
    `target` under the re-signing rule, and return the "replay" attempt, not recorded; the
    caller records it on the delivery it belongs to, if there is one. Raises as replay()."""
    key = check_options(secret=secret, as_is=as_is, new_id=new_id, force=force)
    if not target:
        raise ValueError(
            f"delivery {delivery.id} has no stored forward target; give one (--forward 8000)"
        )
    forward_to = parse_target(target)
    send_body = delivery.body if body is None else body
    send_headers = list(delivery.headers if headers is None else headers)
    signed = is_signed(send_headers)
    body_edited = send_body != delivery.body
    resigning = key is not None and signed and not as_is
    if resigning and not force:
        # The rule is about the original: an edit of a genuine one may be re-signed. A signature
        # added by editing the headers of an unsigned one is a forgery too ("no svix-id ...").
        mismatch = original_matches(key, delivery.headers, delivery.body)
        if mismatch is not None:
            raise NotGenuine(delivery.id, mismatch)
    note = describe_replay(
        delivery,
        secret_known=key is not None,
        as_is=as_is,
        new_id=new_id,
        body_edited=body_edited,
        headers_edited=headers is not None,
        headers=send_headers,
        secret=key,
        force=force,
    )
    if resigning:
        assert key is not None
        send_headers = resign(send_headers, send_body, key, new_id=new_id)

    forwarder = Forwarder(forward_to, timeout=timeout, max_connections=1)
    started = time.time()
    try:
        outcome = await forwarder.send(
            delivery.method, delivery.path, delivery.query, send_headers, send_body
        )
    finally:
        await forwarder.close()
    return outcome.attempt(
        delivery.id,
        "replay",
        started_at=started,
        # What the handler was given, as the forwarder puts it on the wire (Host, lengths).
        request_headers=prepare_headers(
            delivery.method, send_headers, send_body, forward_to.netloc
        ),
        request_body=send_body if body_edited else None,
        note=note,
    )


# --- where a replay goes ---------------------------------------------------------------------


class NotRouted(ValueError):
    """The routing in force sends this event type to no handler (filtered or unrouted)."""


class NoRouting(ValueError):
    """Nothing says where to send: no --forward, no hooktap.toml, no running listener."""


def choose_target(
    event_type: str | None,
    stored: str,
    *,
    given: Routing | None,
    in_force: Callable[[], Routing | None],
    what: str = "this delivery",
) -> str:
    """Where a replay goes: where today's routes send its type, as the issue's users expect
    after moving a type to another handler. Those are `given` (--forward) when given, else
    the routing in force (`in_force`: hooktap.toml, else the running listener's routes); with
    neither, the target the delivery went to (`stored`). A HAR file's requests have no stored
    target. Raises NotRouted when today's routing filters the type out or has no route for
    it (the CLI adds that --forward sends it anyway), NoRouting when there is nothing to go by."""
    routing = given or in_force()
    if routing is None:
        if stored:
            return stored
        raise NoRouting(
            f"{what} has no stored target (it was not forwarded) and no routing is in force "
            "(no hooktap.toml, no running listener): give --forward"
        )
    decision = routing.decide(event_type)
    if decision.target is None:
        kind = event_type or "a body with no Pivotal event type"
        if decision.outcome == "filtered":
            raise NotRouted(f"{kind} is filtered out: the routing in force has --events without it")
        raise NotRouted(f"{kind} is unrouted: no route takes it and there is no fallback route")
    return str(decision.target)
