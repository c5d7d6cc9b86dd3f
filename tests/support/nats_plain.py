"""A fake NATS server for the TLS-downgrade tests (tests/test_nats_auth.py)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading


class PlainNats:
    """A raw TCP server that speaks only NATS's first line: INFO without tls_required, as a
    server without TLS sends it, or an attacker on the path who strips the flag. It records
    every byte a client writes, so a test sees whether CONNECT (the credentials) went out."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections, self.received, self.done = 0, bytearray(), threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        info = {"server_id": "plain", "version": "2.10.0", "proto": 1, "host": "127.0.0.1"}
        info |= {"port": self.port, "max_payload": 1048576, "auth_required": True}
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1  # before INFO: the client may log its refusal before
            # this thread runs again, and a test that saw the log line counts on this
            with conn, contextlib.suppress(OSError):
                conn.sendall(f"INFO {json.dumps(info)}\r\n".encode())
                conn.settimeout(10)
                while data := conn.recv(65536):
                    self.received += data

    def close(self) -> None:
        self.done.set()
        self.thread.join(15)
        self.sock.close()
