"""Where a delivery `hooktap trigger` sent landed: the route target the listener forwarded it
to, or "filtered"/"unrouted", read from the local history by the svix-id trigger made.

The listener records a delivery's outcome before it answers the relay (pipeline.py: the
forward's attempt is committed in `_finish` before `reply`; a filtered or unrouted one is
committed before its 200), so by the time trigger has its answer the row is there. Only
reading is done here: a history that does not exist is not created, and a delivery that is
not in it (a listener on another machine, another HOOKTAP_HOME) adds nothing to the output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hooktap.home import history_db, home_path
from hooktap.listen.routes import not_forwarded_reason
from hooktap.store import Store, StoreError

POLL_S = 0.05


@dataclass(frozen=True)
class Landing:
    target: str | None  # None when filtered or unrouted
    state: str  # as history says: done, filtered, unrouted, interrupted, ...

    @property
    def reason(self) -> str:
        return not_forwarded_reason(self.state) or ""

    def fields(self) -> dict[str, Any]:
        """For trigger's --json line."""
        # Named as `listen --json` names it, so one jq filter reads both.
        state = "forwarded" if self.state in ("done", "dispatched") else self.state
        extra: dict[str, Any] = {"target": self.target, "state": state}
        if self.reason:
            extra["reason"] = self.reason
        return extra

    def describe(self) -> str:
        """For trigger's text line, after the answer."""
        if self.reason:
            return self.reason
        if self.state in ("done", "dispatched"):
            return f"routed to {self.target}"  # true whether or not it answered 2xx
        return f"{self.state}, for {self.target}"


class History:
    """The local history, opened on first use if it exists; `find` runs on a worker thread."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._tried = False

    def _open(self) -> Store | None:
        if not self._tried:
            self._tried = True
            # home_path first: history_db() would make HOOKTAP_HOME where there is none.
            if home_path().is_dir() and history_db().is_file():
                try:
                    self._store = Store(history_db())
                except (StoreError, OSError):
                    self._store = None  # unreadable: trigger reports what it sent, no more
        return self._store

    def find(self, svix_id: str, wait: float) -> Landing | None:
        """The delivery carrying `svix_id`, looked for until `wait` seconds have passed."""
        store = self._open()
        if store is None:
            return None
        deadline = time.monotonic() + wait
        while True:
            try:
                found = store.landing(svix_id)
            except StoreError:
                return None
            if found is not None:
                target, state = found
                return Landing(target or None, state)
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
