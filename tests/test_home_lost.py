"""HOOKTAP_HOME lost while `hooktap listen` runs: deleted, or replaced by something unusable.

Real processes and real files throughout: the home is really deleted with rmtree while the
listener holds its databases open, and what a restarted listener sees is read back from disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hooktap.store import Store


def test_history_id_is_random_per_history_and_survives_reopen(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        first, other = a.history_id, b.history_id
    assert len(first) == 32 and first != other
    with Store(tmp_path / "a.db") as again:
        assert again.history_id == first


def test_a_history_made_before_history_ids_gets_one_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store(path):
        pass
    with sqlite3.connect(path) as db:  # as a hooktap from before history ids left it
        db.execute("DROP TABLE meta")
    with Store(path) as store:
        made = store.history_id
    with Store(path) as store:
        assert store.history_id == made != ""
