"""History written in tests the way the listener writes it: through Store.write_batch, the one
write path production has (a delivery recorded, then its forward's outcome), so no test
stores a delivery through a door the listener does not use."""

from __future__ import annotations

from hooktap.records import Attempt, Delivery
from hooktap.store import Store


def record(store: Store, delivery: Delivery) -> bool:
    """Store a delivery as the listener does before forwarding it; False when its id is
    stored already (the relay handed it over again)."""
    (added,) = store.write_batch([delivery], [])
    return added.new


def finish(store: Store, delivery_id: str, attempt: Attempt) -> int:
    """Store a forward's outcome and mark its delivery done, as the listener does once the
    handler answered; the attempt's id. LookupError for a delivery that is not stored."""
    store.write_batch([], [(delivery_id, attempt)])
    assert attempt.id is not None
    return attempt.id
