"""The stream relays sharing NATS keep deliveries in: one subject per channel
(`hooktap.q.<channel>`), work-queue retention (a message goes once it is acked), and the
relay's bounds enforced by the server itself: --max-queue per channel (a new message past it
is refused, never an old one dropped) and --max-store-mb in all."""

from __future__ import annotations

import logging

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import APIError

log = logging.getLogger("hooktap.relay")

STREAM = "HOOKTAP_QUEUE"
QUEUE = "hooktap.q."
STREAM_EXISTS = 10058  # JetStream's "stream name already in use with a different configuration"


def stream_config(replicas: int, max_queue: int, max_bytes: int, max_body: int) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=[QUEUE + "*"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_msgs_per_subject=max_queue,
        max_bytes=max_bytes,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msg_size=max_body + 1024 * 1024,  # the frame's metadata besides the body
        duplicate_window=120.0,  # a publish retried within it is stored once (Nats-Msg-Id)
        num_replicas=replicas,
    )


async def make_stream(js: JetStreamContext, max_queue: int, max_bytes: int, max_body: int) -> int:
    """Make (or update) the stream; return its replicas, and say how many at start (a
    warning for one: an operator who meant to run a cluster learns it here, not when a
    node dies)."""
    replicas = await _make_stream(js, max_queue, max_bytes, max_body)
    if replicas < 3:
        log.warning(
            "NATS JetStream keeps the queue (stream %s) in %d replica(s), not 3: the NATS "
            "servers are not a cluster of three or more, so deliveries kept for listeners "
            "that are not connected live on one NATS node and are lost with it",
            STREAM,
            replicas,
        )
    else:
        log.info("NATS JetStream keeps the queue (stream %s) in %d replicas", STREAM, replicas)
    return replicas


async def _make_stream(js: JetStreamContext, max_queue: int, max_bytes: int, max_body: int) -> int:
    """Three copies on a cluster of three or more servers (one server lost, no kept delivery
    lost), else one. A stream another instance made keeps its replicas and takes this
    instance's bounds."""
    for replicas in (3, 1):
        config = stream_config(replicas, max_queue, max_bytes, max_body)
        try:
            await js.add_stream(config)
        except APIError as exc:
            if exc.err_code != STREAM_EXISTS:
                if replicas > 1:  # not a cluster of three
                    continue
                raise
            info = await js.stream_info(STREAM)
            config.num_replicas = replicas = info.config.num_replicas or 1
            await js.update_stream(config)
        return replicas
    raise AssertionError("unreachable: the last attempt returns or raises")
