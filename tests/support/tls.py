"""TLS for tunnel tests: a certificate for the providers' public names, trusted through
SSL_CERT_FILE as a user's proxy CA would be, and a TLS-terminating "edge" in front of a
plain port (what localhost.run's servers do in front of an ssh forward)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

NAMES = ("*.trycloudflare.com", "*.lhr.life")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for NAMES, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / "edge.pem", folder / "edge.key"
    sans = ",".join(f"DNS:{name}" for name in NAMES)
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=hooktap test edge",
            "-addext", f"subjectAltName={sans}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@contextlib.asynccontextmanager
async def tls_edge(cert: Path, key: Path, target_port: int) -> AsyncIterator[int]:
    """Accept TLS on a loopback port and pipe the plain bytes to 127.0.0.1:target_port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            running = asyncio.ensure_future(task)
            pipes.add(running)
            running.add_done_callback(pipes.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await server.wait_closed()
