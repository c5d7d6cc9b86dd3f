"""A small file saying which listener runs now, so `hooktap trigger` can find its URL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hooktap.home import home_dir


def _path() -> Path:
    return home_dir() / "listener.json"


def write(webhook_url: str, forward_to: str, relay: str) -> None:
    info = {
        "pid": os.getpid(),
        "webhook_url": webhook_url,
        "forward_to": forward_to,
        "relay": relay,
        "started_at": time.time(),
    }
    _path().write_text(json.dumps(info))


def clear() -> None:
    try:
        info = json.loads(_path().read_text())
        if info.get("pid") == os.getpid():
            _path().unlink()
    except (OSError, json.JSONDecodeError):
        pass


def current() -> dict[str, object] | None:
    """The running listener's record, or None when none runs (a stale file is ignored)."""
    try:
        info = json.loads(_path().read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def current_webhook_url() -> str | None:
    info = current()
    url = info.get("webhook_url") if info else None
    return url if isinstance(url, str) else None
