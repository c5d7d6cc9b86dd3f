"""`--public ngrok`: ngrok's Python SDK (the optional extra `hooktap[ngrok]`), in process.

    ngrok.forward(addr, authtoken_from_env=True, domain=...)

needs NGROK_AUTHTOKEN. Every ngrok account has one free static domain, which `--domain`
passes on: with it the URL is the same on every run. The SDK keeps its session up and
reconnects by itself, so there is no process to watch; the URL changes only on a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import re
from types import ModuleType
from typing import Any

from hooktap.public.base import STABLE_WAYS, PublicUnavailable, TunnelLost, Verdict, judge

TOKEN_ENV = "NGROK_AUTHTOKEN"
_SDK = "ngrok's Python SDK (`pip install 'hooktap[ngrok]'`, or `pip install ngrok`)"
_TOKEN = (
    f"{TOKEN_ENV} (copy your authtoken from "
    "https://dashboard.ngrok.com/get-started/your-authtoken, then "
    f"`export {TOKEN_ENV}=...`)"
)
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")
_VERDICTS: list[Verdict] = [
    (
        re.compile(r"ERR_NGROK_108\b|simultaneous", re.IGNORECASE),
        "refused",
        "ngrok allows one agent session at a time on this account, and one is already "
        "running elsewhere: stop it, or use `--public cloudflared`",
    ),
    (
        re.compile(r"ERR_NGROK_(?:105|4018)\b|authentication failed|authtoken", re.IGNORECASE),
        "refused",
        f"ngrok refused {TOKEN_ENV}: check it against your dashboard",
    ),
    (
        re.compile(r"rate.?limit|too many requests", re.IGNORECASE),
        "rate-limited",
        "ngrok is rate-limiting this account; wait a minute and try again",
    ),
    (
        re.compile(r"\bdomain\b", re.IGNORECASE),
        "refused",
        "ngrok refused the domain: use the static domain your ngrok dashboard lists for "
        "your account (Domains), exactly as shown",
    ),
]


def normalize_domain(domain: str) -> str:
    """`--domain` as ngrok wants it: a bare host name (a pasted https://... is forgiven)."""
    host = domain.strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not _DOMAIN.fullmatch(host):
        raise PublicUnavailable(
            f"--domain {domain!r} is not a host name; give the static domain from your ngrok "
            "dashboard, such as NAME.ngrok-free.app",
            "refused",
        )
    return host


class Ngrok:
    name = "ngrok"

    def __init__(self, domain: str | None = None) -> None:
        self.domain = normalize_domain(domain) if domain else None

    @property
    def stability_note(self) -> str | None:
        if self.domain:
            return None
        return "Without --domain, this ngrok URL changes every time hooktap starts. " + STABLE_WAYS

    def check(self) -> ModuleType:
        """The SDK module; or one message naming everything that is missing."""
        missing: list[str] = []
        sdk: ModuleType | None = None
        try:
            sdk = importlib.import_module("ngrok")
        except ImportError:
            missing.append(_SDK)
        if not os.environ.get(TOKEN_ENV, "").strip():
            missing.append(_TOKEN)
        if missing or sdk is None:
            raise PublicUnavailable("`--public ngrok` needs " + " and ".join(missing), "missing")
        return sdk

    async def open(self, local_url: str) -> NgrokSession:
        sdk = self.check()
        options: dict[str, Any] = {"authtoken_from_env": True}
        if self.domain:
            options["domain"] = self.domain
        try:
            listener = sdk.forward(local_url, **options)
            if inspect.isawaitable(listener):  # inside an event loop the SDK hands a future
                listener = await listener
            url = str(listener.url())
        except Exception as exc:  # the SDK raises ValueError carrying ngrok's error text
            raise verdict(str(exc)) from None
        return NgrokSession(sdk, listener, url)


def verdict(said: str) -> PublicUnavailable:
    """The sentence for an error the SDK raised (its text carries ngrok's ERR_NGROK_ code)."""
    verdict = judge(said, _VERDICTS)
    if verdict is None:
        return PublicUnavailable(f"ngrok could not open a tunnel: {said.strip()}")
    return PublicUnavailable(f"{verdict} (ngrok said: {said.strip()})", verdict.kind)


class NgrokSession:
    pid = None  # in process: nothing to watch but our own

    def __init__(self, sdk: ModuleType, listener: Any, url: str) -> None:
        self.url = url
        self._sdk = sdk
        self._listener = listener
        self._closed = asyncio.Event()

    async def changed(self) -> str:
        await self._closed.wait()
        raise TunnelLost("the ngrok tunnel was closed")

    async def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(Exception):
            closing = self._listener.close()
            if inspect.isawaitable(closing):
                await closing
