"""Reading history: one delivery whole, its attempts, and the listing pages the CLI and the
TUI show (keyset pagination, filters compiled by sql.py)."""

from __future__ import annotations

from hooktap.bodies import INLINE_BODY_MAX
from hooktap.filters import Filter
from hooktap.records import Attempt, Delivery
from hooktap.store.core import StoreCore
from hooktap.store.errors import AmbiguousId, BodyMissing
from hooktap.store.rows import Summary, attempt_from_row, load_headers
from hooktap.store.sql import (
    ATTEMPT_COLUMNS,
    ATTEMPT_COLUMNS_A,
    SUMMARY_COLUMNS,
    SVIX_SEEN,
    filter_joins,
    filter_where,
    prefix_upper,
)


class StoreReads(StoreCore):
    """Every query of history, each through StoreCore._read (the lock, one statement)."""

    def missing_bodies(self) -> int:
        """How many deliveries over INLINE_BODY_MAX have no body file (their folder was lost):
        history keeps only their first 64 KiB."""
        rows = self._read("SELECT seq FROM deliveries WHERE body_size > ?", (INLINE_BODY_MAX,))
        return sum(1 for (seq,) in rows if not self._bodies.path(seq).exists())

    def get_state(self, delivery_id: str) -> str | None:
        rows = self._read("SELECT state FROM deliveries WHERE id = ?", (delivery_id,))
        return rows[0][0] if rows else None

    def resolve(self, id_or_prefix: str) -> str | None:
        """The full id for an exact id or a unique prefix; AmbiguousId if several match."""
        if not id_or_prefix:
            return None
        if self._read("SELECT 1 FROM deliveries WHERE id = ?", (id_or_prefix,)):
            return id_or_prefix
        rows = self._read(
            "SELECT id FROM deliveries WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
            (id_or_prefix, prefix_upper(id_or_prefix)),
        )
        if len(rows) > 1:
            raise AmbiguousId(id_or_prefix, [r[0] for r in rows])
        return rows[0][0] if rows else None

    def get(self, id_or_prefix: str) -> Delivery | None:
        """One whole delivery (headers and body) by id or unique id prefix.

        A body over INLINE_BODY_MAX is read from its file; StoreError if that file is gone or
        damaged, rather than a delivery with a silently shortened body.
        """
        full = self.resolve(id_or_prefix)
        if full is None:
            return None
        rows = self._read(
            "SELECT d.id, d.received_at, d.method, d.path, d.query, p.headers, p.body, "
            "d.channel, d.target, d.signature, d.signature_reason, d.svix_id, d.event_id, "
            "d.event_type, d.event_created_at, d.state, d.seq, d.body_size "
            "FROM deliveries d JOIN payloads p ON p.seq = d.seq WHERE d.id = ?",
            (full,),
        )
        if not rows:
            return None
        r = rows[0]
        body = bytes(r[6])
        if r[17] > len(body):
            body = self._read_body(r[0], r[16], body, r[17])
            if body is None:
                return None
        return Delivery(
            id=r[0],
            received_at=r[1],
            method=r[2],
            path=r[3],
            query=r[4],
            headers=load_headers(r[5]),
            body=body,
            channel=r[7],
            target=r[8],
            signature=r[9],
            signature_reason=r[10],
            svix_id=r[11],
            event_id=r[12],
            event_type=r[13],
            event_created_at=r[14],
            state=r[15],
        )

    def _read_body(self, delivery_id: str, seq: int, prefix: bytes, size: int) -> bytes | None:
        """A big delivery's whole body from its file; None if the delivery was pruned meanwhile.

        The file is checked against the row (its size, its first bytes) so that a stray file,
        one from another copy of the history say, is never served, or replayed, as this body.
        """
        path = self._bodies.path(seq)
        why = f"(stored separately because it is over {INLINE_BODY_MAX // 1024} KiB)"
        try:
            body = self._bodies.read(seq)
        except FileNotFoundError:
            # Retention in another process may have deleted the row, then the file, since we
            # read the row: then the delivery is simply gone.
            if not self._read("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)):
                return None
            raise BodyMissing(f"body of delivery {delivery_id} is missing: {path} {why}") from None
        except OSError as err:
            raise BodyMissing(
                f"cannot read the body of delivery {delivery_id} from {path}: "
                f"{err.strerror or err} {why}"
            ) from err
        if len(body) < size:
            raise BodyMissing(
                f"body of delivery {delivery_id} is cut short: {path} holds {len(body)} of its "
                f"{size} bytes {why}"
            )
        if len(body) != size or not body.startswith(prefix):
            raise BodyMissing(
                f"body of delivery {delivery_id} does not match its file: {path} holds "
                f"{len(body)} bytes that are not this delivery's {size}-byte body {why}"
            )
        return body

    def attempts(self, delivery_id: str) -> list[Attempt]:
        """Every attempt for a delivery, oldest first: the forward, then each replay."""
        rows = self._read(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ? ORDER BY id",
            (delivery_id,),
        )
        return [attempt_from_row(r) for r in rows]

    def first_attempt(self, delivery_id: str) -> Attempt | None:
        """The original forward attempt, or None while it has not finished."""
        rows = self._read(
            f"SELECT {ATTEMPT_COLUMNS_A} "
            "FROM deliveries d JOIN attempts a ON a.id = d.forward_attempt WHERE d.id = ?",
            (delivery_id,),
        )
        return attempt_from_row(rows[0]) if rows else None

    def query(
        self,
        f: Filter | None = None,
        limit: int | None = 50,
        *,
        before: tuple[float, int] | None = None,
        offset: int = 0,
        oldest_first: bool = False,
        now: float | None = None,
    ) -> list[Summary]:
        """Listing rows, newest first (or oldest first, the order replays go in).

        Page with `before=last_row.cursor` (stable while new rows arrive) or with `offset`.
        """
        f = f or Filter()
        where, params = filter_where(f, now)
        if before is not None:
            op = ">" if oldest_first else "<"
            where.append(f"(d.received_at {op} ? OR (d.received_at = ? AND d.seq {op} ?))")
            params += [before[0], before[0], before[1]]
        order = "ASC" if oldest_first else "DESC"
        sql = (
            f"WITH page AS (SELECT d.seq FROM deliveries d {filter_joins(f)} "
            f"WHERE {' AND '.join(where) or '1'} "
            f"ORDER BY d.received_at {order}, d.seq {order} LIMIT ? OFFSET ?) "
            f"SELECT {SUMMARY_COLUMNS} FROM page JOIN deliveries d ON d.seq = page.seq "
            "LEFT JOIN attempts f ON f.id = d.forward_attempt "
            f"ORDER BY d.received_at {order}, d.seq {order}"
        )
        params += [-1 if limit is None else limit, offset]
        return [
            Summary(*r[:-2], duplicate=bool(r[-2]), note=r[-1] or "")
            for r in self._read(sql, params)
        ]

    def count(self, f: Filter | None = None, *, now: float | None = None) -> int:
        f = f or Filter()
        where, params = filter_where(f, now)
        condition = " AND ".join(where) or "1"
        sql = f"SELECT count(*) FROM deliveries d {filter_joins(f)} WHERE {condition}"
        return int(self._read(sql, params)[0][0])

    def seen_svix_id(self, svix_id: str, before_id: str | None = None) -> bool:
        """Whether `svix_id` arrived on a delivery earlier than `before_id` (or at all)."""
        if before_id is None:
            return bool(self._read(SVIX_SEEN, (svix_id,)))
        rows = self._read(
            "SELECT 1 FROM deliveries e, deliveries d WHERE d.id = ? AND e.svix_id = ? "
            "AND (e.received_at < d.received_at OR (e.received_at = d.received_at "
            "AND e.seq < d.seq)) LIMIT 1",
            (before_id, svix_id),
        )
        return bool(rows)

    def landing(self, svix_id: str) -> tuple[str, str] | None:
        """The target and state of the newest delivery carrying `svix_id`, by its index:
        where `hooktap trigger`'s message went."""
        rows = self._read(
            "SELECT target, state FROM deliveries WHERE svix_id = ? "
            "ORDER BY received_at DESC, seq DESC LIMIT 1",
            (svix_id,),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def stats(self, since: float | None = None) -> dict[str, int]:
        """Counts for the TUI header: received, forwarded_ok, failed, invalid_signatures, pending.

        `failed` is a forward that got a non-2xx or no response, or was interrupted;
        `invalid_signatures` counts invalid and expired verdicts.
        """
        row = self._read(
            "SELECT count(*), "
            "coalesce(sum(f.status BETWEEN 200 AND 299), 0), "
            "coalesce(sum((f.id IS NOT NULL AND (f.status IS NULL OR f.status NOT BETWEEN 200 "
            "AND 299)) OR d.state = 'interrupted'), 0), "
            "coalesce(sum(d.signature IN ('invalid', 'expired')), 0), "
            "coalesce(sum(d.state IN ('received', 'dispatched')), 0) "
            "FROM deliveries d LEFT JOIN attempts f ON f.id = d.forward_attempt "
            "WHERE d.received_at >= ?",
            (-1e300 if since is None else since,),
        )[0]
        keys = ("received", "forwarded_ok", "failed", "invalid_signatures", "pending")
        return dict(zip(keys, (int(v) for v in row), strict=True))
