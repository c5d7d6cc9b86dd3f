"""`hooktap listen` on a real terminal (a pty): the inspector opens by default, shows a
delivery, and `q` / ctrl+c quit cleanly, stopping the listener and the embedded relay."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from support.servers import running_handler

_ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>]")


class Terminal:
    """A hooktap process on a pty, with everything it drew kept as text without escapes."""

    def __init__(self, args: list[str], home: Path, *, command: list[str] | None = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        env = {**os.environ, "HOOKTAP_HOME": str(home), "TERM": "xterm-256color"}
        env.pop("TEXTUAL", None)
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "hooktap"]), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.raw = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.raw += chunk

    @property
    def text(self) -> str:
        with self._lock:
            return _ANSI.sub(b"", bytes(self.raw)).decode("utf-8", "replace")

    async def wait_for(self, needle: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never shown; screen:\n{self.text[-3000:]}")
            await asyncio.sleep(0.05)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def exit_code(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"did not exit; screen:\n{self.text[-3000:]}")
            await asyncio.sleep(0.05)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@contextmanager
def terminal(
    args: list[str], home: Path, *, command: list[str] | None = None
) -> Iterator[Terminal]:
    term = Terminal(args, home, command=command)
    try:
        yield term
    finally:
        term.close()


@pytest.mark.parametrize("quit_key", ["q", "\x03", "SIGTERM"], ids=["q", "ctrl+c", "sigterm"])
async def test_listen_opens_the_inspector_on_a_terminal_and_quits_cleanly(
    hooktap_home: Path, quit_key: str
) -> None:
    async with running_handler() as handler:
        args = ["listen", "--forward", handler.url + "/hooks", "--port", "0"]
        with terminal(args, hooktap_home) as term:
            await term.wait_for("● connected")
            info = json.loads((hooktap_home / "listener.json").read_text())
            async with (
                aiohttp.ClientSession() as http,
                http.post(info["webhook_url"], data=b'{"type":"task.overdue"}') as resp,
            ):
                assert resp.status == 200
            await term.wait_for("task.overdue")
            if quit_key == "SIGTERM":
                term.proc.send_signal(signal.SIGTERM)
            else:
                term.type(quit_key)
            assert await term.exit_code() == 0
        assert not (hooktap_home / "listener.json").exists()  # the listener said goodbye


async def test_listen_reports_a_busy_port_after_restoring_the_terminal(hooktap_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        with terminal(["listen", "--forward", "8000", "--port", port], hooktap_home) as term:
            assert await term.exit_code() == 2
            await term.wait_for(f"port {port} is in use by another program", timeout=5)


async def test_inspect_opens_on_a_terminal_and_quits(hooktap_home: Path) -> None:
    # The command as the CLI group will run it (wired in by the CLI's owner).
    command = [sys.executable, "-c", "from hooktap.cli.inspect_cmd import inspect_cmd as c; c()"]
    with terminal(["--utc", "--filter", "type:task.*"], hooktap_home, command=command) as term:
        await term.wait_for("■ history only")
        await term.wait_for("filter: type:task.*")
        term.type("q")
        assert await term.exit_code() == 0
