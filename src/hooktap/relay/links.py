"""What the relay does with a listener's link, whether it is a websocket or the in-process
link of the embedded relay: admit it, hand over the queue, take results, pause, let go.

Both kinds of link go through these functions, so a delivery is queued, re-offered and
confirmed the same way whichever way it travels: the websocket endpoint (listener_ws.py)
calls them for its frames, and relay/embed.py for a listener in the same process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from hooktap.protocol import Error, ProtocolError, Result, encode
from hooktap.relay.hub import REOFFER_FIRST, REOFFER_MAX, Link
from hooktap.relay.keys import DB, HUB

log = logging.getLogger("hooktap.relay")


class ChannelBusy(Exception):
    """A second listener asked for a channel whose listener is alive, without --takeover."""


def busy_reason(holder: Link) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(holder.connected_at))
    who = "the `hooktap listen` that runs this relay" if holder.ws is None else holder.client
    return (
        f"another listener holds this channel ({who or 'a listener'}, connected since "
        f"{since}); stop it first, or start this one with --takeover to take the channel over"
    )


def admit(app: web.Application, link: Link, takeover: bool) -> Link | None:
    """Make `link` the channel's listener, unless another live listener holds it.

    The same listener reconnecting (same instance id), or a holder that has gone silent, is
    replaced without asking; a live one only on takeover. Returns the replaced link, if any;
    raises ChannelBusy otherwise."""
    holder = app[HUB].holder(link.channel)
    if (
        holder is not None
        and not takeover
        and not (link.instance and link.instance == holder.instance)
        and holder.alive(time.monotonic())
    ):
        raise ChannelBusy(busy_reason(holder))
    replaced = app[HUB].attach(link)
    app[DB].touch(link.channel)
    if replaced is not None:
        asyncio.get_running_loop().create_task(replace(replaced))
    return replaced


async def replace(old: Link) -> None:
    """A newer listener took the channel: the older one is told why and let go. Deliveries it
    was given but never confirmed are kept (ingress sees their waiters resolve to None)."""
    old.close()
    if old.ws is not None:
        await refuse(old.ws, ProtocolError("another listener took this channel over", "replaced"))


async def refuse(ws: web.WebSocketResponse, exc: ProtocolError) -> None:
    """Say why, then close cleanly: the peer learns the reason, the relay keeps serving."""
    if ws.closed:
        return
    try:
        await ws.send_bytes(encode(Error(exc.code, exc.reason)))
        await ws.close(code=1002 if exc.code != "replaced" else 4000, message=exc.code.encode())
    except (ConnectionError, RuntimeError):
        pass


def take_result(app: web.Application, link: Link, result: Result) -> None:
    """The listener stored a delivery: forget it here, and answer its waiting sender.

    A refusal is no acknowledgement: a queued delivery stays queued, and ingress queues a live
    one. The queue is offered again after a backoff, so a listener whose disk filled up gets
    its deliveries once it can record them, without having to reconnect."""
    if result.refused:
        # Refused means it never reached the handler: no listener "may have it" any more.
        app[DB].mark_handed(link.channel, result.id, None)
        _schedule_reoffer(app, link)
    else:
        app[DB].confirm(link.channel, result.id)
        link.reoffer_delay = REOFFER_FIRST
    link.resolve(result)


def _schedule_reoffer(app: web.Application, link: Link) -> None:
    if link.reoffer_due or link.closed:
        return
    link.reoffer_due = True
    delay = link.reoffer_delay
    link.reoffer_delay = min(REOFFER_MAX, delay * 2)

    async def later() -> None:
        await asyncio.sleep(delay)
        link.reoffer_due = False
        if not link.paused:
            await flush(app, link)

    spawn(link, later())


def set_paused(app: web.Application, link: Link, paused: bool) -> None:
    """Pause: new deliveries queue (202). Resume: hand the queue over."""
    link.paused = paused
    if not paused:
        spawn(link, flush(app, link))


def release(app: web.Application, link: Link) -> None:
    app[HUB].detach(link)
    app[DB].touch(link.channel)
    for task in list(link.tasks):
        task.cancel()


def spawn(link: Link, coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    link.tasks.add(task)
    task.add_done_callback(link.tasks.discard)


async def flush(app: web.Application, link: Link) -> None:
    """Hand over the channel's queue in arrival order.

    Each delivery is marked with the history it is handed to before it goes. One that an
    earlier listener with another history was given and never confirmed goes out flagged
    `handed_before`: that listener may have forwarded it, and this one cannot know, so it
    records it without forwarding rather than risk the handler getting it twice."""
    db = app[DB]
    for delivery, handed_to in db.pending(link.channel):
        if link.closed or link.paused:
            return
        if delivery.id in link.sent:
            continue
        who = handed_to_mark(link)
        delivery.handed_before = bool(handed_to) and handed_to != who
        # Marked before it goes, so that after any crash the relay errs towards "may have
        # it" (recorded, not forwarded) and never towards a second forward.
        if handed_to != who:
            db.mark_handed(link.channel, delivery.id, who)
        if not await link.push(delivery):
            if handed_to != who:
                db.mark_handed(link.channel, delivery.id, handed_to)  # nothing went out
            return


def handed_to_mark(link: Link) -> str:
    """What the queue records as the history a delivery was handed to. An older listener
    names none; "unknown" never equals a real history, so nobody de-duplicates against it."""
    return link.history or "unknown"
