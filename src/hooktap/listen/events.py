"""What the listener tells its audience (log lines, JSON lines, the TUI): plain records.

The listener never prints; it emits these, and each output mode decides how to show them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hooktap.records import Attempt, Delivery


@dataclass
class Ready:
    """The channel is connected: a webhook posted to `webhook_url` now flows."""

    webhook_url: str
    forward_to: str
    queued: int = 0
    verifying: bool = True  # a secret was given, so every delivery gets a real verdict
    # Which secret verifies: "--secret", "PIVOTAL_WEBHOOK_SECRET", "local-test" or "none".
    secret_source: str = ""
    secret_file: str | None = None  # the local test secret's file, when that is the one
    secret_made_now: bool = False  # that file was created by this run
    # With --public: the webhook URL senders on the internet use (it has carried a probe), and
    # the sentence to show beside it when it will not survive a restart.
    public_url: str | None = None
    public_note: str | None = None
    relay: str = ""  # the relay URL it is connected to (one of several --relay URLs)
    # With routes or --events (not one target for everything): the routes as typed
    # (PATTERN=TARGET, the fallback last) and the --events patterns; empty otherwise.
    routes: tuple[str, ...] = ()
    events: tuple[str, ...] = ()


@dataclass
class PublicChanged:
    """The public URL went away (the provider died; `url` None while it restarts) or came back,
    maybe as another URL: the user must hear at once, since senders use it."""

    url: str | None  # the public webhook URL now
    reason: str
    retry_in: float | None = None


@dataclass
class ConnectionChanged:
    state: str  # connecting | connected | disconnected | reconnecting
    detail: str = ""
    retry_in: float | None = None
    # The relay URL this is about: the one connected to, the one that dropped, or the one
    # tried next (with several --relay URLs the listener moves between them). Not compared:
    # an event means the same whichever instance it came from.
    relay: str = field(default="", compare=False)


@dataclass
class DeliveryReceived:
    delivery: Delivery


@dataclass
class DeliveryForwarded:
    delivery: Delivery
    attempt: Attempt
    duplicate: bool = False  # its svix-id arrived on an earlier delivery
    route: str | None = None  # the route's pattern it matched; None: the fallback


@dataclass
class DeliveryNotForwarded:
    """Stored and answered 200 without going to any handler: its event type is outside
    --events (delivery.state "filtered") or matches no route and there is no fallback
    ("unrouted"). Shown, so nothing disappears silently."""

    delivery: Delivery
    reason: str


@dataclass
class TargetHealth:
    """A forward target started or stopped accepting connections (a TCP connect, at start
    and every 15 s), said before a webhook fails on it. At start, one for each target."""

    target: str  # host:port as probed, e.g. "localhost:8000"
    state: str  # "up" | "down"
    detail: str  # a sentence: "localhost:8000 is not accepting connections (refused)"
    urls: tuple[str, ...] = ()  # the routes' target URLs on that host and port


@dataclass
class DuplicateSkipped:
    """The relay re-sent a delivery this listener already handled; it was not forwarded again."""

    delivery_id: str
    state: str


@dataclass
class Paused:
    paused: bool


@dataclass
class HomeLost:
    """HOOKTAP_HOME, or a database in it, was deleted or became unusable while listening
    (listen/home_guard.py). `message` says all of it in a sentence for a person."""

    home: str
    message: str
    recovered: bool  # the home was recreated with everything that could be put back
    stopping: bool  # the listener stops (the message is its error line too)
    deliveries: int = 0  # in the history that was put back (or saved elsewhere)
    bodies_lost: int = 0  # deliveries over 64 KiB whose body files went with the folder
    saved_to: str | None = None  # where history was saved when the home could not be recreated


ListenerEvent = (
    Ready
    | PublicChanged
    | ConnectionChanged
    | DeliveryReceived
    | DeliveryForwarded
    | DeliveryNotForwarded
    | TargetHealth
    | DuplicateSkipped
    | Paused
    | HomeLost
)
Subscriber = Callable[[ListenerEvent], None]
