"""The listener: keeps a connection to the relay alive, reconnects with backoff, and passes
each delivery to its Pipeline, which records it, forwards it once and answers the relay.

The connection is a Transport (see hooktap.listen.transport): a websocket, or the in-process
link to the relay this process serves. Both are driven the same way here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace

from hooktap import __version__, tls
from hooktap.listen import channel as channels
from hooktap.listen import state
from hooktap.listen.channel import ChannelCredentials, RelayRefused
from hooktap.listen.config import ListenerConfig
from hooktap.listen.embedded import EmbeddedRelay
from hooktap.listen.events import (
    ConnectionChanged,
    ListenerEvent,
    Paused,
    PublicChanged,
    Ready,
    Subscriber,
    TargetHealth,
)
from hooktap.listen.forward import Forwarder
from hooktap.listen.health import HealthWatch
from hooktap.listen.pipeline import Pipeline
from hooktap.listen.transport import HandshakeRefused, Transport
from hooktap.listen.transport.inprocess import InProcessTransport
from hooktap.listen.transport.websocket import WebSocketTransport
from hooktap.protocol import Delivery as WireDelivery
from hooktap.protocol import Hello, ProtocolError
from hooktap.public import (
    Public,
    PublicUnavailable,
    TunnelChange,
    open_public,
    webhook_url,
)
from hooktap.relay.embed import InProcessRelay
from hooktap.store import Store

log = logging.getLogger("hooktap.listen")


class Listener:
    """`in_process`: a relay this process already serves at `config.relay_url`, to link to by
    function call as `hooktap listen` does with the relay it embeds (which, without a
    relay_url, it starts itself)."""

    def __init__(
        self, config: ListenerConfig, store: Store, *, in_process: InProcessRelay | None = None
    ) -> None:
        self.config = config
        self.store = store
        assert config.routing is not None  # set by ListenerConfig.__post_init__
        self.routing = config.routing
        # One Forwarder for each distinct target: the only way out of this process to a handler.
        self.forwarders = [
            Forwarder(target, config.timeout, config.concurrency) for target in self.routing.targets
        ]
        self.forwarder = next(f for f in self.forwarders if f.target == self.routing.primary)
        self.embedded: EmbeddedRelay | None = (
            None if config.relay_url else EmbeddedRelay(config.port)
        )
        if in_process is not None and self.embedded is not None:
            raise ValueError("in_process is a relay served at config.relay_url: give its URL")
        self._in_process = in_process
        self.creds: ChannelCredentials | None = None
        self.state = "connecting"
        self.paused = config.paused
        self._subscribers: list[Subscriber] = []
        self.connection: Transport | None = None  # while connected
        self._slots = asyncio.Semaphore(config.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._announced = False
        self.pipeline = Pipeline(store, self.forwarders, self.routing, config.secret, self._emit)
        self._public: Public | None = None  # with --public, once its URL carried a probe
        self._relay_queued: int | None = None  # an earlier connection's last word on the queue
        self._relays = (
            [config.relay_url.rstrip("/"), *(url.rstrip("/") for url in config.other_relays)]
            if config.relay_url
            else []
        )
        self._at = 0  # the relay in self._relays this listener uses now
        self._opened = False  # the current session got past its handshake
        self._refused_by: set[str] = set()  # relays that said no since the last connection
        self._state_url: str | None = None  # the webhook URL listener.json names
        # With config.healthcheck, while run() runs: each target's latest state is in
        # health.states. What it says before Ready waits for it, so the ready line stays first.
        self.health: HealthWatch | None = None
        self._health_early: list[TargetHealth] = []

    @functools.cached_property
    def instance(self) -> str:
        """This listener run's id: the relay tells its reconnects from a second listener."""
        return secrets.token_hex(8)

    @property
    def relay_url(self) -> str:
        """The relay used now: with several --relay URLs, the one connected to or tried next."""
        if self._relays:
            return self._relays[self._at]
        assert self.embedded is not None
        return self.embedded.url

    def _others_may_take(self, exc: RelayRefused) -> bool:
        """One instance said no before the connection was made (it wants a key we lack, its
        certificate is not trusted...): another may say yes. The listener gives up once
        every one of its relays has said no in a row, as it does at once with one relay."""
        if self._opened or len(self._relays) < 2:
            return False  # taken over, or the only relay there is
        self._refused_by.add(self.relay_url)
        if len(self._refused_by) == len(self._relays):
            return False
        log.warning("hooktap: %s; trying the next relay", exc)
        return True

    def _next_relay(self) -> None:
        """The relay in use could not be reached or refused: the next one gets the next try,
        and after the last, the first again. The token goes with it: it is the channel's on
        every instance."""
        if len(self._relays) < 2:
            return
        self._at = (self._at + 1) % len(self._relays)
        self._reclaimed = False  # another instance: it may need the channel re-claimed anew
        if self.creds is not None:
            self.creds = replace(self.creds, relay=self.relay_url)

    def _own_relay(self) -> InProcessRelay | None:
        """The relay this process serves, if it does: the listener links to it in process."""
        if self._in_process is not None:
            return self._in_process
        if self.embedded is not None and self.embedded.owned:
            return self.embedded.relay
        return None

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def _emit(self, event: ListenerEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # an output's bug must not stop forwarding
                log.exception("listener subscriber failed on %r", event)

    def _set_state(
        self, state: str, detail: str = "", retry_in: float | None = None, relay: str = ""
    ) -> None:
        self.state = state
        self._emit(ConnectionChanged(state, detail, retry_in, relay or self.relay_url))

    # --- lifecycle -----------------------------------------------------------------------

    async def prepare(self) -> ChannelCredentials:
        """Start (or join) the relay and make sure we hold a channel: fails fast on bad setup.

        The relay we serve ourselves is asked for our channel at once, so the URL printed
        first is the one that works even if its data was lost; any other relay only when it
        refuses us (see _refused), since an older relay would not understand the question."""
        if self.embedded is not None:
            await self.embedded.start()
        if len(self._relays) > 1:
            self.creds, moved = await channels.ensure_any(self._relays, self.config.access), None
            self._at = self._relays.index(self.creds.relay)
        else:
            self.creds, moved = await channels.ensure(
                self.relay_url,
                reclaim_stored=self._own_relay() is not None,
                access=self.config.access,
            )
        if moved:
            log.warning("hooktap: %s", moved)

        def end_refusal_streak(event: ListenerEvent) -> None:
            # Connected again: should the relay forget us later, _refused may re-claim anew.
            if isinstance(event, ConnectionChanged) and event.state == "connected":
                self._reclaimed = False

        self._reclaimed = False
        self.subscribe(end_refusal_streak)
        return self.creds

    async def run(self) -> None:
        """Stay connected until stop(): reconnect forever, with backoff and jitter."""
        # Imported here, not with the others: this method is all it takes to wire it in.
        from hooktap.listen.home_guard import HomeGuard

        creds = self.creds or await self.prepare()
        # Tell `hooktap trigger` where this listener's webhook URL is while it runs.
        self._write_state(creds.webhook_url)
        self._state_url = creds.webhook_url
        self.store.background_checkpoints(True)
        # HOOKTAP_HOME deleted or unusable under us: put it back, or stop (see home_guard.py).
        guard = HomeGuard(
            self.store,
            call=self.pipeline.commits.call,
            embedded=self.embedded,
            credentials=lambda: self.creds,
            announce=self._emit,
            on_failure=self.stop,
            restore_state=lambda: self._write_state((self.creds or creds).webhook_url),
            relays=self._relays,
        )
        guard.start()
        probing = self._watch_targets()
        attempt = 0
        exits = contextlib.AsyncExitStack()
        try:
            if self.config.public is not None:
                self._public = await exits.enter_async_context(self._go_public(creds))
            while not self._stopping.is_set():
                try:
                    await self._session()
                    attempt = 0
                except RelayRefused as exc:
                    if not self._others_may_take(exc):
                        raise
                    detail, refused = str(exc), True
                except (OSError, TimeoutError) as exc:  # transport.Disconnected included
                    detail = _why(exc)
                    refused = not self._opened
                except ProtocolError as exc:
                    detail = f"protocol error: {exc.reason}"
                    refused = not self._opened
                else:
                    detail, refused = "connection closed", False
                if self._stopping.is_set():
                    break
                failed = self.relay_url
                # Refused or unreachable: the next instance. A connection that dropped after it
                # was made tries the same instance first (its network may just have blinked).
                if refused:
                    self._next_relay()
                if self.embedded is not None and not self.embedded.owned:
                    # The listener whose relay we joined may have exited: take the port over.
                    with contextlib.suppress(RelayRefused, OSError):
                        await self.embedded.try_serve()
                delay = min(self.config.backoff_max, 0.5 * 2**attempt) * random.uniform(0.5, 1)
                attempt = min(attempt + 1, 10)
                self._set_state("disconnected", detail, retry_in=delay, relay=failed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if not self._stopping.is_set():
                    self._set_state("reconnecting", f"attempt {attempt}")
        finally:
            await exits.aclose()
            if self.health is not None and probing is not None:
                self.health.stop()
                await asyncio.gather(probing, return_exceptions=True)
            await guard.stop()
            state.clear()
            await self._shutdown()
            self.store.background_checkpoints(False)
        if guard.failure is not None:
            raise guard.failure

    @contextlib.asynccontextmanager
    async def _go_public(self, creds: ChannelCredentials) -> AsyncIterator[Public]:
        """The channel's ingress, alone, through the --public provider: ready only once a
        probe sent to the public URL has come back in (see hooktap.public)."""
        provider = self.config.public
        assert provider is not None
        if self.embedded is None or not self.embedded.owned:
            raise RelayRefused(
                "--public exposes the relay this `hooktap listen` runs, but another one holds "
                f"port {self.config.port}: stop it, or pick another --port"
            )

        def changed(change: TunnelChange) -> None:
            url = webhook_url(change.url, creds.channel) if change.url else None
            self._emit(PublicChanged(url, change.reason, change.retry_in))

        try:
            async with open_public(
                self.embedded.app,
                creds.channel,
                provider,
                on_change=changed,
                connect_to=self.config.public_connect_to,
            ) as public:
                yield public
        except PublicUnavailable as exc:
            raise RelayRefused(str(exc)) from None

    def _watch_targets(self) -> asyncio.Task[None] | None:
        """Probe the targets from the start, while the relay connects: a handler that is
        down is said right after the ready line, before a webhook fails on it."""
        if not self.config.healthcheck:
            return None

        def told(event: TargetHealth) -> None:
            if self._announced:
                self._emit(event)
            else:
                self._health_early.append(event)

        self.health = HealthWatch(self.routing.targets, told, interval=self.config.health_interval)
        return asyncio.get_running_loop().create_task(self.health.run())

    def _write_state(self, webhook_url: str) -> None:
        """listener.json: where `hooktap trigger` sends, and the routes `replay` and `trigger`
        follow while this listener runs."""
        state.write(
            webhook_url,
            str(self.routing.primary),
            self.relay_url,
            routes=self.routing.describe(),
            events=list(self.routing.events),
        )

    def queued_at_relay(self) -> int | None:
        """How many deliveries the relay holds for this channel (while paused they wait
        there), or None where it has not said: the embedded relay's count is read in
        memory; a websocket relay's comes with each heartbeat's Pong."""
        connection = self.connection
        if connection is not None and (queued := connection.queued()) is not None:
            return queued
        return self._relay_queued

    async def stop(self) -> None:
        self._stopping.set()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()

    async def _shutdown(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.timeout + 1)
        self.pipeline.commits.close()
        for forwarder in self.forwarders:
            await forwarder.close()
        if self.embedded is not None:
            await self.embedded.stop()

    async def set_paused(self, paused: bool) -> None:
        """Hold deliveries at the relay (they queue, the sender gets 202) or let them flow."""
        self.paused = paused
        if self.connection is not None:
            await self.connection.pause(paused)
        self._emit(Paused(paused))

    # --- one connection ------------------------------------------------------------------

    def _transport(self, creds: ChannelCredentials) -> Transport:
        """The relay this process serves by function call: the default setup pays no
        websocket framing and no loopback hop per delivery. Any other over a websocket."""
        relay = self._own_relay()
        if relay is not None:
            return InProcessTransport(relay, creds)
        return WebSocketTransport(creds, self.config.access)

    async def _session(self) -> None:
        """One connection, from its Hello (or attach) to its end."""
        assert self.creds is not None
        self._opened = False
        connection = self._transport(self.creds)
        hello = Hello(
            client=f"hooktap/{__version__}",
            timeout=self.config.timeout,
            paused=self.paused,
            instance=self.instance,
            history=self.store.history_id,
            takeover=self.config.takeover,
        )
        reply = connection.send_result

        async def take(frame: WireDelivery) -> None:
            # Wait for a free slot first, so a deep queue handed over at once is not all
            # read into memory at once: the relay (or the socket) waits meanwhile.
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self.pipeline.handle(reply, frame))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        try:
            try:
                opened = await connection.open(hello, take)
            except HandshakeRefused as exc:
                await self._refused(exc)
                return
            except ssl.SSLCertVerificationError as exc:
                if self._announced:
                    raise  # it was trusted a moment ago (renewal under way?): keep retrying
                raise RelayRefused(
                    tls.certificate_problem(self.relay_url, exc, self.config.ca_file)
                ) from None
            if self._stopping.is_set():
                return  # stop() came while connecting: it had nothing to close yet
            self.connection = connection
            self._opened = True
            self.pipeline.relay_keeps_refused = opened.keeps_refused
            self._connected(opened.webhook_url, opened.queued)
            await connection.serve()
        finally:
            self.connection = None
            if (queued := connection.queued()) is not None:
                self._relay_queued = queued
            await connection.close()

    def _connected(self, webhook_url: str, queued: int) -> None:
        self.state = "connected"
        self._refused_by.clear()
        if self.creds is not None:  # a re-claim may have changed it since the last connection
            self.pipeline.channel = self.creds.channel
        creds = self.creds
        if len(self._relays) > 1 and creds is not None and self._state_url != webhook_url:
            # Another instance, not behind one public URL: `hooktap trigger` must use its URL.
            self.creds = replace(creds, webhook_url=webhook_url)
            with contextlib.suppress(OSError):  # HOOKTAP_HOME lost: the home guard rewrites it
                self._write_state(webhook_url)
            self._state_url = webhook_url
        if not self._announced:
            self._announced = True
            public = self._public
            self._emit(
                Ready(
                    webhook_url,
                    str(self.routing.primary),
                    queued,
                    verifying=self.config.secret is not None,
                    secret_source=self.config.secret_source,
                    secret_file=self.config.secret_file,
                    secret_made_now=self.config.secret_made_now,
                    public_url=public.webhook_url if public else None,
                    public_note=public.stability_note if public else None,
                    relay=self.relay_url,
                    routes=() if self.routing.simple else tuple(self.routing.describe()),
                    events=self.routing.events,
                )
            )
            early, self._health_early = self._health_early, []
            for told in early:  # probed while connecting: said once the ready line is out
                self._emit(told)
        self._set_state("connected", webhook_url)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("delivery handling failed", exc_info=exc)

    async def _refused(self, exc: HandshakeRefused) -> None:
        status, reason = exc.status, exc.reason
        reclaimed = getattr(self, "_reclaimed", False)
        if status in (403, 404) and self.creds is not None and not reclaimed:
            # The relay does not know our channel for our token (it lost its data, or is not
            # the one that made it). Re-claiming by token is idempotent and yields the channel
            # the token owns; once per refusal streak, so a relay that keeps refusing ends it.
            self.creds, moved = await channels.reclaim(self.creds, self.config.access)
            self._reclaimed = True
            if len(self._relays) > 1:
                channels.share(self.creds, self._relays)
            if moved:
                log.warning("hooktap: %s", moved)
                self._set_state("reconnecting", moved)
            return
        if status in (401, 403, 404):
            again = " even after re-claiming the channel by its token" if reclaimed else ""
            raise RelayRefused(f"the relay refused this listener{again} ({status}): {reason}")
        raise ConnectionError(f"relay answered {status}: {reason}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the relay's certificate is not trusted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with the relay failed: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "relay not reachable (connection refused)"
    if isinstance(exc, TimeoutError):
        return "relay did not answer in time"
    return str(exc) or type(exc).__name__
