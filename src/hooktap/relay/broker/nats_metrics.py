"""What `/metrics` shows of a relay on NATS, besides what every relay shows (relay/metrics.py).

- The queue stream as JetStream itself counts it (messages and bytes, every instance's
  kept deliveries together), read with the depths the broker refreshes every REFRESH s;
- its replicas (1 on a NATS server that is not a cluster of three: the queue lives on
  one node);
- the live route's request-reply latency, observed on the instance that sent the request
  (a webhook posted here for a listener held by another instance), from the request to
  the reply: NATS both ways plus the listener's handler.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

# Seconds: a reply carries the local handler's answer, so the tail reaches its timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NatsStats:
    """Filled by the broker, read by the registry when /metrics is scraped."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.replicas = 0
        self.latency: Histogram | None = None

    def register(self, registry: CollectorRegistry) -> None:
        for name, what in (
            ("messages", "Deliveries in the JetStream queue stream, kept by any instance"),
            ("bytes", "Bytes of the JetStream queue stream, kept by any instance"),
            ("replicas", "Copies of the queue stream kept by the NATS cluster"),
        ):
            gauge = Gauge(f"hooktap_relay_nats_stream_{name}", what, registry=registry)
            gauge.set_function(lambda name=name: float(getattr(self, name)))
        self.latency = Histogram(
            "hooktap_relay_nats_request_seconds",
            "Live deliveries sent from this instance over NATS to the instance holding the "
            "listener: seconds until the reply (the handler's answer) came back",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, seconds: float) -> None:
        if self.latency is not None:
            self.latency.observe(seconds)
