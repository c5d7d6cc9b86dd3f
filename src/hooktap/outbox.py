"""One websocket message per event-loop tick, for whichever side sends many small frames.

Under load a relay wake-up serves several senders and a listener's wake-up finishes several
forwards; sending each of their frames alone costs a message, a write and a wake-up of the
peer apiece. An Outbox gathers the frames put in one tick and a single task, which starts
after them, sends them as one Batch (protocol 2). At concurrency 1 there is nothing to
gather and a frame goes alone, one loop turn later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hooktap.protocol import MAX_BATCH, encode_batch

# A Batch stops growing at this many bytes: batching is for many small frames, and a
# megabyte body gains nothing from company.
BATCH_BYTES = 256 * 1024


class Outbox:
    def __init__(self, send: Callable[[bytes], Awaitable[object]]) -> None:
        self._send = send
        self._frames: list[bytes] = []
        self._sending: asyncio.Future[None] | None = None

    async def put(self, frame: bytes) -> None:
        """Return once the message carrying `frame` is written; raise what sending raised."""
        self._frames.append(frame)
        if self._sending is None:
            self._sending = asyncio.ensure_future(self._drain())
        # Shielded: a sender that gives up must not cancel the send its neighbours wait on.
        await asyncio.shield(self._sending)

    async def _drain(self) -> None:
        try:
            while self._frames:
                frames = _take(self._frames)
                await self._send(frames[0] if len(frames) == 1 else encode_batch(frames))
        except BaseException:
            self._frames.clear()  # the connection is gone; so is every frame meant for it
            raise
        finally:
            self._sending = None


def _take(frames: list[bytes]) -> list[bytes]:
    """The first frames, up to MAX_BATCH of them or BATCH_BYTES, and at least one."""
    size, count = 0, 0
    for frame in frames:
        if count and (count == MAX_BATCH or size + len(frame) > BATCH_BYTES):
            break
        size += len(frame)
        count += 1
    taken = frames[:count]
    del frames[:count]
    return taken
