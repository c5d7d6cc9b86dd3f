"""The listener linked by function call to the relay its own process serves."""

from __future__ import annotations

from hooktap.listen.channel import ChannelCredentials, RelayRefused
from hooktap.listen.transport import TAKEN_OVER, Opened, Take, Transport
from hooktap.protocol import Hello, Result
from hooktap.relay.embed import InProcessRelay, Link


class InProcessTransport(Transport):
    """No framing and no socket: the relay awaits `take` for each delivery, and each Result
    goes straight to its queue. Nothing here can go silent, so there is no heartbeat; the link
    ends only when this side closes it or another listener takes the channel."""

    def __init__(self, relay: InProcessRelay, creds: ChannelCredentials) -> None:
        self.relay = relay
        self.creds = creds
        self._link: Link | None = None
        self._closing = False

    async def open(self, hello: Hello, take: Take) -> Opened:
        link = await self.relay.attach(
            self.creds.channel,
            self.creds.token,
            take,
            timeout=hello.timeout,
            paused=hello.paused,
            instance=hello.instance,
            history=hello.history,
        )
        self._link = link
        return Opened(self.creds.webhook_url, self.relay.depth(link.channel), keeps_refused=True)

    async def serve(self) -> None:
        assert self._link is not None
        if not self._closing:
            await self._link.ended.wait()
        if not self._closing:
            raise RelayRefused(TAKEN_OVER)

    async def send_result(self, result: Result) -> None:
        # Also after close(): the relay still confirms what this listener recorded.
        assert self._link is not None
        await self.relay.take_result(self._link, result)

    async def pause(self, paused: bool) -> None:
        if self._link is not None:
            self.relay.pause(self._link, paused)

    def queued(self) -> int | None:
        if self._link is None or self._closing:
            return None
        return self.relay.depth(self._link.channel)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._link is not None:
            await self.relay.release(self._link)
