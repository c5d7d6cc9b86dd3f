"""The listener's channel credentials, kept in HOOKTAP_HOME so the webhook URL is stable.

The token is the channel's only credential: the relay stores just its hash, so this file
(owner-only) is the one place it exists.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from hooktap.home import home_dir


@dataclass
class ChannelCredentials:
    relay: str
    channel: str
    token: str
    webhook_url: str

    @property
    def websocket_url(self) -> str:
        base = self.relay.rstrip("/")
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/c/{self.channel}/ws"


class RelayRefused(Exception):
    """The relay said no (bad token, unknown channel, not a hooktap relay): a user-facing reason."""


def _path() -> Path:
    return home_dir() / "channels.json"


def _load() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise RelayRefused(f"{_path()} is unreadable ({exc}); delete it to start afresh") from None
    return data if isinstance(data, dict) else {}


def _save(data: dict[str, dict[str, str]]) -> None:
    path = _path()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def stored(relay: str) -> ChannelCredentials | None:
    entry = _load().get(relay.rstrip("/"))
    if not entry:
        return None
    return ChannelCredentials(relay.rstrip("/"), entry["channel"], entry["token"], entry["url"])


async def create(relay: str, wanted: str | None = None) -> ChannelCredentials:
    """Ask the relay for a channel (the same id as before, when we had one) and remember it."""
    relay = relay.rstrip("/")
    payload = {"channel": wanted} if wanted else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.post(f"{relay}/api/channels", json=payload) as resp,
        ):
            try:
                body = await resp.json(content_type=None)
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
            if resp.status == 409 and wanted:
                return await create(relay)
            if resp.status != 201 or not isinstance(body, dict):
                reason = body.get("error") if isinstance(body, dict) else f"HTTP {resp.status}"
                raise RelayRefused(f"the relay at {relay} refused to create a channel: {reason}")
    except aiohttp.ClientError as exc:
        raise ConnectionError(f"cannot reach the relay at {relay}: {exc}") from None
    creds = ChannelCredentials(relay, body["channel"], body["token"], body["webhook_url"])
    data = _load()
    data[relay] = {"channel": creds.channel, "token": creds.token, "url": creds.webhook_url}
    _save(data)
    return creds


async def ensure(relay: str) -> ChannelCredentials:
    return stored(relay) or await create(relay)
