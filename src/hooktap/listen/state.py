"""A small file saying which listener runs now, so `hooktap trigger` can find its URL; and,
with no listener running, the channel kept for a standalone relay, which takes deliveries
while no listener runs."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hooktap import local_secret
from hooktap.home import home_dir

if TYPE_CHECKING:
    from hooktap.listen.routes import Routing


def _path() -> Path:
    return home_dir() / "listener.json"


# The local test secret this process verifies with, if that is the one in force. The home
# guard calls write() again when it recreates a deleted HOOKTAP_HOME; the secret file is put
# back with listener.json then, so `hooktap trigger` keeps signing with the secret in force.
_local_secret: str | None = None


def verifies_with_local_secret(secret: str) -> None:
    global _local_secret
    _local_secret = secret


def write(
    webhook_url: str,
    forward_to: str,
    relay: str,
    *,
    routes: Sequence[str] = (),
    events: Sequence[str] = (),
) -> None:
    """`forward_to` is the one target to name (routing.primary); `routes` every --forward
    as typed (PATTERN=TARGET, the fallback last), `events` the --events patterns."""
    info = {
        "pid": os.getpid(),
        "webhook_url": webhook_url,
        "forward_to": forward_to,
        "routes": list(routes) or [forward_to],
        "events": list(events),
        "relay": relay,
        "started_at": time.time(),
    }
    _path().write_text(json.dumps(info))
    if _local_secret is not None:
        with contextlib.suppress(local_secret.LocalSecretError):  # trigger then says why
            local_secret.put_back(_local_secret)


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


def running_routing() -> Routing | None:
    """The routes (and --events) of the `hooktap listen` running now, as Routing: its
    --forward values as listener.json records them (`PATTERN=TARGET`, the fallback a bare
    TARGET, in the order they are tried). None when none runs, when it wrote no routes, or
    when it wrote what this version cannot read (another hooktap version)."""
    from hooktap.listen.routes import build_routing  # routes need no import at listen start

    info = current() or {}
    routes, events = info.get("routes"), info.get("events")
    if not isinstance(routes, list) or not routes or not all(isinstance(r, str) for r in routes):
        return None
    patterns = [e for e in events if isinstance(e, str)] if isinstance(events, list) else []
    try:
        return build_routing(routes, patterns)
    except ValueError:
        return None


def current_webhook_url() -> str | None:
    info = current()
    url = info.get("webhook_url") if info else None
    return url if isinstance(url, str) else None


def webhook_url_for(relay: str | list[str] | None) -> str:
    """The webhook URL `hooktap trigger` sends to by default: the running listener's (on
    `relay`, when one is named), else the channel kept in channels.json for `relay`. A list
    is several instances of one relay (`--relay URL,URL...`): a listener on any of them, or
    the channel kept for the first that has one.

    LookupError says what was looked for when there is none; ChannelsFileError (from
    channel.py) when channels.json cannot be read."""
    from hooktap.listen import channel  # imported here: a listener state needs no aiohttp

    relays = [relay] if isinstance(relay, str) else relay
    info = current()
    running_on = info.get("relay") if info else None
    url = info.get("webhook_url") if info else None
    if isinstance(url, str) and (relays is None or running_on in relays):
        return url
    named = None if relays is None else ",".join(relays)
    if not isinstance(url, str):
        looked = f"no running listener found ({_path()} names none that is alive)"
    else:
        looked = f"the running listener uses the relay {running_on}, not {named}"
    if relays is None:
        raise LookupError(
            f"{looked}; start `hooktap listen` (its embedded relay runs only while it runs), "
            "pass --url, or name a standalone relay with --relay or HOOKTAP_RELAY"
        )
    creds = channel.stored_any(relays)
    if creds is not None:
        return creds.webhook_url
    raise LookupError(
        f"{looked}, and {channel.file_path()} has no channel for the relay {named}; run "
        f"`hooktap listen --relay {named}` once to get one, or pass --url"
    )
