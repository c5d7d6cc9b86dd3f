"""The two plain output modes: human log lines on stderr, and JSON lines on stdout.

With --json, stdout carries only JSON (one object a line) so it pipes into jq; everything
meant for a person goes to stderr in both modes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from typing import TextIO

import click

from hooktap.listen.events import (
    ConnectionChanged,
    DeliveryForwarded,
    DeliveryNotForwarded,
    DuplicateSkipped,
    HomeLost,
    ListenerEvent,
    Paused,
    PublicChanged,
    Ready,
    TargetHealth,
)
from hooktap.pivotal.retries import would_retry
from hooktap.pivotal.rules import broken_rules
from hooktap.records import Delivery

_SIG_COLOURS = {"valid": "green", "invalid": "red", "expired": "yellow"}


def _rules(event: DeliveryForwarded) -> list[str]:
    d, a = event.delivery, event.attempt
    return broken_rules(
        status=a.status,
        duration_ms=a.duration_ms,
        error=a.error,
        signature=d.signature,
        signature_reason=d.signature_reason,
        duplicate=event.duplicate,
        target_url=a.target_url,
    )


def _delivery_fields(delivery: Delivery, state: str) -> dict[str, object]:
    """What every delivery line says of the request, forwarded or not."""
    return {
        "event": "delivery",
        "id": delivery.id,
        "received_at": _iso(delivery.received_at),
        "method": delivery.method,
        "path": delivery.path or "/",
        "query": delivery.query,
        "type": delivery.event_type,
        "svix_id": delivery.svix_id,
        "signature": delivery.signature,
        "signature_reason": delivery.signature_reason,
        "state": state,
        "bytes": len(delivery.body),
    }


def delivery_json(event: DeliveryForwarded) -> dict[str, object]:
    """The contract's delivery line (DESIGN.md §2), plus a few extra fields."""
    delivery, attempt = event.delivery, event.attempt
    # "interrupted": recorded but not sent, since the handler may have it (its error says why).
    state = "interrupted" if delivery.state == "interrupted" else "forwarded"
    return {
        **_delivery_fields(delivery, state),
        "status": attempt.status,
        "duration_ms": round(attempt.duration_ms, 2),
        "error": attempt.error,
        "target": attempt.target_url,
        "route": event.route,  # the route's pattern; None for the fallback (or no routes)
        "duplicate_svix_id": event.duplicate,
        "pivotal_would_retry": would_retry(attempt.status, attempt.duration_ms, attempt.error),
        "rules_broken": _rules(event),
        "note": attempt.note or None,  # e.g. "held 7 min at the relay; re-signed"
    }


def not_forwarded_json(event: DeliveryNotForwarded) -> dict[str, object]:
    """A filtered or unrouted delivery: the same fields, with no handler's answer."""
    return {
        **_delivery_fields(event.delivery, event.delivery.state),
        "status": None,
        "duration_ms": None,
        "error": None,
        "target": None,
        "route": None,
        "reason": event.reason,
    }


def target_json(event: TargetHealth) -> dict[str, object]:
    return {
        "event": "target",
        "state": event.state,
        "target": event.target,
        "detail": event.detail,
        "urls": list(event.urls),
    }


@functools.lru_cache(maxsize=4)  # a burst shares its second: strftime once, not per line
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _iso(ts: float) -> str:
    return f"{_iso_second(int(ts))}.{int(ts % 1 * 1000):03d}Z"


# json.dumps builds a new encoder whenever it is given options; the listener writes a line
# per delivery, so it keeps one.
_encode = json.JSONEncoder(ensure_ascii=False).encode


class JsonLines:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.human = LogLines(err or sys.stderr, deliveries=False)
        self.ready = False

    def _write(self, obj: dict[str, object]) -> None:
        self.out.write(_encode(obj) + "\n")
        self.out.flush()

    def __call__(self, event: ListenerEvent) -> None:
        if isinstance(event, Ready):
            self.ready = True
            line: dict[str, object] = {
                "event": "ready",
                "webhook_url": event.webhook_url,
                "forward_to": event.forward_to,
                "verifying_signatures": event.verifying,
                "secret_source": event.secret_source or None,
                # With --public, the URL to give Pivotal (webhook_url is the relay's own).
                "public_url": event.public_url,
                "relay": event.relay or None,  # which instance, with several --relay URLs
            }
            if event.public_url:
                line["public_url_note"] = event.public_note
            if event.secret_file:
                line["secret_file"] = event.secret_file
            if event.routes or event.events:  # routes by type or --events are in force
                line["routes"] = list(event.routes)
                line["events"] = list(event.events)
            self._write(line)
        elif isinstance(event, PublicChanged):
            self._write(
                {
                    "event": "public_url",
                    "public_url": event.url,
                    "reason": event.reason,
                    "retry_in": event.retry_in,
                }
            )
        elif isinstance(event, DeliveryForwarded):
            self._write(delivery_json(event))
        elif isinstance(event, DeliveryNotForwarded):
            self._write(not_forwarded_json(event))
        elif isinstance(event, TargetHealth):
            self._write(target_json(event))
        elif isinstance(event, ConnectionChanged) and self.ready:
            self._write(
                {
                    "event": "connection",
                    "state": event.state,
                    "detail": event.detail,
                    "relay": event.relay or None,
                }
            )
        elif isinstance(event, HomeLost):
            self._write({"event": "home_lost", **dataclasses.asdict(event)})
        self.human(event)


class LogLines:
    def __init__(self, err: TextIO | None = None, *, deliveries: bool = True) -> None:
        self.err = err or sys.stderr
        self.deliveries = deliveries
        self.colour = self.err.isatty()
        self._dropped_by = ""  # the relay of the last "disconnected", to tell a move to another
        self._routed = False  # routes by type are in force: each line names its target
        self._probed: set[str] = set()  # targets the health check has reported on

    def _say(self, text: str) -> None:
        click.echo(text, file=self.err, color=self.colour)

    def __call__(self, event: ListenerEvent) -> None:
        if isinstance(event, Ready):
            shown = event.public_url or event.webhook_url
            self._say(
                click.style("Ready.", bold=True)
                + f" Webhook URL: {click.style(shown, fg='cyan', bold=True)}\n"
                + (
                    f"       (public, through the tunnel; locally {event.webhook_url})\n"
                    if event.public_url
                    else ""
                )
                + (f"       {event.public_note}\n" if event.public_note else "")
                + _forwarding(event)
                + (f" ({event.queued} queued deliveries coming)" if event.queued else "")
                + "\n       Paste the webhook URL into Pivotal (Admin > Developer > Webhooks). "
                "Ctrl+C to stop."
            )
            if event.secret_source == "local-test":
                self._say(_local_secret_note(event.secret_file, event.secret_made_now))
            if not event.verifying:
                self._say(
                    click.style("       Signatures are not checked:", fg="yellow")
                    + " pass --secret whsec_... or set PIVOTAL_WEBHOOK_SECRET "
                    "(the endpoint's signing secret in Pivotal)."
                )
        elif isinstance(event, ConnectionChanged):
            if event.state == "disconnected":
                retry = f"; retrying in {event.retry_in:.1f} s" if event.retry_in else ""
                where = f" from {event.relay}" if event.relay else ""
                self._say(click.style(f"disconnected{where}: {event.detail}{retry}", fg="yellow"))
                self._dropped_by = event.relay
            elif event.state == "reconnecting" and event.relay != self._dropped_by:
                self._say(f"trying the next relay: {event.relay}")  # one of several --relay URLs
            elif event.state == "connected":
                where = f" at {event.relay}" if event.relay else ""
                self._say(
                    click.style("connected", fg="green") + f" to the relay{where} ({event.detail})"
                )
        elif isinstance(event, PublicChanged):
            if event.url is None:
                retry = f"; restarting in {event.retry_in:.0f} s" if event.retry_in else ""
                self._say(
                    click.style(f"public URL down: {event.reason}{retry}", fg="red")
                    + " (deliveries posted to it fail meanwhile; Pivotal retries them)"
                )
            else:
                self._say(
                    click.style("public URL: ", fg="yellow")
                    + click.style(event.url, fg="cyan", bold=True)
                    + f" ({event.reason}); paste it into Pivotal if it changed"
                )
        elif isinstance(event, DuplicateSkipped):
            self._say(f"{event.delivery_id}: already handled ({event.state}); not forwarded again")
        elif isinstance(event, Paused):
            self._say("paused: deliveries wait at the relay" if event.paused else "resumed")
        elif isinstance(event, HomeLost) and not event.stopping:
            # When it is, `hooktap listen` prints the same message as its error line.
            self._say(click.style(event.message, fg="yellow" if event.recovered else "red"))
        elif isinstance(event, TargetHealth):
            self._health(event)
        elif isinstance(event, DeliveryForwarded) and self.deliveries:
            self._say(self._line(event))
        elif isinstance(event, DeliveryNotForwarded) and self.deliveries:
            # Dim: left out on purpose, but shown, so nothing disappears silently.
            d = event.delivery
            why = _NOT_FORWARDED.get(d.state, event.reason)
            line = f"{_head(d, f'{d.signature:9}')}→ {d.state}  {d.id}  ({why})"
            self._say(click.style(line, dim=True))
        if isinstance(event, Ready):
            self._routed = bool(event.routes)

    def _health(self, event: TargetHealth) -> None:
        """A target down is said loudly, at start too (before a webhook fails on it); one
        coming back is said once; one up at start goes without saying."""
        first = event.target not in self._probed
        self._probed.add(event.target)
        if event.state == "up":
            if not first:
                self._say(click.style(f"target up: {event.detail}", fg="green"))
            return
        routes = f" (forwarding to {', '.join(event.urls)} fails meanwhile)" if event.urls else ""
        self._say(click.style(f"target down: {event.detail}", fg="red", bold=True) + routes)

    def _line(self, event: DeliveryForwarded) -> str:
        d, a = event.delivery, event.attempt
        sig = click.style(f"{d.signature:9}", fg=_SIG_COLOURS.get(d.signature))
        if a.status is not None:
            status = click.style(str(a.status), fg="green" if 200 <= a.status < 300 else "red")
        else:
            status = click.style("ERR", fg="red")
        line = f"{_head(d, sig)}→ {status} {a.duration_ms:7.1f} ms  {d.id}"
        if self._routed:
            line += f"  {a.target_url}"
        rules = _rules(event)
        if a.error and not any(a.error in rule for rule in rules):
            line += "\n         " + click.style(a.error, fg="red")
        for rule in rules:
            colour = "red" if a.error and a.error in rule else "yellow"
            line += "\n         " + click.style(rule, fg=colour)
        if a.note:
            line += "\n         " + click.style(a.note, fg="cyan")
        return line


# The log line's short why; the JSON line and `deliveries show` give the whole sentence.
_NOT_FORWARDED = {
    "filtered": "not in --events",
    "unrouted": "no route takes its type, and there is no fallback",
}


def _head(d: Delivery, sig: str) -> str:
    """The start every delivery's log line shares: when, request, type, signature."""
    when = time.strftime("%H:%M:%S", time.localtime(d.received_at))
    return f"{when} {d.method:6} {(d.path or '/'):24} {(d.event_type or '-'):22} sig={sig} "


def _forwarding(event: Ready) -> str:
    """Where deliveries go: one target, or the routes in the order they are tried."""
    if not event.routes and not event.events:
        return f"       Forwarding to {event.forward_to}"
    pairs = []
    for route in event.routes:
        pattern, eq, target = route.partition("=")
        if not eq or ":" in pattern or "/" in pattern:  # the fallback: a URL, maybe with "="
            pattern, target = "anything else", route
        pairs.append((pattern, target))
    width = max((len(p) for p, _ in pairs), default=0)
    lines = ["       Routes (the first match wins):"]
    lines += [f"         {p:<{width}}  → {t}" for p, t in pairs]
    if pairs and pairs[-1][0] != "anything else":
        lines.append("         (no fallback: other types are stored, marked unrouted)")
    if event.events:
        lines.append(
            f"       Only these event types: {', '.join(event.events)} "
            "(the rest are stored, marked filtered)"
        )
    return "\n".join(lines)


def _local_secret_note(path: str | None, made_now: bool) -> str:
    """Under the ready line when deliveries are verified with hooktap's local test secret:
    what it is, how a handler gets it, and how to verify Pivotal's own deliveries."""
    pad = "       "
    where = f" ({'made now, ' if made_now else ''}kept in {path})" if path else ""
    return (
        f"{pad}Signatures are checked with hooktap's local test secret{where},\n"
        f"{pad}not Pivotal's: `hooktap trigger` signs with it, Pivotal's own deliveries "
        "will read sig=invalid.\n"
        f"{pad}Your handler verifies with it after: "
        "export PIVOTAL_WEBHOOK_SECRET=$(hooktap listen --print-secret)\n"
        f"{pad}For Pivotal's deliveries: --secret whsec_... or PIVOTAL_WEBHOOK_SECRET "
        "(the endpoint's signing secret in Pivotal)."
    )
