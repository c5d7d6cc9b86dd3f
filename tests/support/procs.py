"""Real hooktap processes for tests: started with the installed CLI, read line by line,
waited on for readiness (never a sleep), and always stopped."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    """A port the OS just handed out, for tests that must restart on the same one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(popen: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM, `grace` seconds to exit, then SIGKILL: every process a test started ends."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)


class Proc:
    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "HOOKTAP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "hooktap", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.out_lines: list[str] = []
        self.err_lines: list[str] = []
        for stream, q in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()

    @staticmethod
    def _pump(stream: IO[bytes] | None, q: queue.Queue[str]) -> None:
        assert stream is not None
        for raw in stream:
            q.put(raw.decode("utf-8", "replace").rstrip("\n"))

    def _next(self, q: queue.Queue[str], sink: list[str], deadline: float) -> str:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(self._story())
        try:
            line = q.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError(self._story()) from None
        sink.append(line)
        return line

    def _story(self) -> str:
        while not self.stderr.empty():
            self.err_lines.append(self.stderr.get())
        return (
            f"timed out; exit={self.popen.poll()}\nstdout: {self.out_lines}\n"
            f"stderr: {self.err_lines}"
        )

    def json_line(self, timeout: float = 15) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        return json.loads(self._next(self.stdout, self.out_lines, deadline))

    def wait_stderr(self, needle: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self._next(self.stderr, self.err_lines, deadline)
            if needle in line:
                return line

    def wait_json(self, event: str, timeout: float = 15) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            obj = json.loads(self._next(self.stdout, self.out_lines, deadline))
            if obj.get("event") == event:
                return obj

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        return self.popen.wait(timeout)

    def rest(self) -> tuple[list[str], list[str]]:
        """Everything printed so far (after the process ended)."""
        time.sleep(0)  # let pump threads finish their last lines
        for q, sink in ((self.stdout, self.out_lines), (self.stderr, self.err_lines)):
            while not q.empty():
                sink.append(q.get())
        return self.out_lines, self.err_lines

    def stop(self) -> None:
        stop_process(self.popen)
        if self.popen.stdout:
            self.popen.stdout.close()
        if self.popen.stderr:
            self.popen.stderr.close()


class Procs:
    """Starts processes and stops every one of them, whatever the test did."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, home, env)
        self.started.append(proc)
        return proc

    def relay(self, home: Path, *extra: str) -> tuple[Proc, str]:
        proc = self.start(["relay", "--port", "0", *extra], home)
        line = proc.wait_stderr("listening on")
        return proc, line.split("listening on ", 1)[1].split()[0]

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()
