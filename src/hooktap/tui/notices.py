"""What the inspector tells the user in a notification, from one drained Batch: plain data, so
the words are tested without a screen and the app only shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hooktap.tui.feed import Batch

LOCAL_SECRET = (
    "Signatures are checked with hooktap's local test secret, not Pivotal's: `hooktap trigger` "
    "signs with it. For Pivotal's own deliveries pass --secret or PIVOTAL_WEBHOOK_SECRET."
)


@dataclass(frozen=True)
class Notice:
    message: str
    title: str = ""
    severity: Literal["information", "warning", "error"] = "information"
    timeout: float = 10


def of(batch: Batch) -> list[Notice]:
    out: list[Notice] = []
    if (ready := batch.ready) is not None:
        if ready.queued:
            out.append(Notice(f"{ready.queued} deliveries were waiting at the relay"))
        if ready.public_note:
            out.append(Notice(ready.public_note, "Public URL", timeout=20))
        if ready.secret_source == "local-test":
            out.append(Notice(LOCAL_SECRET, "Local test secret", timeout=20))
    if (change := batch.public) is not None:
        if change.url is not None:
            out.append(Notice(f"{change.url} ({change.reason})", "New public URL", timeout=30))
        else:
            out.append(Notice(change.reason, "Public URL down", "error", timeout=30))
    for health, before in batch.health:
        # Down is news even at start (before the first webhook fails on it); up only as a
        # comeback, not as the first probe's "all is well".
        if health.state == "down":
            out.append(Notice(health.detail, "Handler down", "error", timeout=15))
        elif before == "down":
            out.append(Notice(health.detail, "Handler back"))
    for lost in batch.home_lost:
        title = "HOOKTAP_HOME recovered" if lost.recovered else "HOOKTAP_HOME lost"
        out.append(Notice(lost.message, title, "warning" if lost.recovered else "error", 30))
    return out
