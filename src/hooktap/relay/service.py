"""The relay as one object: its parts, and what its doors ask of it.

A relay app keeps one `RelayService` under `keys.RELAY`. It holds the settings, the channel
registry and queue, this instance's listener links, the counters, the drain state, the memory
budget for bodies and the rate limiters. The doors call its methods and hold no state of
their own: the ingress (relay/ingress.py, and the `--public` door, which shares this same
object), the listener's websocket (relay/listener_ws.py) and a listener in this very process
(relay/embed.py's InProcessRelay) attach a link, take a result, pause, release, flush, and
read the depth the same way, so a delivery is queued, re-offered and confirmed alike
whichever way it travels.
"""

from __future__ import annotations

import asyncio
import time

from hooktap.protocol import ProtocolError, Result
from hooktap.relay.config import RelayConfig
from hooktap.relay.db import RelayDB
from hooktap.relay.drain import Drain
from hooktap.relay.hub import REOFFER_FIRST, REOFFER_MAX, Hub, Link
from hooktap.relay.metrics import RelayMetrics
from hooktap.relay.rates import Rates
from hooktap.relay.upload import Budget


class ChannelBusy(Exception):
    """A second listener asked for a channel whose listener is alive, without --takeover."""


def busy_reason(holder: Link) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(holder.connected_at))
    who = "the `hooktap listen` that runs this relay" if holder.ws is None else holder.client
    return (
        f"another listener holds this channel ({who or 'a listener'}, connected since "
        f"{since}); stop it first, or start this one with --takeover to take the channel over"
    )


def handed_to_mark(link: Link) -> str:
    """What the queue records as the history a delivery was handed to. An older listener
    names none; "unknown" never equals a real history, so nobody de-duplicates against it."""
    return link.history or "unknown"


class RelayService:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.db = RelayDB(config.data_dir / "relay.db")
        self.hub = Hub()
        self.metrics = RelayMetrics(self.db, self.hub)
        self.drain = Drain()
        self.budget = Budget(config.max_inflight_bytes)
        self.rates = Rates(config)

    def close(self) -> None:
        self.db.close()

    # --- a listener's link ---------------------------------------------------------------

    def handler_timeout(self, asked: float) -> float:
        """How long a sender is held for a listener's handler: what the listener asked, at
        most the relay's max_handler_timeout (1e9 s would hang senders), whichever way the
        listener is linked."""
        return min(float(asked), self.config.max_handler_timeout)

    def admit(self, link: Link, takeover: bool) -> Link | None:
        """Make `link` the channel's listener, unless another live listener holds it.

        The same listener reconnecting (same instance id), or a holder that has gone silent,
        is replaced without asking; a live one only on takeover. Returns the replaced link,
        if any; raises ChannelBusy otherwise."""
        holder = self.hub.holder(link.channel)
        if (
            holder is not None
            and not takeover
            and not (link.instance and link.instance == holder.instance)
            and holder.alive(time.monotonic())
        ):
            raise ChannelBusy(busy_reason(holder))
        replaced = self.hub.attach(link)
        self.db.touch(link.channel)
        if replaced is not None:
            # A newer listener took the channel: the older one is told why and let go.
            # Deliveries it was given but never confirmed are kept (ingress sees their
            # waiters resolve to None).
            reason = ProtocolError("another listener took this channel over", "replaced")
            asyncio.get_running_loop().create_task(replaced.refuse(reason))
        return replaced

    def take_result(self, link: Link, result: Result) -> None:
        """The listener stored a delivery: forget it here, and answer its waiting sender.

        A refusal is no acknowledgement: a queued delivery stays queued, and ingress queues
        a live one. The queue is offered again after a backoff, so a listener whose disk
        filled up gets its deliveries once it can record them, without having to reconnect."""
        if result.refused:
            # Refused means it never reached the handler: no listener "may have it" any more.
            self.db.mark_handed(link.channel, result.id, None)
            self._schedule_reoffer(link)
        else:
            self.db.confirm(link.channel, result.id)
            link.reoffer_delay = REOFFER_FIRST
        link.resolve(result)

    def _schedule_reoffer(self, link: Link) -> None:
        if link.reoffer_due or link.closed:
            return
        link.reoffer_due = True
        delay = link.reoffer_delay
        link.reoffer_delay = min(REOFFER_MAX, delay * 2)

        async def later() -> None:
            await asyncio.sleep(delay)
            link.reoffer_due = False
            if not link.paused:
                await self.flush(link)

        link.spawn(later())

    def pause(self, link: Link, paused: bool) -> None:
        """Pause: new deliveries queue (202). Resume: hand the queue over."""
        link.paused = paused
        if not paused:
            link.spawn(self.flush(link))

    def release(self, link: Link) -> None:
        self.hub.detach(link)
        self.db.touch(link.channel)
        for task in list(link.tasks):
            task.cancel()

    async def flush(self, link: Link) -> None:
        """Hand over the channel's queue in arrival order.

        Each delivery is marked with the history it is handed to before it goes. One that an
        earlier listener with another history was given and never confirmed goes out flagged
        `handed_before`: that listener may have forwarded it, and this one cannot know, so it
        records it without forwarding rather than risk the handler getting it twice."""
        db = self.db
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

    def depth(self, channel: str) -> int:
        """How many deliveries wait in the channel's queue (read in memory)."""
        return self.db.depth(channel)
