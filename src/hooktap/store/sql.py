"""The history database's schema, and the SQL that a Filter and an id prefix become.

Kept apart from reads.py and writes.py, which run it: these are fixed text and pure functions,
testable and reviewable without a database.
"""

from __future__ import annotations

from typing import Any

from hooktap.filters import NOT_FORWARDED, Filter, is_glob

SCHEMA = """
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    signature TEXT NOT NULL,
    signature_reason TEXT NOT NULL,
    svix_id TEXT,
    event_id TEXT,
    event_type TEXT,
    event_created_at TEXT,
    state TEXT NOT NULL,
    body_size INTEGER NOT NULL,
    forward_attempt INTEGER
);
CREATE INDEX deliveries_received ON deliveries (received_at, seq);
CREATE INDEX deliveries_type ON deliveries (event_type, received_at);
CREATE INDEX deliveries_svix ON deliveries (svix_id, received_at);
CREATE TABLE payloads (
    seq INTEGER PRIMARY KEY,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    started_at REAL NOT NULL,
    target_url TEXT NOT NULL,
    status INTEGER,
    duration_ms REAL NOT NULL,
    error TEXT,
    note TEXT NOT NULL,
    request_headers TEXT NOT NULL,
    response_headers TEXT NOT NULL,
    request_body BLOB,
    response_body BLOB NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, id);
"""

# Facts about the history file itself, such as its id. Created on open when missing, not by
# SCHEMA alone, so a history made before it gets one too, with no schema version bump that
# would lock an older hooktap out of the same file.
META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

SUMMARY_COLUMNS = (
    "d.seq, d.id, d.received_at, d.method, d.path, d.query, d.channel, d.target, d.signature, "
    "d.signature_reason, d.svix_id, d.event_id, d.event_type, d.event_created_at, d.state, "
    "d.body_size, f.status, f.duration_ms, f.error, "
    "(SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id), "
    "(d.svix_id IS NOT NULL AND EXISTS (SELECT 1 FROM deliveries e WHERE e.svix_id = d.svix_id "
    "AND (e.received_at < d.received_at OR (e.received_at = d.received_at AND e.seq < d.seq)))), "
    "f.note"
)

ATTEMPT_FIELDS = (
    "delivery_id, kind, started_at, target_url, status, duration_ms, error, note, "
    "request_headers, response_headers, request_body, response_body"
)
ATTEMPT_COLUMNS = "id, " + ATTEMPT_FIELDS
ATTEMPT_COLUMNS_A = ", ".join("a." + c.strip() for c in ATTEMPT_COLUMNS.split(","))


# Whether any stored delivery carries a svix-id: asked for each new delivery as it is written
# (a Pivotal retry of a message we have) and by Store.seen_svix_id.
SVIX_SEEN = "SELECT 1 FROM deliveries WHERE svix_id = ? LIMIT 1"


def prefix_upper(prefix: str) -> str:
    """The smallest string above every string starting with `prefix`, for an index range."""
    return prefix + "\U0010ffff"


def filter_joins(f: Filter) -> str:
    """Only the joins a filter needs: a status filter reads the forward attempt, text the body."""
    joins = []
    if any(s not in NOT_FORWARDED for s in f.statuses):
        joins.append("LEFT JOIN attempts f ON f.id = d.forward_attempt")
    if f.text:
        joins.append("JOIN payloads p ON p.seq = d.seq")
    return " ".join(joins)


def filter_where(f: Filter, now: float | None) -> tuple[list[str], list[Any]]:
    """SQL conditions for a Filter over `d` (deliveries), `f` (forward attempt), `p` (payload).

    Values only ever travel as parameters; the SQL text is built from fixed fragments. Text
    searches `p.body`, which holds only the first INLINE_BODY_MAX (64 KiB) of a bigger body (the
    rest is in its file): a word further into a big body is not found, the price of keeping a
    filter over 100,000 deliveries inside SQLite.
    """
    where: list[str] = []
    params: list[Any] = []
    if f.types:
        ors = []
        for pattern in f.types:
            if is_glob(pattern):
                ors.append("d.event_type GLOB ?")
                params.append(pattern)
            else:  # `customer` means customer.* too: the object name alone is a natural query
                ors.append("(d.event_type = ? OR d.event_type GLOB ?)")
                params += [pattern, pattern + ".*"]
        where.append("(" + " OR ".join(ors) + ")")
    if f.statuses:
        ors = []
        for status in f.statuses:
            if status == "err":
                ors.append("(d.state = 'interrupted' OR (f.id IS NOT NULL AND f.status IS NULL))")
            elif status in NOT_FORWARDED:  # no attempt, no status: their state says it
                ors.append("d.state = ?")
                params.append(status)
            elif status.endswith("xx"):
                ors.append("f.status BETWEEN ? AND ?")
                params += [int(status[0]) * 100, int(status[0]) * 100 + 99]
            else:
                ors.append("f.status = ?")
                params.append(int(status))
        where.append("(" + " OR ".join(ors) + ")")
    if f.signatures:
        where.append(f"d.signature IN ({','.join('?' * len(f.signatures))})")
        params += list(f.signatures)
    cutoff = f.cutoff(now)
    if cutoff is not None:
        where.append("d.received_at >= ?")
        params.append(cutoff)
    for word in f.text:  # the first 64 KiB of each body: see above
        where.append("instr(lower(CAST(p.body AS TEXT)), lower(?)) > 0")
        params.append(word)
    return where, params
