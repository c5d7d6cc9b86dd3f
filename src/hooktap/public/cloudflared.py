"""Cloudflare's quick tunnels: `cloudflared tunnel --url ...`, no account needed.

cloudflared asks trycloudflare.com for a random `<words>.trycloudflare.com` name, prints it
in a boxed log line on stderr, and serves it on its metrics address as
`GET /quicktunnel` -> `{"hostname": "..."}`; `GET /ready` turns 200 once a connection to
Cloudflare's edge is up. The metrics answer is read first (it does not change with the log
format); the log line is the fallback when the metrics address does not answer.

Failures worth their own sentence: no binary; Cloudflare rate-limiting quick-tunnel
creation (429, "error code: 1015"); no way out to trycloudflare.com.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import time
from collections.abc import Mapping

import aiohttp

from hooktap.public.base import (
    STABLE_WAYS,
    ChildProcess,
    PublicUnavailable,
    TunnelLost,
)

ENV = "HOOKTAP_CLOUDFLARED"
_QUICK_URL = re.compile(r"https://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.trycloudflare\.com\b")
_RATE_LIMITED = re.compile(r"\b429\b|Too Many Requests|error code: 1015", re.IGNORECASE)
_NO_WAY_OUT = re.compile(
    r"failed to request quick Tunnel|no such host|dial tcp|network is unreachable|"
    r"connection refused|i/o timeout",
    re.IGNORECASE,
)
INSTALL = (
    "`--public` uses Cloudflare's quick tunnels, which need the `cloudflared` program, and it "
    "is not on PATH. Install it (macOS: `brew install cloudflared`; Linux and Windows: "
    "https://github.com/cloudflare/cloudflared/releases), or set HOOKTAP_CLOUDFLARED to its "
    "path; or use `--public ssh` (needs only ssh) or `--public ngrok`."
)


def find_cloudflared(env: Mapping[str, str] = os.environ) -> list[str]:
    """The command that runs cloudflared: HOOKTAP_CLOUDFLARED (a path, or a command line
    such as `python fake_cloudflared.py`), else `cloudflared` on PATH."""
    value = env.get(ENV, "").strip()
    if not value:
        found = shutil.which("cloudflared")
        if found is None:
            raise PublicUnavailable(INSTALL, "missing")
        return [found]
    if os.path.isfile(value):
        if not os.access(value, os.X_OK):
            raise PublicUnavailable(
                f"{ENV} is {value!r}, which is not executable (chmod +x it)", "missing"
            )
        return [value]
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise PublicUnavailable(f"{ENV} cannot be read as a command ({exc})", "missing") from None
    found = shutil.which(words[0]) if words else None
    if found is None:
        raise PublicUnavailable(
            f"{ENV} is {value!r}, but {words[0] if words else value!r} is neither an "
            "executable file nor a program on PATH",
            "missing",
        )
    return [found, *words[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cloudflared:
    name = "cloudflared"
    stability_note: str | None = (
        "This quick-tunnel URL changes every time hooktap starts. " + STABLE_WAYS
    )

    def __init__(self, start_timeout: float = 45.0, metrics_grace: float = 3.0) -> None:
        self.start_timeout = start_timeout
        # How long after the log line shows a URL the metrics address may stay silent
        # before the log line is believed on its own.
        self.metrics_grace = metrics_grace

    def check(self) -> None:
        find_cloudflared()

    async def open(self, local_url: str) -> CloudflaredSession:
        session = CloudflaredSession(find_cloudflared(), local_url, _free_port())
        try:
            await session.start(self.start_timeout, self.metrics_grace)
        except BaseException:
            await session.close()
            raise
        return session


class CloudflaredSession:
    def __init__(self, command: list[str], local_url: str, metrics_port: int) -> None:
        self.url = ""
        self.metrics = f"http://127.0.0.1:{metrics_port}"
        self.argv = [
            *command,
            "tunnel",
            "--url",
            local_url,
            "--no-autoupdate",
            "--metrics",
            f"127.0.0.1:{metrics_port}",
        ]
        self.logged_url: str | None = None
        self._logged_at = 0.0
        self._process = ChildProcess("cloudflared", self._line)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _line(self, line: str) -> None:
        found = _QUICK_URL.search(line)
        if found and self.logged_url is None:
            self.logged_url = found.group(0)
            self._logged_at = time.monotonic()

    async def start(self, timeout: float, metrics_grace: float) -> None:
        await self._process.start(self.argv)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            self.url = await self._await_url(http, deadline, metrics_grace)
            await self._await_ready(http, deadline)

    async def _await_url(
        self, http: aiohttp.ClientSession, deadline: float, metrics_grace: float
    ) -> str:
        while True:
            self._raise_if_exited("before it gave a URL")
            hostname = await self._quicktunnel(http)
            if hostname:
                return hostname if hostname.startswith("https://") else f"https://{hostname}"
            if self.logged_url and time.monotonic() - self._logged_at >= metrics_grace:
                return self.logged_url  # metrics silent: trust the boxed log line
            if time.monotonic() >= deadline:
                raise PublicUnavailable(
                    "cloudflared gave no quick-tunnel URL in time; its last words: "
                    f"{self._process.last_words()}"
                )
            await asyncio.wait({self._process.exited}, timeout=0.2)

    async def _quicktunnel(self, http: aiohttp.ClientSession) -> str | None:
        try:
            async with http.get(f"{self.metrics}/quicktunnel") as resp:
                if resp.status != 200:
                    return None
                body = json.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        hostname = body.get("hostname") if isinstance(body, dict) else None
        return hostname if isinstance(hostname, str) and hostname else None

    async def _await_ready(self, http: aiohttp.ClientSession, deadline: float) -> None:
        """Wait for `/ready` to say a connection to Cloudflare's edge is up, when cloudflared
        answers it; without it, the probe that follows tells."""
        while True:
            self._raise_if_exited(f"after giving {self.url}")
            try:
                async with http.get(f"{self.metrics}/ready") as resp:
                    if resp.status == 200:
                        return
                    if resp.status != 503:
                        return  # a cloudflared without /ready
            except (aiohttp.ClientError, TimeoutError):
                return  # metrics silent: the probe will tell
            if time.monotonic() >= deadline:
                raise PublicUnavailable(
                    f"cloudflared got {self.url} but could not connect to Cloudflare's edge "
                    "(outbound port 7844, TCP and UDP, may be blocked here); its last words: "
                    f"{self._process.last_words()}"
                )
            await asyncio.wait({self._process.exited}, timeout=0.25)

    def _raise_if_exited(self, when: str) -> None:
        if not self._process.exited.done():
            return
        said = "\n".join(self._process.tail)
        words = self._process.last_words()
        if _RATE_LIMITED.search(said):
            raise PublicUnavailable(
                "Cloudflare is rate-limiting quick tunnels from this network (429 Too Many "
                "Requests); wait a few minutes before trying again, or use `--public ssh` or "
                "`--public ngrok`",
                "rate-limited",
            )
        if _NO_WAY_OUT.search(said) and not self.url:
            raise PublicUnavailable(
                "cloudflared could not reach trycloudflare.com to make a quick tunnel (no "
                f"internet, or a firewall in the way); its last words: {words}",
                "refused",
            )
        raise PublicUnavailable(f"{self._process.how_it_ended()} {when}; its last words: {words}")

    async def changed(self) -> str:
        """A quick tunnel keeps its name while cloudflared runs: only its end is news."""
        await asyncio.shield(self._process.exited)
        raise TunnelLost(f"{self._process.how_it_ended()} ({self._process.last_words(1)})")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._process.stop()
