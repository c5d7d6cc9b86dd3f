"""The listener: keeps a websocket to the relay alive, and hands each delivery to the handler.

Exactly-once towards the handler rests on the store: a delivery is written (state
"dispatched") in the instant before its bytes go to the handler, and confirmed to the relay
only after its attempt is stored. A re-sent delivery that is already in the store is
answered from history and never forwarded again.

When history cannot be written, a delivery not yet recorded is refused (handed back to the
relay, which keeps it); one already forwarded is confirmed with the handler's answer, since
the handler has it, and only its outcome is missing from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from hooktap import __version__
from hooktap.bodies import INLINE_BODY_MAX
from hooktap.listen import channel as channels
from hooktap.listen import held, state
from hooktap.listen.channel import ChannelCredentials, RelayRefused
from hooktap.listen.embedded import EmbeddedRelay
from hooktap.listen.events import (
    ConnectionChanged,
    DeliveryForwarded,
    DeliveryReceived,
    DuplicateSkipped,
    ListenerEvent,
    Paused,
    Ready,
    Subscriber,
)
from hooktap.listen.forward import Forwarder, Outcome
from hooktap.listen.group_commit import GroupCommit
from hooktap.listen.target import Target
from hooktap.outbox import Outbox
from hooktap.pivotal.envelope import parse_envelope
from hooktap.pivotal.signing import Verdict, signature_header, verify
from hooktap.protocol import (
    Batch,
    Error,
    Flow,
    ListenerSession,
    Liveness,
    Ping,
    Pong,
    ProtocolError,
    Result,
    encode,
)
from hooktap.protocol import (
    Delivery as WireDelivery,
)
from hooktap.records import Attempt, Delivery
from hooktap.relay import links as relay_links
from hooktap.relay.hub import Link
from hooktap.store import Added, Store, StoreError

log = logging.getLogger("hooktap.listen")

# Hands a delivery's Result back to the relay: over the websocket, or by a direct call.
Reply = Callable[[Result], Awaitable[None]]


@dataclass
class ListenerConfig:
    target: Target
    relay_url: str | None = None  # None: the embedded relay on loopback
    port: int = 8787
    secret: str | None = None
    timeout: float = 10.0
    concurrency: int = 32
    backoff_max: float = 30.0
    paused: bool = False
    takeover: bool = False  # take the channel from a live listener instead of being refused


class Listener:
    def __init__(self, config: ListenerConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.forwarder = Forwarder(config.target, config.timeout, config.concurrency)
        self.embedded: EmbeddedRelay | None = (
            None if config.relay_url else EmbeddedRelay(config.port)
        )
        self.creds: ChannelCredentials | None = None
        self.state = "connecting"
        self.paused = config.paused
        self._subscribers: list[Subscriber] = []
        self._ws: ClientConnection | None = None
        self._slots = asyncio.Semaphore(config.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._announced = False
        self._waiting_for_slot = False
        self._commits = GroupCommit(store)
        # Deliveries being handled, by id: a copy re-sent meanwhile waits for the first.
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._local: Link | None = None
        # Whether the relay of the current connection keeps a delivery we refuse (protocol 2,
        # or the embedded relay); an older one would take a refusal for an acknowledgement.
        self._relay_keeps_refused = False

    @functools.cached_property
    def instance(self) -> str:
        """This listener run's id: the relay tells its reconnects from a second listener."""
        return secrets.token_hex(8)

    @property
    def relay_url(self) -> str:
        if self.config.relay_url:
            return self.config.relay_url.rstrip("/")
        assert self.embedded is not None
        return self.embedded.url

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def _emit(self, event: ListenerEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # an output's bug must not stop forwarding
                log.exception("listener subscriber failed on %r", event)

    def _set_state(self, state: str, detail: str = "", retry_in: float | None = None) -> None:
        self.state = state
        self._emit(ConnectionChanged(state, detail, retry_in))

    # --- lifecycle -----------------------------------------------------------------------

    async def prepare(self) -> ChannelCredentials:
        """Start (or join) the relay and make sure we hold a channel: fails fast on bad setup.

        The relay we serve ourselves is asked for our channel at once, so the URL printed
        first is the one that works even if its data was lost; any other relay only when it
        refuses us (see _refused), since an older relay would not understand the question."""
        if self.embedded is not None:
            await self.embedded.start()
        owned = self.embedded is not None and self.embedded.owned
        self.creds, moved = await channels.ensure(self.relay_url, reclaim_stored=owned)
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
        state.write(creds.webhook_url, str(self.config.target), self.relay_url)
        self.store.background_checkpoints(True)
        # HOOKTAP_HOME deleted or unusable under us: put it back, or stop (see home_guard.py).
        guard = HomeGuard(
            self.store,
            embedded=self.embedded,
            credentials=lambda: self.creds,
            announce=self._emit,
            on_failure=self.stop,
            restore_state=lambda: state.write(
                (self.creds or creds).webhook_url, str(self.config.target), self.relay_url
            ),
        )
        guard.start()
        attempt = 0
        try:
            while not self._stopping.is_set():
                try:
                    if self.embedded is not None and self.embedded.owned:
                        await self._local_session()
                    else:
                        await self._session()
                    attempt = 0
                except RelayRefused:
                    raise
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    detail = _why(exc)
                except ProtocolError as exc:
                    detail = f"protocol error: {exc.reason}"
                else:
                    detail = "connection closed"
                if self._stopping.is_set():
                    break
                if self.embedded is not None and not self.embedded.owned:
                    # The listener whose relay we joined may have exited: take the port over.
                    with contextlib.suppress(RelayRefused, OSError):
                        await self.embedded.try_serve()
                delay = min(self.config.backoff_max, 0.5 * 2**attempt) * random.uniform(0.5, 1)
                attempt = min(attempt + 1, 10)
                self._set_state("disconnected", detail, retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if not self._stopping.is_set():
                    self._set_state("reconnecting", f"attempt {attempt}")
        finally:
            await guard.stop()
            state.clear()
            await self._shutdown()
            self.store.background_checkpoints(False)
        if guard.failure is not None:
            raise guard.failure

    async def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    async def _shutdown(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.timeout + 1)
        self._commits.close()
        await self.forwarder.close()
        if self.embedded is not None:
            await self.embedded.stop()

    async def set_paused(self, paused: bool) -> None:
        """Hold deliveries at the relay (they queue, the sender gets 202) or let them flow."""
        self.paused = paused
        if self._local is not None and self.embedded is not None:
            relay_links.set_paused(self.embedded.app, self._local, paused)
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(encode(Flow(paused)))
        self._emit(Paused(paused))

    # --- one connection ------------------------------------------------------------------

    async def _local_session(self) -> None:
        """Attach to the relay this process serves by function call: the default setup pays
        no websocket framing and no loopback hop per delivery."""
        assert self.creds is not None and self.embedded is not None
        app = self.embedded.app

        async def deliver(frame: WireDelivery) -> None:
            # Wait for a free slot first, as the websocket path does, so a deep queue handed
            # over at once is not all read into memory at once.
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self._handle(reply, frame))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        async def reply(result: Result) -> None:
            relay_links.take_result(app, link, result)

        link = relay_links.attach_local(
            app,
            self.creds.channel,
            self.creds.token,
            deliver,
            self.config.timeout,
            self.paused,
            instance=self.instance,
            history=self.store.history_id,
        )
        self._local = link
        self._relay_keeps_refused = True
        try:
            self._connected(self.creds.webhook_url, relay_links.queue_depth(app, link.channel))
            stopping = asyncio.ensure_future(self._stopping.wait())
            ended = asyncio.ensure_future(link.ended.wait())
            await asyncio.wait({stopping, ended}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            ended.cancel()
            if link.closed and not self._stopping.is_set():
                raise RelayRefused(
                    "another `hooktap listen` connected to this channel and took it over"
                )
        finally:
            self._local = None
            relay_links.release(app, link)

    def _connected(self, webhook_url: str, queued: int) -> None:
        self.state = "connected"
        if not self._announced:
            self._announced = True
            self._emit(
                Ready(
                    webhook_url,
                    str(self.config.target),
                    queued,
                    verifying=self.config.secret is not None,
                )
            )
        self._set_state("connected", webhook_url)

    async def _session(self) -> None:
        assert self.creds is not None
        try:
            ws = await connect(
                self.creds.websocket_url,
                additional_headers={"Authorization": f"Bearer {self.creds.token}"},
                user_agent_header=f"hooktap/{__version__}",
                compression=None,  # deflating megabyte bodies on loopback costs more than it saves
                max_size=None,
                ping_interval=None,  # our own heartbeat frames, below
                open_timeout=10,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            await self._refused(exc)
            return
        session = ListenerSession()
        self._ws = ws
        try:
            await ws.send(
                session.hello(
                    f"hooktap/{__version__}",
                    self.config.timeout,
                    self.paused,
                    instance=self.instance,
                    history=self.store.history_id,
                    takeover=self.config.takeover,
                )
            )
            first = session.receive(await asyncio.wait_for(ws.recv(), 10))
            if isinstance(first, Error):
                raise RelayRefused(f"the relay refused the connection: {first.reason}")
            welcome = session.welcome
            assert welcome is not None
            if welcome.timeout is not None and welcome.timeout < self.config.timeout:
                log.warning(
                    "hooktap: this relay holds a sender at most %g s, less than --timeout %g; "
                    "a handler slower than that is answered 504 by the relay",
                    welcome.timeout,
                    self.config.timeout,
                )
            self._relay_keeps_refused = session.batches  # the same protocol brought both
            self._connected(welcome.webhook_url, welcome.queued)
            liveness = Liveness(welcome.heartbeat, time.monotonic())
            beat = asyncio.create_task(self._heartbeat(ws, liveness))
            outbox = Outbox(ws.send) if session.batches else None
            try:
                await self._receive(ws, session, liveness, partial(_send_quietly, ws, outbox))
            finally:
                beat.cancel()
        finally:
            self._ws = None
            await ws.close()

    async def _receive(
        self, ws: ClientConnection, session: ListenerSession, liveness: Liveness, reply: Reply
    ) -> None:
        async for data in ws:
            liveness.seen(time.monotonic())
            if isinstance(data, str):
                raise ProtocolError("the relay sent a text message")
            frame = session.receive(data)
            if isinstance(frame, WireDelivery):
                await self._take(frame, liveness, reply)
            elif isinstance(frame, Batch):
                for delivery in frame.frames:
                    assert isinstance(delivery, WireDelivery)  # ListenerSession checked them
                    await self._take(delivery, liveness, reply)
            elif isinstance(frame, Ping):
                await ws.send(encode(Pong(frame.sent_at)))
            elif isinstance(frame, Error):
                if frame.code == "replaced":
                    raise RelayRefused(
                        "another `hooktap listen` connected to this channel and took it over"
                    )
                raise ProtocolError(frame.reason, frame.code)

    async def _take(self, frame: WireDelivery, liveness: Liveness, reply: Reply) -> None:
        """Start handling a delivery once a slot is free."""
        if self._slots.locked():
            # Back-pressure: frames wait in the socket while the handler is busy, which is
            # not the relay going silent.
            self._waiting_for_slot = True
            liveness.seen(time.monotonic())
        await self._slots.acquire()
        self._waiting_for_slot = False
        liveness.seen(time.monotonic())
        task = asyncio.create_task(self._handle(reply, frame))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("delivery handling failed", exc_info=exc)

    async def _heartbeat(self, ws: ClientConnection, liveness: Liveness) -> None:
        """Ping the relay; if it goes silent (half-open socket, sleep), drop the connection so
        the reconnect loop runs instead of a listener that looks connected but is not."""
        while True:
            await asyncio.sleep(liveness.interval)
            if self._waiting_for_slot:
                liveness.seen(time.monotonic())
            elif liveness.dead(time.monotonic()):
                log.info("relay silent for %.0f s; reconnecting", liveness.window)
                ws.transport.abort()
                return
            try:
                await ws.send(encode(Ping(time.time())))
            except ConnectionClosed:
                return

    async def _refused(self, exc: InvalidStatus) -> None:
        status = exc.response.status_code
        reason = _reason(exc)
        reclaimed = getattr(self, "_reclaimed", False)
        if status in (403, 404) and self.creds is not None and not reclaimed:
            # The relay does not know our channel for our token (it lost its data, or is not
            # the one that made it). Re-claiming by token is idempotent and yields the channel
            # the token owns; once per refusal streak, so a relay that keeps refusing ends it.
            self.creds, moved = await channels.reclaim(self.creds)
            self._reclaimed = True
            if moved:
                log.warning("hooktap: %s", moved)
                self._set_state("reconnecting", moved)
            return
        if status in (401, 403, 404):
            again = " even after re-claiming the channel by its token" if reclaimed else ""
            raise RelayRefused(f"the relay refused this listener{again} ({status}): {reason}")
        raise ConnectionError(f"relay answered {status}: {reason}")

    # --- one delivery --------------------------------------------------------------------

    async def _handle(self, reply: Reply, frame: WireDelivery) -> None:
        while (earlier := self._inflight.get(frame.id)) is not None:
            # The relay re-sent it (a reconnect) while we still work on it: wait, then judge
            # it like any other copy. History answers it if the first was stored; if storing
            # it failed, it was never forwarded and this copy may go.
            await asyncio.shield(earlier)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[frame.id] = done
        try:
            await self._forward(reply, frame)
        except StoreError as exc:
            # From _forward only when the delivery could not be recorded, which comes before
            # any byte of it reaches the handler.
            await self._refuse(reply, frame.id, exc)
        finally:
            del self._inflight[frame.id]
            done.set_result(None)

    async def _refuse(self, reply: Reply, delivery_id: str, exc: StoreError) -> None:
        """Disk full, HOOKTAP_HOME unwritable: say so plainly, and hand the delivery back at
        once so the relay keeps it and answers its sender now, not after the timeout."""
        log.error(
            "hooktap: a delivery was not forwarded because it could not be recorded in "
            "history first (%s); the relay keeps it for the next connection",
            exc,
        )
        if not self._relay_keeps_refused:
            return  # an older relay times out on it and keeps it: slower, but nothing is lost
        reason = f"hooktap could not record it in its history ({exc})"
        await reply(
            Result(
                delivery_id,
                503,
                [("Content-Type", "text/plain; charset=utf-8")],
                f"{reason}; not forwarded\n".encode(),
                error=reason,
                refused=True,
            )
        )

    async def _forward(self, reply: Reply, frame: WireDelivery) -> None:
        if len(frame.body) > INLINE_BODY_MAX:
            # A big body's HMAC runs without the GIL (see signing.SVIX_MAX_BODY): on a worker
            # thread it leaves the loop free for other deliveries meanwhile.
            verdict = await asyncio.get_running_loop().run_in_executor(
                None, verify, self.config.secret, frame.headers, frame.body
            )
        else:
            verdict = verify(self.config.secret, frame.headers, frame.body)
        if frame.handed_before:
            await self._not_forwarded(reply, frame, verdict)
            return
        sending = held.prepare(
            self.config.secret, frame.headers, frame.body, frame.received_at, verdict
        )
        delivery = self._record(frame, sending.verdict)
        adding: asyncio.Future[Added] | None = None

        async def dispatched(write: Callable[[], None]) -> None:
            # The request's bytes are written right after the delivery is committed, in the
            # same callback: from then on the handler may have it, so a restart must not
            # forward it again. Deliveries dispatched in the same loop tick share the commit.
            nonlocal adding
            adding = self._commits.add(delivery, then=write)
            if not (await asyncio.shield(adding)).new:
                raise _AlreadyStored
            self._emit(DeliveryReceived(delivery))

        try:
            outcome = await self.forwarder.send(
                frame.method,
                frame.path,
                frame.query,
                sending.headers,
                frame.body,
                remote=frame.remote,
                scheme=frame.scheme,
                host=frame.host,
                on_dispatch=dispatched,
            )
        except _AlreadyStored:
            await self._answer_again(reply, frame.id)
            return
        if adding is None:  # never reached the handler (refused, timed out connecting)
            adding = self._commits.add(delivery)
            added = await adding
            if not added.new:
                await self._answer_again(reply, frame.id)
                return
            self._emit(DeliveryReceived(delivery))
        else:
            added = await adding
        attempt = _attempt(delivery.id, "forward", outcome)
        attempt.note = "; ".join(n for n in (sending.note, _cut_note(outcome)) if n)
        if sending.headers is not frame.headers:
            attempt.request_headers = sending.headers  # what the handler got: re-signed
        await self._finish(reply, delivery, attempt, _result(delivery.id, outcome), added)

    async def _finish(
        self, reply: Reply, delivery: Delivery, attempt: Attempt, result: Result, added: Added
    ) -> None:
        """Record the outcome, then answer the relay, then tell the outputs."""
        try:
            await self._commits.finish(delivery.id, attempt)
        except StoreError as exc:
            # The handler has it, so the sender gets its answer and the outputs show it all
            # the same; only history misses the outcome (the delivery stays "dispatched").
            log.error(
                "hooktap: delivery %s was forwarded (status %s) but its outcome could not be "
                "recorded in history (%s)",
                delivery.id,
                attempt.status if attempt.status is not None else attempt.error,
                exc,
            )
        else:
            if delivery.state != "interrupted":
                delivery.state = "done"
        # The sender is waiting on the relay for this: answer first, then tell the outputs,
        # a loop turn later, so that in-process the relay writes the sender's response before
        # a log line is formatted.
        await reply(result)
        asyncio.get_running_loop().call_soon(
            self._emit, DeliveryForwarded(delivery, attempt, added.svix_seen)
        )

    async def _not_forwarded(self, reply: Reply, frame: WireDelivery, verdict: Verdict) -> None:
        """A delivery the relay handed to a listener with another history, which never
        confirmed it. That listener may have forwarded it, and this history cannot tell, so it
        is recorded and shown, not sent: a replay sends it once the user has checked."""
        delivery = self._record(frame, verdict)
        delivery.state = "interrupted"
        added = await self._commits.add(delivery)
        if not added.new:
            await self._answer_again(reply, frame.id)
            return
        self._emit(DeliveryReceived(delivery))
        why = (
            "not forwarded: the relay had handed it to another listener (with its own "
            "history), which never confirmed it, so your handler may have it already; "
            f"check, then `hooktap replay {frame.id}` (or r in the inspector) to send it"
        )
        attempt = Attempt(
            delivery_id=delivery.id,
            kind="forward",
            started_at=time.time(),
            target_url=str(self.config.target),
            error=why,
        )
        # The sender was answered 202 when the relay kept it: this only confirms it.
        result = Result(delivery.id, 502, error=why, duplicate=True)
        await self._finish(reply, delivery, attempt, result, added)

    def _record(self, frame: WireDelivery, verdict: Verdict) -> Delivery:
        envelope = parse_envelope(frame.body)
        svix_id = signature_header(frame.headers, "id")
        return Delivery(
            id=frame.id,
            received_at=frame.received_at,
            method=frame.method,
            path=frame.path,
            query=frame.query,
            headers=frame.headers,
            body=frame.body,
            channel=self.creds.channel if self.creds else "",
            target=str(self.config.target),
            signature=verdict.status,
            signature_reason=verdict.reason,
            svix_id=svix_id,
            event_id=envelope.id if envelope else None,
            event_type=envelope.type if envelope else None,
            event_created_at=envelope.created_at if envelope else None,
            state="dispatched",
        )

    async def _answer_again(self, reply: Reply, delivery_id: str) -> None:
        """A delivery we already took: confirm it from history instead of forwarding twice."""
        state = self.store.get_state(delivery_id) or "missing"
        first = self.store.first_attempt(delivery_id)
        if first is not None:
            result = Result(
                delivery_id,
                first.status if first.status is not None else 502,
                first.response_headers,
                first.response_body,
                first.duration_ms,
                first.error,
                duplicate=True,
            )
        else:
            # Stored as dispatched but no attempt: the listener stopped mid-forward. The
            # handler may well have it; sending it again could double-process it.
            self.store.mark(delivery_id, "interrupted")
            state = "interrupted"
            result = Result(
                delivery_id,
                502,
                body=b"hooktap listener restarted while forwarding this delivery\n",
                error="listener stopped mid-forward; not re-sent to avoid a duplicate "
                "(use `hooktap replay` to send it again)",
                duplicate=True,
            )
        self._emit(DuplicateSkipped(delivery_id, state))
        await reply(result)


class _AlreadyStored(Exception):
    """Raised from the dispatch hook to abort a send: this id is in history already."""


def _attempt(delivery_id: str, kind: str, outcome: Outcome) -> Attempt:
    return Attempt(
        delivery_id=delivery_id,
        kind=kind,
        started_at=time.time() - outcome.duration_ms / 1000,
        target_url=outcome.url,
        status=outcome.status,
        response_headers=outcome.headers,
        response_body=outcome.body,
        duration_ms=outcome.duration_ms,
        error=outcome.error,
    )


def _result(delivery_id: str, outcome: Outcome) -> Result:
    if outcome.status is not None:
        headers = outcome.headers
        if outcome.truncated:
            # The forwarder stopped reading at its cap: the sender gets what was read, marked.
            headers = [*headers, ("X-Hooktap-Truncated", f"body cut at {len(outcome.body)} bytes")]
        return Result(delivery_id, outcome.status, headers, outcome.body, outcome.duration_ms)
    status = 504 if outcome.timed_out else 502
    message = f"hooktap: {outcome.error}\n".encode()
    return Result(
        delivery_id,
        status,
        [("Content-Type", "text/plain; charset=utf-8")],
        message,
        outcome.duration_ms,
        outcome.error,
    )


def _cut_note(outcome: Outcome) -> str:
    if not outcome.truncated:
        return ""
    return (
        f"response body cut at {len(outcome.body)} bytes: the handler sent more, and hooktap "
        "stopped reading there"
    )


async def _send_quietly(ws: ClientConnection, outbox: Outbox | None, result: Result) -> None:
    """A result lost with the connection is fine: the relay re-sends, we answer from history."""
    with contextlib.suppress(ConnectionClosed):
        if outbox is not None:
            await outbox.put(encode(result))
        else:
            await ws.send(encode(result))


def _reason(exc: InvalidStatus) -> str:
    try:
        body = json.loads(exc.response.body or b"")
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return exc.response.reason_phrase or "refused"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "relay not reachable (connection refused)"
    if isinstance(exc, ConnectionClosed):
        return "connection to the relay closed"
    if isinstance(exc, TimeoutError):
        return "relay did not answer in time"
    return str(exc) or type(exc).__name__
