"""The relay as one object: its parts, and what its doors ask of it.

A relay app keeps one `RelayService` under `keys.RELAY`. It holds the settings, this
instance's listener links (`hub`), the broker behind them (`broker`: channels, queues, and
the route to whichever instance holds a listener; relay/broker/), the counters, the drain
state, the memory budget for bodies and the rate limiters. The doors hold no state of their
own: the ingress (relay/ingress.py, and the `--public` door, which shares this same object)
delivers and keeps; the listener's websocket (relay/listener_ws.py) and a listener in this
very process (relay/embed.py's InProcessRelay) attach a link, take results, pause, release,
flush and read the depth through the same methods, so a delivery is queued, re-offered and
confirmed alike whichever way it travels.
"""

from __future__ import annotations

import asyncio
import time

from hooktap.protocol import Delivery, ProtocolError, Result
from hooktap.relay.broker import Broker, ChannelBusy, Offered
from hooktap.relay.broker.local import LocalBroker
from hooktap.relay.broker.nats_connect import NatsConnect
from hooktap.relay.config import RelayConfig
from hooktap.relay.drain import Drain
from hooktap.relay.hub import Hub, Link
from hooktap.relay.metrics import RelayMetrics
from hooktap.relay.rates import Rates
from hooktap.relay.upload import Budget


def busy_reason(holder: Link) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(holder.connected_at))
    who = "the `hooktap listen` that runs this relay" if holder.ws is None else holder.client
    return (
        f"another listener holds this channel ({who or 'a listener'}, connected since "
        f"{since}); stop it first, or start this one with --takeover to take the channel over"
    )


class RelayService:
    def __init__(
        self,
        config: RelayConfig,
        nats: list[str] | None = None,
        nats_connect: NatsConnect | None = None,
    ) -> None:
        """`nats`: the NATS servers of instances sharing JetStream (broker/nats.py, started
        with the app; `nats_connect`: its credentials and TLS); None: this machine's own
        SQLite queue."""
        self.config = config
        self.nats = nats or None
        self.hub = Hub()
        self.broker: Broker
        if nats:
            # Imported here: nats-py is the optional `nats` extra.
            from hooktap.relay.broker.nats import JetStreamBroker

            self.broker = JetStreamBroker(
                nats,
                self.hub,
                max_queue=config.max_queue,
                max_store_bytes=config.max_store_bytes,
                max_body=config.max_body,
                max_handler_timeout=config.max_handler_timeout,
                connect=nats_connect,
            )
        else:
            self.broker = LocalBroker(config.data_dir / "relay.db", self.hub)
        self.metrics = RelayMetrics(self.broker, self.hub)
        self.drain = Drain()
        self.budget = Budget(config.max_inflight_bytes)
        self.rates = Rates(config)

    async def start(self) -> None:
        """Connect a broker that lives beyond this process (the app's startup)."""
        start = getattr(self.broker, "start", None)
        if start is not None:
            await start()

    async def close(self) -> None:
        await self.broker.close()

    # --- what the ingress does -----------------------------------------------------------

    async def deliver(self, channel: str, delivery: Delivery) -> Offered:
        """Hand a delivery to the channel's live listener and wait for its answer (see
        Broker.offer: NotHeld, NoAnswer). A drain waits for it before the relay stops."""
        with self.drain.passthrough():
            return await self.broker.offer(channel, delivery, self.config.result_grace)

    async def keep(self, channel: str, delivery: Delivery, handed_to: str | None) -> None:
        """Keep it for the channel's next listener; durable once this returns (KeepFailed)."""
        await self.broker.keep(channel, delivery, handed_to)

    def depth(self, channel: str) -> int:
        """How many deliveries wait in the channel's queue (read in memory)."""
        return self.broker.depth(channel)

    # --- what a listener's link does -----------------------------------------------------

    def handler_timeout(self, asked: float) -> float:
        """How long a sender is held for a listener's handler: what the listener asked, at
        most the relay's max_handler_timeout (1e9 s would hang senders), whichever way the
        listener is linked."""
        return min(float(asked), self.config.max_handler_timeout)

    async def attach(self, link: Link, takeover: bool) -> Link | None:
        """Make `link` the channel's listener, unless another live listener holds it.

        The same listener reconnecting (same instance id), or a holder that has gone silent,
        is replaced without asking; a live one only on takeover. Returns the replaced link,
        if any; raises ChannelBusy otherwise. The queue is not handed over yet (`flush`):
        a websocket listener must have its Welcome first."""
        holder = self.hub.holder(link.channel)
        if (
            holder is not None
            and not takeover
            and not (link.instance and link.instance == holder.instance)
            and holder.alive(time.monotonic())
        ):
            raise ChannelBusy(busy_reason(holder))
        replaced = self.hub.attach(link)  # before any await: two at once cannot both pass
        if replaced is not None:
            # A newer listener took the channel: the older one is told why and let go.
            # Deliveries it was given but never confirmed stay kept (the ingress sees their
            # waiters resolve to None and keeps them).
            reason = ProtocolError("another listener took this channel over", "replaced")
            asyncio.get_running_loop().create_task(replaced.refuse(reason))
        try:
            await self.broker.attach(link, takeover)
        except ChannelBusy:
            self.hub.detach(link)
            raise
        return replaced

    async def take_result(self, link: Link, result: Result) -> None:
        """The listener's Result for a delivery: confirmed, or refused and kept (see
        Broker.settle); then its waiting sender, if any, is answered."""
        await self.broker.settle(link, result)
        link.resolve(result)

    def pause(self, link: Link, paused: bool) -> None:
        """Pause: new deliveries queue (202). Resume: hand the queue over."""
        link.paused = paused
        if not paused:
            link.spawn(self.flush(link))

    async def flush(self, link: Link) -> None:
        """Hand the channel's queue over to the link, in arrival order."""
        await self.broker.hand_over(link)

    async def release(self, link: Link) -> None:
        """The link is gone: senders waiting on it are answered 202 (kept), its tasks end."""
        self.hub.detach(link)
        for task in list(link.tasks):
            task.cancel()
        await self.broker.detach(link)
