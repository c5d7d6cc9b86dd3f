"""No login to NATS in plain text once the operator asked for TLS (nats_connect.tls_asked_by).

nats-py decides to upgrade to TLS from the server's plaintext INFO (`tls_required`) alone, for
tls:// URLs too: a server without TLS, or anyone on the path who strips that flag from INFO,
would get CONNECT, with the token, password or creds signature, in plain text. `TlsOnlyClient`
refuses such a server between INFO and CONNECT; the relay's first connect then ends with exit 2
(nats_connect.refusal), and a reconnect is refused the same way and only logged. A server that
takes TLS optionally (allow_non_tls: INFO says tls_available) is upgraded rather than refused.

Why this and not nats-py's `tls_handshake_first`: that makes TLS come before INFO, but only
servers configured with `handshake_first` accept it, so it cannot be the default; this works
with any TLS server as nats-server is configured by default.

It hooks two private methods of nats-py's Client (checked with nats-py 2.16): `_process_info`,
which `_process_connect_init` awaits with the first INFO before it decides on the upgrade, and
`_connect_command`, which builds CONNECT just before it is written. `check_hooks` makes sure a
newer nats-py still calls both there, and the second hook looks at the socket itself, so a
change in nats-py fails closed (no connect, a sentence saying why), never open.
"""

from __future__ import annotations

import inspect
from typing import Any

from nats.aio.client import Client
from nats.aio.client import __version__ as NATS_PY
from nats.errors import Error as NatsError

from hooktap.relay.broker import KeepFailed
from hooktap.relay.broker.nats_connect import (
    ErrorCallback,
    NatsConnect,
    PlainTextRefused,
    connect_kwargs,
    tls_asked_by,
)


class _PlainText(PlainTextRefused, NatsError):
    """A nats-py error, so that nats-py's connect loops pass it to error_cb."""


async def connect_nats(
    servers: list[str], options: NatsConnect | None, on_error: ErrorCallback, **more: Any
) -> Client:
    """nats.connect with these options' credentials and TLS (nats_connect.connect_kwargs),
    refusing any server that would not be TLS when TLS was asked for."""
    asked_by = tls_asked_by(servers, options)
    if asked_by is not None:
        check_hooks()
    client = TlsOnlyClient(asked_by)
    await client.connect(servers=servers, **connect_kwargs(options, on_error), **more)
    return client


class TlsOnlyClient(Client):
    """A nats-py Client that never writes CONNECT on a connection that is not TLS, once TLS
    was asked for (`asked_by` says by what; None: plain connections are fine)."""

    def __init__(self, asked_by: str | None) -> None:
        super().__init__()
        self.asked_by = asked_by

    def _refusal(self, what: str) -> _PlainText:
        # Drop the plain socket now: nats-py keeps its transport after a failed attempt and
        # writes what it buffered meanwhile (publishes, webhooks) to it when closed.
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        server = self._current_server
        where = f"{server.uri.hostname}:{server.uri.port}" if server is not None else "?"
        return _PlainText(
            f"NATS server {where} {what}; refusing to send credentials and webhooks in plain "
            f"text ({self.asked_by} asks for TLS)"
        )

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        if self.asked_by and initial_connection and not info.get("tls_required"):
            if not info.get("tls_available"):
                raise self._refusal("does not offer TLS")
            # A server with allow_non_tls takes TLS when the client starts it; nats-py starts
            # it on this same dict's flag (it is the Client's _server_info).
            info["tls_required"] = True
        await super()._process_info(info, initial_connection)

    def _connect_command(self) -> bytes:
        if self.asked_by is not None:
            # TcpTransport's writer is the TLS one after the upgrade; any other shape (a newer
            # nats-py) is refused too: failing closed, never open.
            writer = getattr(self._transport, "_io_writer", None)
            if writer is None or writer.get_extra_info("ssl_object") is None:
                raise self._refusal("is not connected over TLS")
        return super()._connect_command()


def check_hooks() -> None:
    """KeepFailed unless this nats-py still awaits both hooks where TlsOnlyClient needs them."""
    try:
        source = inspect.getsource(Client._process_connect_init)
    except (AttributeError, OSError, TypeError):
        source = ""
    info = source.find("self._process_info(")
    upgrade = source.find("connect_tls(", info)
    connect = source.find("self._connect_command()", upgrade)
    if min(info, upgrade, connect) < 0:
        raise KeepFailed(
            f"nats-py {NATS_PY} connects in a way this hooktap does not know, so it cannot make "
            "sure the login to NATS is TLS as asked; install the nats-py version that hooktap's "
            "tests ran with (2.16)"
        )
