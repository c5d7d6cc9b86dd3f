"""What Pivotal posts to: `/c/{channel}[/tail]`.

With a listener connected the delivery goes straight to it and the sender waits for the
handler's answer; without one it is written to the channel's queue and answered 202. The
sender gets exactly one of those: a delivery the relay keeps is never also answered as a
failure the sender would retry, or the handler would get it twice.

What is kept is capped in bytes, per channel (503 past it) and for the whole relay (507),
checked against Content-Length before the body is read and against its real size before it
is written. The body itself is read by `upload.read_body`, which bounds memory and time.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from multidict import CIMultiDict

from hooktap.http_grammar import HOP_BY_HOP, is_field_value, is_token
from hooktap.protocol import Delivery
from hooktap.relay.broker import KeepFailed, NoAnswer, NotHeld, TooLarge
from hooktap.relay.config import CONFIG, forwarded_from, problem
from hooktap.relay.db import new_delivery_id
from hooktap.relay.keys import RELAY
from hooktap.relay.metrics import RelayMetrics
from hooktap.relay.rates import channel_rate
from hooktap.relay.service import RelayService
from hooktap.relay.upload import BodyRefused, read_body

log = logging.getLogger("hooktap.relay")

# Seconds a sender refused by a byte cap is told to wait: room comes back when a listener
# connects and takes the queue, which a retry every minute notices soon enough.
CAP_RETRY_AFTER = 60

# aiohttp frames the answer to the sender itself, so the handler's own length goes too.
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}


def _tail_and_query(request: web.Request) -> tuple[str, str]:
    """The raw (still percent-encoded) path after /c/{channel}, and the raw query.

    Taken from the target's path component: an absolute-form target (`POST
    http://host/c/CH/x`) carries a scheme and host before it, which are not the path."""
    target = request.rel_url
    raw_path = target.raw_path
    prefix_end = raw_path.find("/", len("/c/"))
    tail = raw_path[prefix_end:] if prefix_end != -1 else ""
    return tail, target.raw_query_string


async def ingress(request: web.Request) -> web.StreamResponse:
    """Push to the live listener and pass its answer back, or keep the delivery and answer 202."""
    channel = request.match_info["channel"]
    relay = request.app[RELAY]
    broker, config, stats = relay.broker, relay.config, relay.metrics
    state = await broker.channel_state(channel, config.channel_ttl)
    if state == "unknown":
        stats.rejected.labels("unknown-channel").inc()
        return problem(404, f"no channel {channel!r} on this relay")
    if state == "stale" and relay.hub.holder(channel) is None:
        stats.rejected.labels("stale-channel").inc()
        days = config.channel_ttl / 86400
        return problem(
            410,
            f"no listener has claimed channel {channel!r} for over {days:g} days; deliveries "
            "to it are no longer accepted (a listener that connects to it revives it)",
        )
    if (limited := await channel_rate(request, channel)) is not None:
        return limited
    if broker.depth(channel) >= config.max_queue:
        stats.rejected.labels("queue-full").inc()
        resp = problem(
            503,
            f"channel queue is full ({config.max_queue} deliveries waiting for a listener); "
            "retry later",
        )
        resp.headers["Retry-After"] = "60"
        return resp
    length = request.content_length
    if not broker.listening(channel) and (refused := _over_cap(relay, channel, length)):
        return refused
    try:
        async with read_body(request) as body:
            # The body's bytes stay counted in the memory budget until the sender is answered.
            return await _accept(request, channel, body)
    except BodyRefused as refusal:
        stats.rejected.labels(refusal.label).inc()
        return refusal.response()


async def _accept(request: web.Request, channel: str, body: bytes) -> web.Response:
    """Push the delivery to the live listener, or keep it."""
    relay = request.app[RELAY]
    stats, drain = relay.metrics, relay.drain
    now = time.time()
    tail, query = _tail_and_query(request)
    # The door's own proxies: the --public door also believes its tunnel on loopback.
    remote, scheme, host = forwarded_from(request, request.app[CONFIG].trusted_proxies)
    delivery = Delivery(
        id=new_delivery_id(now),
        received_at=now,
        method=request.method,
        path=tail,
        query=query,
        headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers],
        body=body,
        remote=remote,
        scheme=scheme,
        host=host,
    )
    live = not drain.draining and relay.broker.listening(channel)
    if not live and (refused := _over_cap(relay, channel, len(body))):
        return refused  # checked again with its real size: no await until it is counted
    stats.received.inc()
    if drain.draining:
        # Its listener is about to be told to go: keep it for whoever serves this URL next.
        return await _keep(relay, channel, delivery, "the relay is restarting", None)
    if live:
        try:
            return await _pass_through(request, channel, delivery)
        except NotHeld:
            # No listener after all (a broker's hint can lag): kept like any other.
            if refused := _over_cap(relay, channel, len(body)):
                return refused
    return await _keep(relay, channel, delivery, "no listener is connected", None)


async def _pass_through(request: web.Request, channel: str, delivery: Delivery) -> web.Response:
    """Hand a delivery to the live listener and answer with its handler's answer; keep it
    (202) if the listener cannot answer and the sender is still there to be told."""
    relay = request.app[RELAY]
    stats = relay.metrics
    # A live listener gets it straight from memory: the sender has not been answered yet, so
    # if the relay dies now the sender retries. Only what we answer 202 for must be on disk,
    # and it is written there before that answer.
    try:
        offered = await relay.deliver(channel, delivery)
    except NoAnswer as late:
        # The listener has it (or will, past its deadline) and said nothing. Keeping it as
        # well would hand the handler a second copy when the sender retries this 504, so the
        # relay lets it go: the sender's retry is the one copy that may still come.
        stats.answered.labels("504").inc()
        wait = late.wait
        log.warning("listener on %s reported no result for %s in %g s", channel, delivery.id, wait)
        return problem(
            504,
            f"the listener took the delivery but reported no result within {wait:g} s; it is "
            "not kept here, so retry it",
            id=delivery.id,
        )
    result = offered.result
    if result is None and offered.handed_to is None:
        return await _keep(relay, channel, delivery, "the listener disconnected", None)
    if result is None or result.refused:
        if result is not None:
            why = f"the listener could not take it: {result.error}"
        elif relay.drain.draining:
            why = "the relay is restarting and the listener had not answered yet"
        else:
            why = "the listener disconnected before answering"
        if _sender_gone(request):
            # Nobody will read a 202, so nobody would know it was kept: the sender retries.
            log.info("sender of %s left before an answer; not kept", delivery.id)
            return problem(502, f"{why}; not kept, since the sender had gone", id=delivery.id)
        # A refused delivery never reached the handler; one cut off by a disconnect may have,
        # and the queue remembers which history was given it.
        return await _keep(relay, channel, delivery, why, offered.handed_to)
    stats.answered.labels(str(result.status)).inc()
    # A listener is a peer too: a header it reports that HTTP cannot carry (CR, LF, NUL) is
    # dropped, not allowed to fail the response to the sender.
    headers = CIMultiDict(
        (name, value)
        for name, value in result.headers
        if name.lower() not in _RESPONSE_DROP and is_token(name) and is_field_value(value)
    )
    status = result.status if result.status is not None else 502
    return web.Response(status=status, body=result.body, headers=headers)


def _over_cap(relay: RelayService, channel: str, size: int | None) -> web.Response | None:
    """503 if keeping `size` more bytes would pass the channel's cap, 507 if the relay's;
    None if it fits (or its size is not known yet: it is checked again once read).

    Only what is about to be queued is checked: a body handed to a live listener is not
    queued bytes, and one that falls back to the queue when its listener goes is kept
    whatever the caps say, since its sender was never refused."""
    if size is None:
        return None
    broker, config = relay.broker, relay.config
    mine, every = broker.queued_bytes(channel), broker.queued_bytes()
    caps = (
        (503, "channel-bytes", "this channel", mine, config.max_channel_bytes, "--max-channel-mb"),
        (507, "store-bytes", "the relay", every, config.max_store_bytes, "--max-store-mb"),
    )
    for status, label, whose, kept, cap, option in caps:
        if kept + size > cap:
            relay.metrics.rejected.labels(label).inc()
            mib = 1024 * 1024
            resp = problem(
                status,
                f"{whose} already keeps {kept / mib:.1f} MiB of deliveries for listeners that "
                f"are not connected, and this one ({size} bytes) would pass its cap of "
                f"{cap / mib:g} MiB; retry once a listener has taken some (the relay's operator "
                f"can raise the cap with `hooktap relay {option}`)",
            )
            resp.headers["Retry-After"] = str(CAP_RETRY_AFTER)
            return resp
    return None


def _sender_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _keep(
    relay: RelayService, channel: str, delivery: Delivery, why: str, handed_to: str | None
) -> web.Response:
    """Keep the delivery for the channel's listener and answer 202 once it is on disk; 503 if
    it cannot be kept now, 413 if it never can be (resending cannot help: no Retry-After)."""
    try:
        await relay.keep(channel, delivery, handed_to)
    except TooLarge as exc:
        relay.metrics.rejected.labels("too-large").inc()
        return problem(413, str(exc))
    except KeepFailed as exc:
        log.error("cannot store a delivery for %s: %s", channel, exc)
        relay.metrics.rejected.labels("store-failed").inc()
        resp = problem(503, f"the relay could not store the delivery ({exc}); retry later")
        resp.headers["Retry-After"] = "30"
        return resp
    return _queued(relay.metrics, delivery.id, why)


def _queued(stats: RelayMetrics, delivery_id: str, why: str) -> web.Response:
    stats.queued.inc()
    return web.json_response(
        {
            "queued": True,
            "id": delivery_id,
            "reason": f"{why}; the delivery is stored and will be handed over the next time "
            "a listener connects",
        },
        status=202,
    )
