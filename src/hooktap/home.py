"""Where hooktap keeps its files: HOOKTAP_HOME, or the platform's user data dir."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home_dir() -> Path:
    """The data folder, created owner-only on first use: it holds channel tokens and history."""
    env = os.environ.get("HOOKTAP_HOME")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("hooktap"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def history_db() -> Path:
    return home_dir() / "history.db"


def relay_data_dir() -> Path:
    path = home_dir() / "relay"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
