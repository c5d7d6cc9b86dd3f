"""SQLite history of deliveries and attempts, shared by the listener, the CLI and the TUI.

One file under HOOKTAP_HOME (`history.db`), big bodies in files beside it (bodies.py). The
parts: core.py opens the file and runs every transaction, writes.py is the listener's hot path
and retention, reads.py the listings and whole deliveries, sql.py the schema and the SQL a
filter becomes, rows.py what rows become, errors.py what the history raises.
"""

from __future__ import annotations

from hooktap.bodies import INLINE_BODY_MAX
from hooktap.store.core import BUSY_TIMEOUT_MS, SCHEMA_VERSION
from hooktap.store.errors import (
    AmbiguousId,
    BodyMissing,
    HistoryDamaged,
    StoreClosed,
    StoreError,
)
from hooktap.store.reads import StoreReads
from hooktap.store.rows import Added, Summary
from hooktap.store.writes import DEFAULT_RETENTION_DAYS, StoreWrites


class Store(StoreWrites, StoreReads):
    """The history database. Safe to share between threads of one process (one lock)."""


__all__ = [
    "BUSY_TIMEOUT_MS",
    "DEFAULT_RETENTION_DAYS",
    "INLINE_BODY_MAX",
    "SCHEMA_VERSION",
    "Added",
    "AmbiguousId",
    "BodyMissing",
    "HistoryDamaged",
    "Store",
    "StoreClosed",
    "StoreError",
    "Summary",
]
