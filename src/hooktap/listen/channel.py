"""The listener's channel credentials, kept in HOOKTAP_HOME so the webhook URL is stable.

The token is the channel's only credential: the relay stores just its hash, so this file
(owner-only) is the one place it exists. The channel id is derived from the token, so a relay
that lost its data gives the same channel back to the token, and to nobody else; a channel an
older relay named otherwise keeps its URL until a relay forgets it.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp

from hooktap import tls
from hooktap.home import home_dir

_CHANNEL_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
_ENTRY_KEYS = ("channel", "token", "url")


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


@dataclass(frozen=True)
class RelayAccess:
    """What it takes to reach a relay: the CA its certificate must chain to (None: the
    system's trust store) and its key for making channels (`hooktap relay --require-key`)."""

    ca_file: Path | None = None
    key: str | None = field(default=None, repr=False)

    def ssl_for(self, url: str) -> ssl.SSLContext | None:
        """The TLS context for an https/wss URL; None for plain http/ws. RelayRefused when
        --ca-file cannot be used: that is the user's to fix, not worth a retry."""
        if not url.startswith(("https://", "wss://")):
            return None
        try:
            return tls.client_context(self.ca_file)
        except tls.CAFileError as exc:
            raise RelayRefused(str(exc)) from None


class ChannelsFileError(RelayRefused):
    """channels.json cannot be used as it is: the user fixes or deletes it, we never guess."""


def file_path(home: Path | None = None) -> Path:
    """channels.json in `home` (HOOKTAP_HOME when None)."""
    return (home or home_dir()) / "channels.json"


def _unusable(path: Path, why: str) -> ChannelsFileError:
    return ChannelsFileError(
        f"{path} {why}; fix it, or delete it to start afresh (each relay then gives you a "
        "new webhook URL to paste into Pivotal)"
    )


def _load(path: Path | None = None) -> dict[str, dict[str, str]]:
    """Every entry checked up front: a bad one is the user's to fix, not a KeyError later."""
    path = path or file_path()
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _unusable(path, f"cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _unusable(path, f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _unusable(path, "is not a JSON object of relay URL to channel")
    for relay, entry in data.items():
        if not isinstance(entry, dict):
            raise _unusable(path, f"has an entry for {relay} that is not an object")
        bad = [key for key in _ENTRY_KEYS if not isinstance(entry.get(key), str) or not entry[key]]
        if bad:
            raise _unusable(path, f"has an entry for {relay} without a string {' or '.join(bad)}")
    return data


def _save(data: dict[str, dict[str, str]], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def remember(creds: ChannelCredentials, home: Path | None = None) -> None:
    """Keep the channel for its relay in `home`'s channels.json (HOOKTAP_HOME when None),
    owner-only: the token is the channel's only credential. Other relays' entries stay."""
    path = file_path(home)
    data = _load(path)
    data[creds.relay.rstrip("/")] = {
        "channel": creds.channel,
        "token": creds.token,
        "url": creds.webhook_url,
    }
    _save(data, path)


def stored(relay: str) -> ChannelCredentials | None:
    entry = _load().get(relay.rstrip("/"))
    if not entry:
        return None
    return ChannelCredentials(relay.rstrip("/"), entry["channel"], entry["token"], entry["url"])


# Several --relay URLs are instances of one relay, so one channel (one token) serves them all.
# channels.json keeps its shape, one entry per URL: the group's channel is written under every
# one of its URLs, so older files read as before and a later run given any one URL alone, or
# the URLs in another order, finds the same channel.


def stored_any(relays: Sequence[str]) -> ChannelCredentials | None:
    """The channel kept for the first of `relays` that has one (the order the user gave is
    the order of preference), to be used from the first URL on."""
    for relay in relays:
        creds = stored(relay)
        if creds is not None:
            return replace(creds, relay=relays[0].rstrip("/"))
    return None


def share(creds: ChannelCredentials, relays: Sequence[str], home: Path | None = None) -> None:
    """Keep `creds` under every URL of the group; the webhook URL of an entry is the one its
    own relay reported when it has, else the one reported so far."""
    path = file_path(home)
    data = _load(path)
    for relay in relays:
        key = relay.rstrip("/")
        old = data.get(key)
        same = old is not None and old["token"] == creds.token and key != creds.relay
        data[key] = {
            "channel": creds.channel,
            "token": creds.token,
            "url": old["url"] if same and old else creds.webhook_url,
        }
    _save(data, path)


async def ensure_any(
    relays: Sequence[str], access: RelayAccess | None = None
) -> ChannelCredentials:
    """The group's channel: the one kept for any of its URLs (not checked here: the listener
    re-claims it by token on an instance that does not know it), else a new one from the
    first instance that can be reached."""
    creds = stored_any(relays)
    if creds is None:
        unreachable: list[str] = []
        refusals: list[str] = []
        for relay in relays:
            try:
                creds = await create(relay, access)
                break
            except ChannelsFileError:
                raise  # the same file for every relay
            except RelayRefused as exc:
                refusals.append(str(exc))
            except ConnectionError as exc:
                unreachable.append(str(exc))
        else:
            if refusals:  # the user's to fix (a key, a CA), which no retry changes
                raise RelayRefused("; ".join(refusals + unreachable))
            raise ConnectionError("; ".join(unreachable))
    share(creds, relays)
    return creds


async def _post(
    relay: str, payload: dict[str, str], what: str, access: RelayAccess | None
) -> ChannelCredentials:
    """POST /api/channels and read a channel out of a 200 or 201.

    The relay key goes with every call when there is one: a relay that requires it wants it
    to make a channel, which a re-claim does too when the relay lost its data."""
    access = access or RelayAccess()
    headers = {"Authorization": f"Bearer {access.key}"} if access.key else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.post(
                f"{relay}/api/channels",
                json=payload,
                headers=headers,
                ssl=access.ssl_for(relay) or True,
            ) as resp,
        ):
            try:
                body = await resp.json(content_type=None)
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
            status = resp.status
    except ssl.SSLCertVerificationError as exc:
        # Not a network hiccup: retrying cannot help until the user says which CA to trust.
        raise RelayRefused(tls.certificate_problem(relay, exc, access.ca_file)) from None
    except aiohttp.ClientSSLError as exc:
        raise RelayRefused(tls.handshake_problem(relay, exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConnectionError(f"cannot reach the relay at {relay}: {exc or 'timed out'}") from None
    if status not in (200, 201) or not isinstance(body, dict):
        reason = body.get("error") if isinstance(body, dict) else None
        if status >= 500:  # there, but unable now (its store or NATS busy, a restart): retry
            raise ConnectionError(f"the relay at {relay} could not {what}: {reason or status}")
        raise RelayRefused(f"the relay at {relay} refused to {what}: {reason or f'HTTP {status}'}")
    channel, token, url = (body.get(key) for key in ("channel", "token", "webhook_url"))
    if not (
        isinstance(channel, str)
        and _CHANNEL_RE.match(channel)
        and isinstance(token, str)
        and token
        and isinstance(url, str)
    ):
        raise RelayRefused(f"the relay at {relay} answered {what} with no usable channel")
    return ChannelCredentials(relay, channel, token, url)


async def create(relay: str, access: RelayAccess | None = None) -> ChannelCredentials:
    """A new channel and token from the relay, remembered for the next run."""
    creds = await _post(relay.rstrip("/"), {}, "create a channel", access)
    remember(creds)
    return creds


async def reclaim(
    old: ChannelCredentials, access: RelayAccess | None = None
) -> tuple[ChannelCredentials, str | None]:
    """The channel this token owns on the relay (the relay makes it again if it lost it), and
    a sentence for the user when the webhook URL is no longer the one they pasted."""
    new = await _post(
        old.relay, {"token": old.token}, "give this listener its channel back", access
    )
    remember(new)
    if new.webhook_url == old.webhook_url:
        return new, None
    if new.channel == old.channel:
        return new, f"the relay now gives channel {old.channel} the webhook URL " + (
            f"{new.webhook_url} (it was {old.webhook_url}) — update it in Pivotal"
        )
    return new, (
        f"the relay no longer knew channel {old.channel}; your webhook URL is now "
        f"{new.webhook_url} — update it in Pivotal"
    )


async def ensure(
    relay: str, *, reclaim_stored: bool = False, access: RelayAccess | None = None
) -> tuple[ChannelCredentials, str | None]:
    """The channel kept for this relay, re-claimed first when asked (cheap on the embedded
    relay, and it makes the first printed URL the right one); else a new one."""
    creds = stored(relay)
    if creds is None:
        return await create(relay, access), None
    if reclaim_stored:
        return await reclaim(creds, access)
    return creds, None
