"""A relay on the internet: TLS with a CA made here (trustme), a key for making channels,
/readyz, and JSON logs that hold no secret. Real `hooktap relay` and `hooktap listen`
processes, a real handler on loopback, the listener's own files read where it keeps them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web
from click.testing import CliRunner

from hooktap.cli import main
from hooktap.listen import channel as channels
from hooktap.listen.channel import RelayRefused
from hooktap.listen.events import ConnectionChanged
from hooktap.pivotal.signing import signed_headers
from hooktap.relay import drain
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.keys import RELAY
from support.procs import Proc, Procs, free_port
from support.servers import Handler, running_handler, running_listener, running_relay

KEY = "k3y-" + "Zq8vR2xN5tLw9pBm7cYd4hJs"  # what an operator would export as HOOKTAP_RELAY_KEY


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    """A private CA and a certificate it signed for localhost, as PEM files."""
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    paths = Certs(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    issued.private_key_pem.write_to_path(str(paths.key))
    paths.cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    return paths


def tls_relay(procs: Procs, home: Path, certs: Certs, *extra: str) -> tuple[Proc, int]:
    proc, url = procs.relay(
        home, "--tls-cert", str(certs.cert), "--tls-key", str(certs.key), *extra
    )
    assert url.startswith("https://127.0.0.1:")
    return proc, int(url.rsplit(":", 1)[1])


def listen(procs: Procs, home: Path, relay: str, handler: Handler, *extra: str, env=None) -> Proc:
    args = ["listen", "--relay", relay, "--forward", handler.url, "--json", *extra]
    return procs.start(args, home, env)


async def ended(proc: Proc) -> tuple[int, str]:
    """Exit code and everything the process wrote to stderr."""
    code = await asyncio.to_thread(proc.wait, 20)
    _, err = await asyncio.to_thread(proc.rest)
    return code, "\n".join(err)


async def post(url: str, body: bytes, ctx: ssl.SSLContext | None = None, **kw) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, ssl=ctx or True, **kw) as r,
    ):
        return r.status, await r.read()


# --- TLS -------------------------------------------------------------------------------------


async def test_listener_with_ca_file_gets_deliveries_over_https_and_wss(
    procs: Procs, tmp_path: Path, certs: Certs
) -> None:
    _, port = tls_relay(procs, tmp_path / "relay", certs)
    async with running_handler() as handler:
        handler.reply = b"handled over tls"
        proc = listen(
            procs, tmp_path / "l", f"https://localhost:{port}", handler, "--ca-file", str(certs.ca)
        )
        ready = await asyncio.to_thread(proc.wait_json, "ready")
        assert str(ready["webhook_url"]).startswith(f"https://localhost:{port}/c/")

        status, body = await post(str(ready["webhook_url"]), b'{"tls": true}', certs.client())
        assert (status, body) == (200, b"handled over tls")
        assert [seen.body for seen in handler.seen] == [b'{"tls": true}']
        line = await asyncio.to_thread(proc.wait_json, "delivery")
        assert line["status"] == 200


async def test_listener_without_the_ca_is_refused_naming_ca_file(
    procs: Procs, tmp_path: Path, certs: Certs
) -> None:
    _, port = tls_relay(procs, tmp_path / "relay", certs)
    async with running_handler() as handler:
        proc = listen(procs, tmp_path / "l", f"https://localhost:{port}", handler)
        code, err = await ended(proc)
    assert code == 2, err
    assert "--ca-file" in err and "not signed by" in err
    assert "Traceback" not in err


async def test_a_stored_channel_without_the_ca_is_refused_at_the_websocket_too(
    procs: Procs, tmp_path: Path, certs: Certs
) -> None:
    """The second run skips POST /api/channels (the channel is kept): the websocket is its
    first contact, and it fails as plainly."""
    _, port = tls_relay(procs, tmp_path / "relay", certs)
    relay = f"https://localhost:{port}"
    async with running_handler() as handler:
        first = listen(procs, tmp_path / "l", relay, handler, "--ca-file", str(certs.ca))
        await asyncio.to_thread(first.wait_json, "ready")
        first.stop()
        again = listen(procs, tmp_path / "l", relay, handler)
        code, err = await ended(again)
    assert code == 2, err
    assert "--ca-file" in err and "Traceback" not in err


async def test_ssl_cert_file_alone_makes_the_relay_trusted(
    procs: Procs, tmp_path: Path, certs: Certs
) -> None:
    """A corporate CA given only through SSL_CERT_FILE (OpenSSL's default verify paths):
    no option at all, and the POST over https and the websocket over wss both verify."""
    _, port = tls_relay(procs, tmp_path / "relay", certs)
    async with running_handler() as handler:
        proc = listen(
            procs,
            tmp_path / "l",
            f"https://localhost:{port}",
            handler,
            env={"SSL_CERT_FILE": str(certs.ca)},
        )
        ready = await asyncio.to_thread(proc.wait_json, "ready")
        status, _ = await post(str(ready["webhook_url"]), b"{}", certs.client())
        assert status == 200
        assert len(handler.seen) == 1


async def test_https_to_a_plain_http_relay_says_so(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as relay:
        with pytest.raises(RelayRefused, match="is the relay serving plain http"):
            await channels.create(relay.replace("http://", "https://"))


def test_bad_tls_options_and_keys_are_refused_before_serving(tmp_path: Path, certs: Certs) -> None:
    other = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(other))
    cases = {
        ("--tls-cert", str(certs.cert)): "--tls-cert needs --tls-key",
        ("--tls-cert", str(certs.cert), "--tls-key", str(other)): "is not the key of",
        ("--tls-cert", str(certs.key), "--tls-key", str(certs.key)): "must be PEM files",
        ("--require-key", "short"): "at least 16",
        ("--require-key", "has spaces in it, see"): "without spaces",
    }
    for args, needle in cases.items():
        result = CliRunner().invoke(main, ["relay", "--port", "0", *args])
        assert result.exit_code == 2, result.output
        assert needle in result.output and result.exception is not None
        assert isinstance(result.exception, SystemExit)  # a message, not a traceback


# --- channel creation behind a key -----------------------------------------------------------


async def test_making_a_channel_takes_the_key_and_reclaiming_one_does_not(
    procs: Procs, tmp_path: Path
) -> None:
    proc = procs.start(["relay", "--port", "0"], tmp_path / "relay", {"HOOKTAP_RELAY_KEY": KEY})
    relay = proc.wait_stderr("listening on").split("listening on ", 1)[1].split()[0]
    api = f"{relay}/api/channels"

    status, body = await post(api, b"{}")
    assert status == 401
    reason = json.loads(body)["error"]
    assert "--relay-key" in reason and "HOOKTAP_RELAY_KEY" in reason
    status, body = await post(api, b"{}", headers={"Authorization": "Bearer " + "x" * 28})
    assert status == 403 and "--relay-key" in json.loads(body)["error"]

    status, body = await post(api, b"{}", headers={"Authorization": f"Bearer {KEY}"})
    assert status == 201
    made = json.loads(body)
    # The token proves the channel is its holder's: no key needed to get it back...
    status, body = await post(api, json.dumps({"token": made["token"]}).encode())
    assert status == 200 and json.loads(body)["channel"] == made["channel"]
    # ...but a token the relay never saw would make a new channel, and that takes the key.
    status, _ = await post(api, json.dumps({"token": "htk_" + "n" * 43}).encode())
    assert status == 401

    async with running_handler() as handler:
        keyless = listen(procs, tmp_path / "l", relay, handler)
        code, err = await ended(keyless)
        assert code == 2 and "--relay-key" in err and "Traceback" not in err, err

        keyed = listen(procs, tmp_path / "l", relay, handler, env={"HOOKTAP_RELAY_KEY": KEY})
        ready = await asyncio.to_thread(keyed.wait_json, "ready")
        keyed.stop()
        # Its channel exists now: the same listener comes back without the key.
        back = listen(procs, tmp_path / "l", relay, handler)
        again = await asyncio.to_thread(back.wait_json, "ready")
        assert again["webhook_url"] == ready["webhook_url"]
        assert (await post(str(again["webhook_url"]), b"{}"))[0] == 200
        assert len(handler.seen) == 1


def test_an_exposed_relay_without_a_key_says_anyone_can_make_channels(
    procs: Procs, tmp_path: Path
) -> None:
    exposed = ["relay", "--host", "0.0.0.0", "--port", "0"]
    open_relay = procs.start(exposed, tmp_path / "a")
    keyed = procs.start(exposed, tmp_path / "b", {"HOOKTAP_RELAY_KEY": KEY})
    local = procs.start(["relay", "--port", "0"], tmp_path / "c")
    assert "anyone who can reach it can create channels" in open_relay.wait_stderr("anyone")
    for proc in (keyed, local):
        proc.wait_stderr("listening on")
        proc.stop()
        assert not any("anyone" in line for line in proc.rest()[1])


# --- /readyz ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def relay_on(port: int, data_dir: Path) -> AsyncIterator[web.AppRunner]:
    """make_app() served on a given port, so a second one can follow the first there."""
    runner = web.AppRunner(make_app(RelayConfig(data_dir=data_dir)), shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield runner
    finally:
        if runner.sites:  # not stopped by the test itself
            await runner.cleanup()


async def test_readyz_is_503_while_the_db_is_locked(tmp_path: Path) -> None:
    port = free_port()
    async with relay_on(port, tmp_path / "relay"), aiohttp.ClientSession() as http:

        async def probe(path: str) -> tuple[int, dict[str, object]]:
            async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                return resp.status, await resp.json()

        status, body = await probe("/readyz")
        assert status == 200 and body["status"] == "ready"
        holder = sqlite3.connect(tmp_path / "relay" / "relay.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        status, body = await probe("/readyz")
        assert status == 503 and body["status"] == "db-error"
        assert "database" in str(body["error"])
        assert (await probe("/healthz"))[0] == 200  # alive, just not ready
        holder.execute("ROLLBACK")
        holder.close()
        assert (await probe("/readyz"))[0] == 200


async def test_draining_answers_the_waiting_sender_and_the_listener_comes_straight_back(
    tmp_path: Path,
) -> None:
    """drain.stop(): readyz says draining (to a load balancer's kept-alive probe), the sender
    waiting on a slow handler gets its answer, and the listener, sent away with 1001, is on
    the next relay at this address within its first retry."""
    port = free_port()
    relay = f"http://127.0.0.1:{port}"

    async with contextlib.AsyncExitStack() as stack:
        handler = await stack.enter_async_context(running_handler())
        handler.delay = 0.6
        probe = await stack.enter_async_context(aiohttp.ClientSession())
        first = await stack.enter_async_context(relay_on(port, tmp_path / "relay"))
        live = await stack.enter_async_context(
            running_listener(relay, handler.url, tmp_path / "l.db")
        )
        async with probe.get(f"{relay}/readyz") as resp:
            assert resp.status == 200  # and the connection stays open for the next probe
        sending = asyncio.ensure_future(post(live.webhook_url, b"slow"))
        await handler.wait_for(1)
        stopping = asyncio.ensure_future(drain.stop(first))
        while not first.app[RELAY].drain.draining:
            await asyncio.sleep(0.01)
        async with probe.get(f"{relay}/readyz") as resp:
            assert (resp.status, (await resp.json())["status"]) == (503, "draining")
        assert await sending == (200, b"ok")  # the drain waited for the handler
        await stopping

        def connections() -> int:
            return sum(
                isinstance(e, ConnectionChanged) and e.state == "connected" for e in live.events
            )

        before, gone = connections(), time.monotonic()
        async with relay_on(port, tmp_path / "relay"):
            while connections() == before:
                await asyncio.sleep(0.01)
            assert time.monotonic() - gone < 1.5  # its first retry, not a long backoff
            assert await post(live.webhook_url, b"again") == (200, b"ok")
        assert [seen.body for seen in handler.seen] == [b"slow", b"again"]


# --- --log-format json: one object per line, nothing secret ---------------------------------


async def test_json_log_lines_carry_requests_and_listeners_and_no_secret(
    procs: Procs, tmp_path: Path, secret: str
) -> None:
    relay_home = tmp_path / "relay"
    proc = procs.start(
        ["relay", "--port", "0", "--log-format", "json"], relay_home, {"HOOKTAP_RELAY_KEY": KEY}
    )
    relay = proc.wait_stderr("listening on").split("listening on ", 1)[1].split()[0]
    marker = b'{"note": "body-marker-5c1e"}'
    async with running_handler() as handler:
        listener = listen(procs, tmp_path / "l", relay, handler, env={"HOOKTAP_RELAY_KEY": KEY})
        ready = await asyncio.to_thread(listener.wait_json, "ready")
        headers = signed_headers(secret, marker)
        url = f"{ready['webhook_url']}/hooks?access_token=query-secret-77"
        assert (await post(url, marker, headers=dict(headers)))[0] == 200
        await post(f"{relay}/api/channels", b"{}", headers={"Authorization": "Bearer wrong-key"})
        listener.stop()
        await asyncio.to_thread(proc.wait_stderr, "listener-disconnected")
    proc.stop()
    assert proc.popen.returncode == 0
    out, err = proc.rest()
    lines = [json.loads(line) for line in out + err]  # every line is one JSON object
    events = [line["event"] for line in lines]
    assert {"start", "listener-connected", "listener-disconnected", "stopping"} <= set(events)
    requests = {
        (r["method"], r["path"].split("/c/")[0], r["status"])
        for r in lines
        if r["event"] == "request"
    }
    assert {
        ("POST", "/api/channels", 201),
        ("POST", "/api/channels", 403),
        ("GET", "", 101),
        ("POST", "", 200),
    } <= requests

    channel = json.loads((tmp_path / "l" / "channels.json").read_text())[relay]
    secrets = [
        KEY,
        channel["token"],
        "body-marker",
        "query-secret",
        "wrong-key",
        secret,
        dict(headers)["svix-signature"],
    ]
    text = "\n".join(out + err)
    assert [s for s in secrets if s in text] == []
    stored = b"".join(p.read_bytes() for p in (relay_home / "relay").iterdir())
    assert KEY.encode() not in stored and channel["token"].encode() not in stored
