"""One delivery, top to bottom (`Pipeline._forward`): judge its signature, prepare the
request, wait for its record to commit, write the request, read the handler's answer, record
the outcome, answer the relay, tell the outputs.

Exactly-once towards the handler rests on the store: a delivery is written (state
"dispatched") in the instant before its bytes go to the handler (the write rides in the
commit's callback), and confirmed to the relay only after its attempt is stored. A re-sent
delivery that is already in the store is answered from history and never forwarded again.

When history cannot be written, a delivery not yet recorded is refused (handed back to the
relay, which keeps it); one already forwarded is confirmed with the handler's answer, since
the handler has it, and only its outcome is missing from history.

Which handler it goes to is the Routing's decision by its event type (routes.py): a route's
target, each served by its own Forwarder, the only code that opens outbound sockets, so a
delivery can reach a configured target and nothing else. One outside --events ("filtered"),
or that no route takes ("unrouted"), is stored and answered 200 without reaching any handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import orjson

from hooktap.bodies import INLINE_BODY_MAX
from hooktap.filters import NOT_FORWARDED  # states stored, answered 200, sent to no handler
from hooktap.listen import held
from hooktap.listen.events import (
    DeliveryForwarded,
    DeliveryNotForwarded,
    DeliveryReceived,
    DuplicateSkipped,
    ListenerEvent,
)
from hooktap.listen.forward import Forwarder, Outcome
from hooktap.listen.group_commit import GroupCommit
from hooktap.listen.routes import Decision, Route, Routing, not_forwarded_reason
from hooktap.listen.target import Target
from hooktap.pivotal.envelope import Envelope, parse_envelope
from hooktap.pivotal.signing import Verdict, signature_header, verify
from hooktap.protocol import Delivery as WireDelivery
from hooktap.protocol import Result
from hooktap.records import Attempt, Delivery
from hooktap.store import Added, Store, StoreError

log = logging.getLogger("hooktap.listen")

# Hands a delivery's Result back to the relay: over the websocket, or by a direct call.
Reply = Callable[[Result], Awaitable[None]]


def as_routing(target: Target | Routing) -> Routing:
    """One target is the routing of a listener without routes: it takes every delivery."""
    return target if isinstance(target, Routing) else Routing((Route(None, target),))


class Pipeline:
    """Handles deliveries for one listener; `handle` is the entry point, one call each."""

    def __init__(
        self,
        store: Store,
        forwarders: Forwarder | Iterable[Forwarder],
        routing: Routing | Target,
        secret: str | None,
        emit: Callable[[ListenerEvent], None],
    ) -> None:
        """`forwarders`: one for each of the routing's targets (a single target's Forwarder
        when there are no routes)."""
        self.store = store
        self.routing = as_routing(routing)
        given = [forwarders] if isinstance(forwarders, Forwarder) else list(forwarders)
        self.forwarders = {f.target: f for f in given}
        missing = [str(t) for t in self.routing.targets if t not in self.forwarders]
        if missing:
            raise ValueError(f"no Forwarder for the route target(s) {', '.join(missing)}")
        self.secret = secret
        self._emit = emit
        self.commits = GroupCommit(store)
        self.channel = ""  # recorded on each delivery
        # Whether the relay of the current connection keeps a delivery we refuse (protocol 2,
        # or the embedded relay); an older one would take a refusal for an acknowledgement.
        self.relay_keeps_refused = False
        # Deliveries being handled, by id: a copy re-sent meanwhile waits for the first.
        self._inflight: dict[str, asyncio.Future[None]] = {}

    async def handle(self, reply: Reply, frame: WireDelivery) -> None:
        """Take one delivery the relay handed over, forward it at most once, and send its
        Result back through `reply`: the handler's answer, history's for a copy already
        taken, or a refusal when it cannot be recorded (the relay then keeps it)."""
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
        if not self.relay_keeps_refused:
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
        envelope = parse_envelope(frame.body)
        decision = self.routing.decide(envelope.type if envelope else None)
        if len(frame.body) > INLINE_BODY_MAX:
            # A big body's HMAC runs without the GIL (see signing.SVIX_MAX_BODY): on a worker
            # thread it leaves the loop free for other deliveries meanwhile.
            verdict = await asyncio.get_running_loop().run_in_executor(
                None, verify, self.secret, frame.headers, frame.body
            )
        else:
            verdict = verify(self.secret, frame.headers, frame.body)
        if decision.target is None:
            await self._skip(reply, self._record(frame, verdict, envelope, decision), decision)
            return
        if frame.handed_before:
            delivery = self._record(frame, verdict, envelope, decision)
            await self._not_forwarded(reply, delivery, HANDED_BEFORE, decision.route)
            return
        forwarder = self.forwarders[decision.target]
        # 1. Prepare the request: re-signed if the relay held it past the signature's
        # tolerance, its head built and checked (an unsafe one is never written).
        sending = held.prepare(self.secret, frame.headers, frame.body, frame.received_at, verdict)
        delivery = self._record(frame, sending.verdict, envelope, decision)
        request = forwarder.prepare(
            frame.method,
            frame.path,
            frame.query,
            sending.headers,
            frame.body,
            remote=frame.remote,
            scheme=frame.scheme,
            host=frame.host,
        )
        added: Added | None = None  # the record, once committed
        async with forwarder.open(request) as exchange:  # a free slot, a connection
            late = exchange.ready and _too_late(frame)
            if exchange.ready and not late:
                # 2. Wait for the record to commit, and 3. write: in the commit's own
                # callback, so no loop turn passes between the record being durable and the
                # handler possibly having the bytes (a restart then never forwards it again).
                # Deliveries of the same loop tick share the commit. A copy that history
                # holds already is not written at all.
                added = await asyncio.shield(self.commits.add(delivery, then=exchange.write))
                if added.new:
                    self._emit(DeliveryReceived(delivery))
                    # 4. Exchange: write, if the socket died before the commit's callback
                    # could (a fresh one then), and read the handler's answer.
                    await exchange.answer()
        if late:  # every slot was busy until the relay had answered the sender 504
            await self._not_forwarded(reply, delivery, TOO_LATE, decision.route)
            return
        outcome = exchange.outcome
        if added is None:  # never reached the handler (refused as unsafe, no connection)
            added = await self.commits.add(delivery)
            if added.new:
                self._emit(DeliveryReceived(delivery))
        if not added.new:
            await self._answer_again(reply, frame.id)
            return
        # 5. Record the outcome, then answer the relay.
        attempt = outcome.attempt(
            delivery.id,
            "forward",
            # What the handler got, when it differs from the stored delivery's: re-signed.
            request_headers=sending.headers if sending.headers is not frame.headers else None,
            note="; ".join(n for n in (sending.note, _cut_note(outcome)) if n),
        )
        result = _result(delivery.id, outcome)
        await self._finish(reply, delivery, attempt, result, added, decision.route)

    async def _finish(
        self,
        reply: Reply,
        delivery: Delivery,
        attempt: Attempt,
        result: Result,
        added: Added,
        route: Route | None,
    ) -> None:
        """Record the outcome, then answer the relay, then tell the outputs."""
        try:
            await self.commits.finish(delivery.id, attempt)
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
        forwarded = DeliveryForwarded(
            delivery, attempt, added.svix_seen, route.pattern if route else None
        )
        asyncio.get_running_loop().call_soon(self._emit, forwarded)

    async def _skip(self, reply: Reply, delivery: Delivery, decision: Decision) -> None:
        """Filtered or unrouted: stored with that state (its reason follows from it) and
        answered 200, so the sender does not retry what was left out on purpose; a copy
        re-sent later gets the same answer from history."""
        added = await self.commits.add(delivery)
        if not added.new:
            await self._answer_again(reply, delivery.id)
            return
        self._emit(DeliveryReceived(delivery))
        await reply(_skipped_result(delivery.id, delivery.state))
        asyncio.get_running_loop().call_soon(
            self._emit, DeliveryNotForwarded(delivery, decision.reason)
        )

    async def _not_forwarded(
        self, reply: Reply, delivery: Delivery, why: str, route: Route | None
    ) -> None:
        """A delivery recorded and shown but not sent, for `why` (HANDED_BEFORE, TOO_LATE):
        sending it could give the handler a second copy. A replay sends it once the user has
        checked."""
        delivery.state = "interrupted"
        added = await self.commits.add(delivery)
        if not added.new:
            await self._answer_again(reply, delivery.id)
            return
        self._emit(DeliveryReceived(delivery))
        why = f"{why}; `hooktap replay {delivery.id}` (or r in the inspector) sends it"
        attempt = Attempt(
            delivery_id=delivery.id,
            kind="forward",
            started_at=time.time(),
            target_url=delivery.target,
            error=why,
        )
        # The sender was answered already (202 when the relay kept it, 504 when it gave up):
        # this only confirms it to the relay.
        status = 504 if why.startswith(TOO_LATE) else 502
        result = Result(delivery.id, status, error=why, duplicate=True)
        await self._finish(reply, delivery, attempt, result, added, route)

    def _record(
        self,
        frame: WireDelivery,
        verdict: Verdict,
        envelope: Envelope | None,
        decision: Decision,
    ) -> Delivery:
        """The delivery as history keeps it: `target` is the route's target it goes to, ""
        when filtered or unrouted (then its state says which)."""
        svix_id = signature_header(frame.headers, "id")
        return Delivery(
            id=frame.id,
            received_at=frame.received_at,
            method=frame.method,
            path=frame.path,
            query=frame.query,
            headers=frame.headers,
            body=frame.body,
            channel=self.channel,
            target="" if decision.target is None else str(decision.target),
            signature=verdict.status,
            signature_reason=verdict.reason,
            svix_id=svix_id,
            event_id=envelope.id if envelope else None,
            event_type=envelope.type if envelope else None,
            event_created_at=envelope.created_at if envelope else None,
            state="dispatched" if decision.target is not None else decision.outcome,
        )

    async def _answer_again(self, reply: Reply, delivery_id: str) -> None:
        """A delivery we already took: confirm it from history instead of forwarding twice."""
        state, first = await self.commits.call(self._from_history, delivery_id)
        if state in NOT_FORWARDED:  # the same 200 as the first copy got: no handler saw either
            result = _skipped_result(delivery_id, state, duplicate=True)
        elif first is not None:
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

    def _from_history(self, delivery_id: str) -> tuple[str, Attempt | None]:
        """A delivery's state and first forward, on the history thread (GroupCommit.call)."""
        state = self.store.get_state(delivery_id) or "missing"
        first = self.store.first_attempt(delivery_id)
        if first is None and state not in NOT_FORWARDED:
            # Stored as dispatched but no attempt: the listener stopped mid-forward. The
            # handler may well have it; sending it again could double-process it.
            self.store.mark(delivery_id, "interrupted")
            state = "interrupted"
        return state, first


HANDED_BEFORE = (
    "not forwarded: the relay had handed it to another listener (with its own history), "
    "which never confirmed it, so your handler may have it already; check first"
)
TOO_LATE = (
    "not forwarded: every forwarding slot was busy until after the relay had answered its "
    "sender 504 (the sender retries it, so sending this one too would be a second copy)"
)


def _skipped_result(delivery_id: str, state: str, *, duplicate: bool = False) -> Result:
    """The relay's (and the sender's) answer for a filtered or unrouted delivery: 200, since
    leaving it out was the user's choice, with a body saying so for whoever reads it."""
    reason = not_forwarded_reason(state)
    body = orjson.dumps({"hooktap": state, "reason": reason})
    return Result(
        delivery_id, 200, [("Content-Type", "application/json")], body, duplicate=duplicate
    )


def _too_late(frame: WireDelivery) -> bool:
    """The relay gave up on this delivery's sender (answered it 504) before a slot was free."""
    return frame.answer_by is not None and time.time() > frame.answer_by


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
