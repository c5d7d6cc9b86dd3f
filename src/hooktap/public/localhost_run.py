"""`--public ssh`: localhost.run over the system's own `ssh -R`, no account needed.

    ssh -R 80:127.0.0.1:P nokey@localhost.run -- --output json

With `--output json` the service prints one JSON object a line on the session's stdout;
the one that matters is

    {"event": "tcpip-forward", "status": "success", "address": "<name>.lhr.life",
     "message": "<name>.lhr.life tunneled with tls termination, https://<name>.lhr.life", ...}

Free names rotate: a later `tcpip-forward` line with another address is a new URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from typing import ClassVar

from hooktap.public.base import (
    STABLE_WAYS,
    ChildProcess,
    PublicUnavailable,
    TunnelLost,
    Verdict,
    judge,
    loopback_port,
)

INSTALL = (
    "`--public ssh` needs the OpenSSH client (`ssh`) on PATH, and it is not there. Install it "
    "(Debian/Ubuntu: `apt install openssh-client`; macOS and Windows 10+ include it), or use "
    "`--public cloudflared` or `--public ngrok`."
)
_TEXT_URL = re.compile(r"tunneled with tls termination, (https://[^\s,]+)")
_STDERR_VERDICTS: list[Verdict] = [
    (
        re.compile(r"Permission denied|Too many authentication failures", re.IGNORECASE),
        "refused",
        "{host} refused the ssh login as {user!r} ({words})",
    ),
    (
        re.compile(r"too many (?!authentication)|rate.?limit", re.IGNORECASE),
        "rate-limited",
        "{host} is limiting new tunnels from this address; wait a few minutes, or use "
        "`--public cloudflared` or `--public ngrok`",
    ),
    (
        re.compile(r"remote port forwarding failed", re.IGNORECASE),
        "refused",
        "{host} refused to forward a port to this machine ({words})",
    ),
    (
        re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION", re.IGNORECASE),
        "refused",
        "ssh does not trust {host}'s host key ({words}); check ~/.ssh/known_hosts",
    ),
    (
        re.compile(
            r"Could not resolve hostname|Network is unreachable|Connection refused|"
            r"Connection timed out|Operation timed out|No route to host",
            re.IGNORECASE,
        ),
        "refused",
        "cannot reach {host} over ssh (no internet, or port {port} blocked): {words}",
    ),
]


@dataclass(frozen=True)
class ForwardEvent:
    url: str | None  # the public URL, when the forward succeeded
    problem: str | None  # what the service said, when it did not


def parse_line(line: str) -> ForwardEvent | None:
    """What one line of localhost.run's output says about the forward, if anything.

    JSON lines (`--output json`) are read by their fields; a plain line that announces a
    tunnel (an older service ignoring `--output json`) by its wording."""
    text = line.strip()
    if not text.startswith("{"):
        found = _TEXT_URL.search(text)
        return ForwardEvent(found.group(1), None) if found else None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") != "tcpip-forward":
        return None
    message = event.get("message") if isinstance(event.get("message"), str) else ""
    status = event.get("status", "success")
    if status != "success":
        return ForwardEvent(None, message or f"status {status!r}")
    address = event.get("address")
    if isinstance(address, str) and re.fullmatch(r"[A-Za-z0-9.-]+", address):
        return ForwardEvent(f"https://{address.lower()}", None)
    found = _TEXT_URL.search(message)
    return ForwardEvent(found.group(1), None) if found else None


@dataclass
class LocalhostRun:
    """Its fields are localhost.run's values by default; tests point them at an sshd of
    their own."""

    host: str = "localhost.run"
    user: str = "nokey"
    port: int = 22
    remote_port: int = 80
    ssh_options: tuple[str, ...] = ()
    start_timeout: float = 30.0

    name: ClassVar[str] = "ssh"
    stability_note: ClassVar[str | None] = (
        "localhost.run's free URLs change every time hooktap starts, and may change while it "
        "runs (hooktap tells you when). " + STABLE_WAYS
    )

    def check(self) -> None:
        self._ssh()

    def _ssh(self) -> str:
        found = shutil.which("ssh")
        if found is None:
            raise PublicUnavailable(INSTALL, "missing")
        return found

    def argv(self, local_url: str) -> list[str]:
        return [
            self._ssh(),
            "-T",
            *self.ssh_options,  # first: ssh keeps the first value it is given for an option
            "-p",
            str(self.port),
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-R",
            f"{self.remote_port}:127.0.0.1:{loopback_port(local_url)}",
            f"{self.user}@{self.host}",
            "--",
            "--output",
            "json",
        ]

    async def open(self, local_url: str) -> LocalhostRunSession:
        session = LocalhostRunSession(self)
        try:
            await session.start(self.argv(local_url), self.start_timeout)
        except BaseException:
            await session.close()
            raise
        return session


class LocalhostRunSession:
    def __init__(self, provider: LocalhostRun) -> None:
        self.url = ""
        self._provider = provider
        self._urls: asyncio.Queue[str] = asyncio.Queue()
        self._problem: str | None = None
        self._process = ChildProcess("ssh", self._line)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _line(self, line: str) -> None:
        event = parse_line(line)
        if event is None:
            return
        if event.url is not None:
            self._urls.put_nowait(event.url)
        elif event.problem is not None and self._problem is None:
            self._problem = event.problem

    async def start(self, argv: list[str], timeout: float) -> None:
        # Nor may ssh's askpass pop up a window: there is nobody to answer it.
        await self._process.start(argv, env={"SSH_ASKPASS_REQUIRE": "never"})
        deadline = time.monotonic() + timeout
        while True:
            if self._problem is not None:
                raise PublicUnavailable(
                    f"{self._provider.host} refused the tunnel: {self._problem}", "refused"
                )
            if not self._urls.empty():
                self.url = self._urls.get_nowait()
                return
            if self._process.exited.done():
                raise self._failure()
            if time.monotonic() >= deadline:
                raise PublicUnavailable(
                    f"{self._provider.host} gave no URL within {timeout:g} s; ssh said: "
                    f"{self._process.last_words()}"
                )
            await asyncio.wait({self._process.exited}, timeout=0.1)

    def _failure(self) -> PublicUnavailable:
        host, words = self._provider.host, self._process.last_words()
        said = "\n".join(self._process.tail)
        provider = self._provider
        verdict = judge(
            said, _STDERR_VERDICTS, host=host, port=provider.port, user=provider.user, words=words
        )
        return verdict or PublicUnavailable(
            f"{self._process.how_it_ended()} before {host} gave a URL; it said: {words}"
        )

    async def changed(self) -> str:
        getter = asyncio.ensure_future(self._urls.get())
        try:
            await asyncio.wait({getter, self._process.exited}, return_when="FIRST_COMPLETED")
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            self.url = getter.result()
            return self.url
        raise TunnelLost(f"{self._process.how_it_ended()} ({self._process.last_words(1)})")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._process.stop()
