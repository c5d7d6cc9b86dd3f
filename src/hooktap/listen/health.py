"""Is the local handler there? A TCP connect to each forward target, at start and every 15 s.

A developer learns that their server is down from the header or a log line before a webhook
fails on it, not from the failure. The probe is only a connect, closed at once with no byte
sent: an HTTP request every 15 s would fill the handler's log with junk and could hit an
endpoint that acts on it. Targets are probed by host and port, since that is what a connect
can tell; two routes to the same server share one state.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable, Sequence

from hooktap.listen.events import TargetHealth
from hooktap.listen.target import Target

Probe = tuple[str, str]  # (state "up" | "down", the reason when down)


def host_port(target: Target) -> str:
    """ "localhost:8000", "[::1]:8000": the port is always named, even a default one, because
    a person reading "localhost down" would not know which of their servers is meant."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


class HealthWatch:
    """Probes every distinct host:port of `targets` at once, then every `interval` seconds;
    emits a TargetHealth for each after the first round, whatever its state, then one on each
    change. `states` holds the latest state of each host:port."""

    def __init__(
        self,
        targets: Sequence[Target],
        emit: Callable[[TargetHealth], None],
        *,
        interval: float = 15.0,
        timeout: float = 2.0,
    ) -> None:
        self._emit = emit
        self.interval = interval
        self.timeout = timeout
        self._hosts: dict[str, tuple[str, int]] = {}
        self._urls: dict[str, tuple[str, ...]] = {}
        for target in targets:
            key = host_port(target)
            self._hosts[key] = (target.host, target.port)
            urls = self._urls.get(key, ())
            if str(target) not in urls:
                self._urls[key] = (*urls, str(target))
        self.states: dict[str, str] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Until stop(): a probe round, then a wait of `interval`. Stopping mid-round abandons
        the round's connects rather than waiting out their timeout."""
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                keys = list(self._hosts)
                # return_exceptions: a probe that fails in a way nobody foresaw costs its own
                # target a report, never the watch of every target.
                round_ = asyncio.ensure_future(
                    asyncio.gather(
                        *(self._probe(k, *self._hosts[k]) for k in keys), return_exceptions=True
                    )
                )
                await asyncio.wait({round_, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not round_.done():
                    round_.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await round_
                    return
                for key, probe in zip(keys, round_.result(), strict=True):
                    if isinstance(probe, BaseException):
                        probe = "down", f"{key} could not be probed ({probe!r})"
                    self._report(key, *probe)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stop), self.interval)
        finally:
            stop.cancel()

    def stop(self) -> None:
        self._stopping.set()

    def _report(self, key: str, state: str, reason: str) -> None:
        before = self.states.get(key)
        if before == state:
            return
        self.states[key] = state
        if state == "up":
            detail = f"{key} is accepting connections" + (" again" if before == "down" else "")
        else:
            detail = reason
        self._emit(TargetHealth(key, state, detail, self._urls[key]))

    async def _probe(self, key: str, host: str, port: int) -> Probe:
        try:
            async with asyncio.timeout(self.timeout):
                return await _connect(key, host, port)
        except TimeoutError:
            return "down", f"{key} did not answer a connection within {self.timeout:g} s"
        except UnicodeError as exc:  # `api..local`, a label over 63: the idna codec refuses it
            return "down", f"{key} cannot be reached: {host!r} is not a valid host name ({exc})"
        except OSError as exc:  # no socket to be had (too many open files, a family not built in)
            return "down", f"{key} cannot be probed ({(exc.strerror or str(exc)).lower()})"


async def _connect(key: str, host: str, port: int) -> Probe:
    """Connect to each address the host resolves to until one accepts. Done by hand rather
    than with open_connection, which folds several addresses' failures (localhost is ::1 and
    127.0.0.1) into one "Multiple exceptions" message a person cannot use."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return "down", f"{key} cannot be reached: the name {host} does not resolve ({exc.strerror})"
    errors: list[OSError] = []
    for family, type_, proto, _name, address in infos:
        try:
            with socket.socket(family, type_, proto) as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
        except OSError as exc:
            errors.append(exc)
            continue
        return "up", ""
    return "down", f"{key} is not accepting connections ({_why(errors)})"


def _why(errors: list[OSError]) -> str:
    """The most telling of the failures: refused (nothing listens) before the rest."""
    if not errors:
        return "the name resolves to no address"
    if any(e.errno == errno.ECONNREFUSED for e in errors):
        return "connection refused"
    first = errors[0]
    return (first.strerror or str(first)).lower()
