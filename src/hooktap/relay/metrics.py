"""Prometheus counters for one relay; a registry per app so tests can run several relays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from hooktap.relay.broker import Broker
    from hooktap.relay.hub import Hub


class RelayMetrics:
    def __init__(self, broker: Broker, hub: Hub) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "hooktap_relay_deliveries_received",
            "Requests accepted on a channel's public URL",
            registry=self.registry,
        )
        self.answered = Counter(
            "hooktap_relay_deliveries_answered",
            "Deliveries answered with the listener's result, by status",
            ["status"],
            registry=self.registry,
        )
        self.queued = Counter(
            "hooktap_relay_deliveries_queued",
            "Deliveries answered 202 and kept for a listener that was not there",
            registry=self.registry,
        )
        self.rejected = Counter(
            "hooktap_relay_requests_rejected",
            # unknown-channel, stale-channel, queue-full, channel-bytes (503), store-bytes
            # (507), too-large (413), slow-body (408), busy (503: no memory for the body in
            # time), bad-body (it broke off), store-failed
            "Requests refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        depth = Gauge(
            "hooktap_relay_queue_depth",
            "Deliveries stored and not yet confirmed by a listener",
            registry=self.registry,
        )
        depth.set_function(lambda: float(broker.depth()))
        queued_bytes = Gauge(
            "hooktap_relay_queue_bytes",
            "Bytes of bodies stored and not yet confirmed by a listener (--max-store-mb caps it)",
            registry=self.registry,
        )
        queued_bytes.set_function(lambda: float(broker.queued_bytes()))
        listeners = Gauge(
            "hooktap_relay_listeners_connected",
            "Listener websockets currently connected",
            registry=self.registry,
        )
        listeners.set_function(lambda: float(hub.connected()))
        # A broker with more to show (NATS: its stream, the live route's latency) adds it.
        register = getattr(broker, "register_metrics", None)
        if register is not None:
            register(self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
