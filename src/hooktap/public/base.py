"""What every tunnel provider shares: the error a user sees, the shape of a provider and of
one of its sessions, and the child process most of them run.

A provider turns the public ingress's loopback URL into a public base URL. The supervisor
(supervisor.py) opens a session, reports its URL, and opens a new one when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Protocol, Self
from urllib.parse import urlsplit

log = logging.getLogger("hooktap.public")

Kind = Literal["missing", "refused", "rate-limited", "failed"]

# Said next to a URL that will not survive a restart, with the two ways to get one that does.
STABLE_WAYS = (
    "For a URL that stays the same, use ngrok's free static domain "
    "(`--public ngrok --domain NAME.ngrok-free.app`), or run your own relay "
    "(`hooktap relay` on a server, then `hooktap listen --relay URL`)."
)


class PublicUnavailable(Exception):
    """No public URL could be had; `str()` is the one sentence to show (the CLI exits 2).

    `kind` lets a caller tell a missing binary or token and a refusal, which retrying cannot
    fix, from a rate limit, which waiting does."""

    def __init__(self, message: str, kind: Kind = "failed") -> None:
        super().__init__(message)
        self.kind: Kind = kind


# (what a provider's output may contain, the kind of failure it means, the sentence to show)
Verdict = tuple[re.Pattern[str], Kind, str]


def judge(said: str, verdicts: list[Verdict], **details: object) -> PublicUnavailable | None:
    """The first verdict whose pattern appears in `said`, its sentence filled in."""
    for pattern, kind, message in verdicts:
        if pattern.search(said):
            return PublicUnavailable(message.format(**details), kind)
    return None


class AsyncScoped:
    """`async with x:` for the pieces that start and stop."""

    async def start(self) -> object:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class TunnelLost(Exception):
    """A session that had a URL ended; `str()` says how, for the user."""


class Session(Protocol):
    """One running tunnel: the URL it got, and the moment that URL changes or goes."""

    url: str
    pid: int | None  # the provider's process, where it runs one

    async def changed(self) -> str:
        """The next URL this session moves to; raises TunnelLost when it ends."""
        ...

    async def close(self) -> None: ...


class Provider(Protocol):
    name: str
    # A sentence to show next to the URL when it will change on the next run; None if stable.
    stability_note: str | None

    def check(self) -> None:
        """Raise PublicUnavailable now if this provider cannot run here (binary, SDK, token)."""
        ...

    async def open(self, local_url: str) -> Session:
        """Start a tunnel to `local_url` and return once its public URL is known."""
        ...


class ChildProcess:
    """A provider's process, with its output read line by line and its end noticed.

    It runs in a session of its own: it has no terminal to prompt on (ssh would otherwise
    ask for a passphrase over the inspector) and does not get the user's Ctrl-C, since
    stopping it is ours to do."""

    def __init__(self, name: str, on_line: Callable[[str], None]) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=40)
        self._on_line = on_line
        self._proc: asyncio.subprocess.Process | None = None
        self._done: asyncio.Task[int] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                limit=1024 * 1024,
            )
        except OSError as exc:
            raise PublicUnavailable(f"cannot start {argv[0]}: {exc}", "missing") from None
        self._done = asyncio.get_running_loop().create_task(self._run(self._proc))

    async def _run(self, proc: asyncio.subprocess.Process) -> int:
        assert proc.stdout is not None and proc.stderr is not None
        readers = [asyncio.ensure_future(self._read(s)) for s in (proc.stdout, proc.stderr)]
        code = await proc.wait()
        # What it said last is usually why it ended: let the readers drain first.
        await asyncio.wait(readers, timeout=1.0)
        for reader in readers:
            reader.cancel()
        return code

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line past the limit: skip it, keep reading
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.tail.append(line)
            try:
                self._on_line(line)
            except Exception:  # a parser's bug must not stop the reading
                log.exception("%s: could not handle the line %r", self.name, line)

    @property
    def exited(self) -> asyncio.Task[int]:
        assert self._done is not None
        return self._done

    def how_it_ended(self) -> str:
        code = self._done.result() if self._done is not None and self._done.done() else None
        if code is None:
            return f"{self.name} stopped"
        if code < 0:
            try:
                return f"{self.name} was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"{self.name} was killed by signal {-code}"
        return f"{self.name} exited with code {code}"

    def last_words(self, count: int = 3) -> str:
        lines = [line.strip() for line in self.tail if line.strip()]
        return " | ".join(lines[-count:]) or "it printed nothing"

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 3 s; safe to call twice or after it died."""
        proc = self._proc
        if proc is None or self._done is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(self._done), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        with contextlib.suppress(Exception):
            await self._done


def loopback_port(local_url: str) -> int:
    """The port of the public ingress's `http://127.0.0.1:P` URL."""
    port = urlsplit(local_url).port
    if port is None:
        raise ValueError(f"not a loopback URL with a port: {local_url!r}")
    return port
