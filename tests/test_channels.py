"""Channels: ids derived from their tokens (nobody but the token's holder can claim one, even
from a relay that lost its data), listeners that re-claim theirs by token, channels.json that
is checked before use, and channels that go stale when no listener claims them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hooktap.cli import main
from hooktap.cli.relay_cmd import relay_cmd
from hooktap.listen.channel import RelayRefused
from hooktap.listen.events import ConnectionChanged
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.db import RelayDB, channel_id, hash_token, new_token
from hooktap.store import Store
from support.procs import Procs, free_port
from support.servers import RunningListener, running_handler, running_listener, serve

DAY = 86400.0
ROUTE_ID = re.compile(r"^[A-Za-z0-9_-]{4,64}$")  # what ingress and the websocket route accept


@contextlib.asynccontextmanager
async def relay_on(port: int, data_dir: Path) -> AsyncIterator[str]:
    """The real relay on a fixed port, so a test can restart it where listeners expect it."""
    runner = web.AppRunner(make_app(RelayConfig(data_dir=data_dir)), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_relay_and_session(
    tmp_path: Path, name: str = "relay"
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with (
        # These tests make dozens of channels from one address within a second.
        serve(make_app(RelayConfig(data_dir=tmp_path / name, create_per_minute=1000))) as relay,
        aiohttp.ClientSession() as http,
    ):
        yield relay, http


async def _claim(http: aiohttp.ClientSession, relay: str, **body: object) -> tuple[int, dict]:
    async with http.post(f"{relay}/api/channels", json=body) as resp:
        return resp.status, await resp.json()


async def _ws_status(relay: str, channel: str, token: str) -> int:
    """101 when the relay lets this token listen on this channel, else its refusal status."""
    url = relay.replace("http", "ws", 1) + f"/c/{channel}/ws"
    try:
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


def _remember(home: Path, relay: str, channel: str, token: str) -> None:
    """channels.json as any hooktap so far wrote it: relay -> {channel, token, url}."""
    entry = {"channel": channel, "token": token, "url": f"{relay}/c/{channel}"}
    home.mkdir(parents=True, exist_ok=True)
    (home / "channels.json").write_text(json.dumps({relay: entry}))


def _channel_on_disk(
    data_dir: Path, token: str, *, age_days: float = 0, legacy_name: str | None = None
) -> str:
    """A channel in a relay's file before the relay starts, last claimed `age_days` ago:
    derived from its token, or named freely as an older relay did."""
    db = RelayDB(data_dir / "relay.db")
    since = time.time() - age_days * DAY
    if legacy_name is not None:
        assert db.create_channel(legacy_name, token, now=since)
    claim = db.claim(token, now=since)
    db.close()
    assert claim is not None and claim.channel == (legacy_name or channel_id(token))
    return claim.channel


async def _wait_connected(listener: Listener, count: int, events: list) -> None:
    """Until the listener has connected `count` times in all."""

    async def done() -> None:
        while (
            sum(isinstance(e, ConnectionChanged) and e.state == "connected" for e in events) < count
        ):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(done(), 15)


async def _post(url: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body) as resp:
        await resp.read()
        return resp.status


# --- ids derived from tokens ------------------------------------------------------------------


async def test_a_new_channel_is_named_by_its_token(tmp_path: Path) -> None:
    async with running_relay_and_session(tmp_path) as (relay, http):
        status, made = await _claim(http, relay)
        async with http.post(f"{relay}/api/channels") as resp:  # no body at all
            assert resp.status == 201
            bare = await resp.json()
    assert status == 201 and made["channel"] != bare["channel"]
    for created in (made, bare):
        assert created["channel"] == channel_id(created["token"])
        assert ROUTE_ID.match(created["channel"]) and len(created["channel"]) == 32  # 160 bits
        assert created["webhook_url"] == f"{relay}/c/{created['channel']}"
    stored = sqlite3.connect(tmp_path / "relay" / "relay.db").execute(
        "SELECT channel, token_sha256 FROM channels ORDER BY channel"
    )
    assert sorted(stored) == sorted((c["channel"], hash_token(c["token"])) for c in (made, bare))


async def test_a_token_reclaims_its_channel_here_and_on_a_relay_that_lost_it(
    tmp_path: Path,
) -> None:
    async with running_relay_and_session(tmp_path, "first") as (relay, http):
        _, made = await _claim(http, relay)
        status, again = await _claim(http, relay, token=made["token"])
        assert status == 200 and again == made
    async with running_relay_and_session(tmp_path, "lost-everything") as (relay, http):
        assert await _ws_status(relay, made["channel"], made["token"]) in (403, 404)
        status, back = await _claim(http, relay, token=made["token"])
        assert status == 201
        assert back == {**made, "webhook_url": f"{relay}/c/{made['channel']}"}
        assert await _ws_status(relay, made["channel"], made["token"]) == 101


@pytest.mark.parametrize("relay_lost_its_data", [False, True])
async def test_nobody_without_the_token_can_claim_an_existing_channel(
    tmp_path: Path, relay_lost_its_data: bool
) -> None:
    async with running_relay_and_session(tmp_path, "first") as (relay, http):
        _, victim = await _claim(http, relay)
    channel, token = victim["channel"], victim["token"]
    thief = new_token()
    attacks: list[dict[str, object]] = [
        {"channel": channel},
        {"channel": channel, "token": thief},
        {"channel": channel, "token": token},  # not even the holder may name an id
        {},
        {"token": thief},
        {"token": channel},
        {"token": token + "x"},
        {"token": token[:-1]},
        {"token": token.swapcase()},
        {"token": hash_token(token)},  # what a leaked relay.db holds
        *({"token": new_token()} for _ in range(50)),
    ]
    data_dir = "lost-everything" if relay_lost_its_data else "first"
    async with running_relay_and_session(tmp_path, data_dir) as (relay, http):
        for body in attacks:
            status, answer = await _claim(http, relay, **body)
            if status < 300:
                assert answer["channel"] != channel and answer["token"] != token, body
            else:
                assert status == 400 and answer["error"], body
            if "channel" in body:
                assert "derived" in answer["error"] and '{"token"' in answer["error"]
        for guess in (thief, hash_token(token), channel):
            assert await _ws_status(relay, channel, guess) == 403
        status, back = await _claim(http, relay, token=token)
        assert (status, back["channel"]) == (201 if relay_lost_its_data else 200, channel)


@pytest.mark.parametrize(
    "token",
    [None, 12345, ["htk_x"], "short", "x" * 129, "htk_" + "a" * 40 + "!", "htk_ " + "a" * 40],
)
async def test_an_implausible_token_is_refused_with_a_reason(tmp_path: Path, token) -> None:
    async with running_relay_and_session(tmp_path) as (relay, http):
        status, answer = await _claim(http, relay, token=token)
        assert status == 400 and "token must be" in answer["error"], answer
        for body in (b"[1]", b"{not json", b'"htk"'):
            async with http.post(f"{relay}/api/channels", data=body) as resp:
                assert resp.status == 400 and "JSON" in (await resp.json())["error"]


# --- listeners re-claim by token --------------------------------------------------------------


async def _lose_data_and_check_flow(
    port: int, data_dir: Path, running: RunningListener, handler, connects: int
) -> None:
    """The relay stops, comes back with nothing on disk; the listener must get its channel
    back and deliveries must flow again through the URL it has."""
    shutil.rmtree(data_dir)
    async with relay_on(port, data_dir):
        await _wait_connected(running.listener, connects, running.events)
        before = len(handler.seen)
        assert await _post(running.webhook_url, b"after loss %d" % connects) == 200
        assert (await handler.wait_for(before + 1))[-1].body == b"after loss %d" % connects


async def test_listener_gets_its_channel_back_after_the_relay_lost_its_data_twice(
    tmp_path: Path,
) -> None:
    port, data_dir = free_port(), tmp_path / "relay"
    async with contextlib.AsyncExitStack() as stack:
        handler = await stack.enter_async_context(running_handler())
        async with relay_on(port, data_dir) as relay:
            running = await stack.enter_async_context(
                running_listener(relay, handler.url, tmp_path / "h.db", backoff_max=0.2)
            )
        assert running.listener.creds is not None
        assert running.webhook_url.rsplit("/c/", 1)[1] == running.listener.creds.channel
        # Twice: the second loss comes after a connection, so it may re-claim again.
        await _lose_data_and_check_flow(port, data_dir, running, handler, connects=2)
        await _lose_data_and_check_flow(port, data_dir, running, handler, connects=3)
        assert running.listener.creds.webhook_url == running.webhook_url  # the same URL


async def test_a_legacy_channel_keeps_its_url_until_the_relay_forgets_it(
    tmp_path: Path, hooktap_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, data_dir, token = free_port(), tmp_path / "relay", new_token()
    relay = f"http://127.0.0.1:{port}"
    _channel_on_disk(data_dir, token, legacy_name="legacy-chan-1")
    _remember(hooktap_home, relay, "legacy-chan-1", token)
    async with contextlib.AsyncExitStack() as stack:
        handler = await stack.enter_async_context(running_handler())
        async with relay_on(port, data_dir):
            running = await stack.enter_async_context(
                running_listener(relay, handler.url, tmp_path / "h.db", backoff_max=0.2)
            )
            assert running.webhook_url == f"{relay}/c/legacy-chan-1"
            assert await _post(running.webhook_url, b"legacy") == 200
            async with aiohttp.ClientSession() as http:  # its token finds it by hash
                assert (await _claim(http, relay, token=token))[1]["channel"] == "legacy-chan-1"
        shutil.rmtree(data_dir)
        async with relay_on(port, data_dir):
            await _wait_connected(running.listener, 2, running.events)
            new_url = f"{relay}/c/{channel_id(token)}"
            said = (
                "the relay no longer knew channel legacy-chan-1; your webhook URL is now "
                f"{new_url} — update it in Pivotal"
            )
            assert said in caplog.text
            assert ConnectionChanged("reconnecting", said) in running.events
            saved = json.loads((hooktap_home / "channels.json").read_text())[relay]
            assert saved == {"channel": channel_id(token), "token": token, "url": new_url}
            assert await _post(new_url, b"moved") == 200
            assert await _post(running.webhook_url, b"old url") == 404
            assert [s.body for s in await handler.wait_for(2)] == [b"legacy", b"moved"]


async def test_the_embedded_relay_gives_a_forgotten_channel_back_before_the_url_is_shown(
    tmp_path: Path, hooktap_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """HOOKTAP_HOME/relay was lost (or never had the channel): the URL printed must work."""
    port, token = free_port(), new_token()
    relay = f"http://127.0.0.1:{port}"
    _remember(hooktap_home, relay, "legacy-chan-2", token)
    async with (
        running_handler() as handler,
        running_listener(None, handler.url, tmp_path / "h.db", port=port) as running,  # type: ignore[arg-type]
    ):
        assert running.webhook_url == f"{relay}/c/{channel_id(token)}"
        assert (
            f"no longer knew channel legacy-chan-2; your webhook URL is now {running.webhook_url}"
            in caplog.text
        )
        assert await _post(running.webhook_url, b"embedded") == 200
        assert (await handler.wait_for(1))[0].body == b"embedded"


async def test_a_relay_that_keeps_refusing_gets_one_reclaim_then_a_clear_refusal(
    tmp_path: Path,
) -> None:
    """A relay (here one that misbehaves on purpose) refuses the websocket whatever we do."""
    asked: list[object] = []

    async def channels_api(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(body)
        token = body.get("token") or new_token()
        url = f"http://{request.host}/c/{channel_id(token)}"
        answer = {"channel": channel_id(token), "token": token, "webhook_url": url}
        return web.json_response(answer, status=201)

    async def socket(request: web.Request) -> web.Response:
        return web.json_response({"error": "unknown channel or wrong token"}, status=403)

    app = web.Application()
    app.router.add_post("/api/channels", channels_api)
    app.router.add_get("/c/{channel}/ws", socket)
    async with serve(app) as relay:
        config = ListenerConfig(target=parse_target("8000"), relay_url=relay, backoff_max=0.05)
        with Store(tmp_path / "h.db") as store:
            listener = Listener(config, store)
            with pytest.raises(RelayRefused) as refused:
                await asyncio.wait_for(listener.run(), 15)
    assert "even after re-claiming the channel by its token (403)" in str(refused.value)
    assert "unknown channel or wrong token" in str(refused.value)
    assert listener.creds is not None
    assert asked == [{}, {"token": listener.creds.token}]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"RELAY": "htk_x"}', "entry for RELAY that is not an object"),
        ('{"RELAY": {"channel": "abcd", "url": "RELAY/c/abcd"}}', "without a string token"),
        ('{"RELAY": {"channel": 7, "token": "t", "url": "u"}}', "without a string channel"),
        ('{"http://other": {"token": "t"}}', "entry for http://other without a string channel"),
    ],
)
def test_a_corrupt_channels_file_is_a_clear_error(hooktap_home: Path, content, words) -> None:
    relay = f"http://127.0.0.1:{free_port()}"  # never reached: the file is read first
    content, words = content.replace("RELAY", relay), words.replace("RELAY", relay)
    hooktap_home.mkdir(parents=True)
    (hooktap_home / "channels.json").write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "hooktap", "listen", "-f", "8000", "--no-tui", "--relay", relay],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "channels.json" in result.stderr and words in result.stderr, result.stderr
    assert "delete it to start afresh" in result.stderr and "Traceback" not in result.stderr
    assert (hooktap_home / "channels.json").read_text() == content  # never overwritten


# --- channel TTL ------------------------------------------------------------------------------


def _old_relay_db(path: Path, created_at: float) -> None:
    """relay.db as relays before channel TTLs made it."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE channels (channel TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, "
        "created_at REAL NOT NULL);"
        "CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, "
        "id TEXT NOT NULL UNIQUE, received_at REAL NOT NULL, meta TEXT NOT NULL, "
        "body BLOB NOT NULL);"
    )
    db.execute("INSERT INTO channels VALUES ('oldchan1', ?, ?)", (hash_token("t" * 40), created_at))
    db.commit()
    db.close()


def test_an_old_relay_db_is_migrated_and_its_channels_age_from_creation(tmp_path: Path) -> None:
    path, now = tmp_path / "relay" / "relay.db", time.time()
    _old_relay_db(path, created_at=now - 40 * DAY)
    for _ in range(2):  # opening it again finds it migrated
        db = RelayDB(path)
        assert db.channel_state("oldchan1", 30 * DAY, now) == "stale"
        assert db.channel_state("oldchan1", 50 * DAY, now) == "live"
        assert db.channel_exists("oldchan1") and db.check_token("oldchan1", "t" * 40)
        db.close()
    row = sqlite3.connect(path).execute("SELECT created_at, last_seen FROM channels").fetchone()
    assert row == (now - 40 * DAY, now - 40 * DAY)
    db = RelayDB(path)
    db.touch("oldchan1", now - DAY)
    assert db.channel_state("oldchan1", 30 * DAY, now) == "live"
    assert db.channel_state("nochan12", 30 * DAY, now) == "unknown"
    assert not db.channel_exists("nochan12")
    db.close()
    assert RelayDB(path).channel_state("oldchan1", 30 * DAY, now) == "live"  # touch was stored


def test_a_live_channel_is_judged_without_asking_sqlite(tmp_path: Path) -> None:
    db = RelayDB(tmp_path / "relay.db")
    claim = db.claim(new_token())
    assert claim is not None and claim.created
    statements: list[str] = []
    db.db.set_trace_callback(statements.append)
    for _ in range(1000):
        assert db.channel_state(claim.channel, 30 * DAY) == "live"
        assert db.channel_exists(claim.channel)
    assert statements == []
    db.close()


async def test_a_stale_channel_answers_410_until_a_listener_claims_it(
    tmp_path: Path, hooktap_home: Path
) -> None:
    token, data_dir = new_token(), tmp_path / "relay"
    channel = _channel_on_disk(data_dir, token, age_days=31)
    async with running_handler() as handler, serve(make_app(RelayConfig(data_dir))) as relay:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{relay}/c/{channel}", data=b"too late") as resp:
                assert resp.status == 410 and (await resp.json())["error"]
        _remember(hooktap_home, relay, channel, token)
        async with running_listener(relay, handler.url, tmp_path / "h.db") as running:
            assert running.webhook_url == f"{relay}/c/{channel}"
            assert await _post(running.webhook_url, b"claimed") == 200
        assert await _post(f"{relay}/c/{channel}", b"kept") == 202  # gone, but seen just now
        assert [s.body for s in handler.seen] == [b"claimed"]


# --- hooktap relay's options ------------------------------------------------------------------


def test_relay_options_are_parsed_into_the_config() -> None:
    args = ["--channel-ttl", "0.5", "--trusted-proxy", "10.1.2.3/8", "--trusted-proxy", "::1"]
    params = relay_cmd.make_context("relay", args).params
    assert params["channel_ttl"] == 0.5 * DAY
    assert [str(n) for n in params["trusted_proxies"]] == ["10.0.0.0/8", "::1/128"]
    defaults = relay_cmd.make_context("relay", []).params
    assert defaults["channel_ttl"] == 30 * DAY and defaults["trusted_proxies"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--channel-ttl", "0"],
        ["--channel-ttl", "-2"],
        ["--channel-ttl", "nan"],
        ["--channel-ttl", "soon"],
        ["--trusted-proxy", "10.0.0.0/33"],
        ["--trusted-proxy", "proxy.internal"],
    ],
)
def test_bad_relay_options_exit_2_naming_option_and_value(args: list[str]) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["relay", *args])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[0]}'" in result.output and repr(args[1]) in result.output
    assert "e.g." in result.output and not isinstance(result.exception, ValueError)


async def test_channel_ttl_option_decides_when_a_channel_is_stale(
    procs: Procs, tmp_path: Path
) -> None:
    token, data_dir = new_token(), tmp_path / "relay-data"
    channel = _channel_on_disk(data_dir, token, age_days=31)
    for days, status in (("40", 202), ("30", 410)):
        proc, relay = procs.relay(
            tmp_path / "home", "--data-dir", str(data_dir), "--channel-ttl", days
        )
        assert await _post(f"{relay}/c/{channel}", b"x") == status
        proc.stop()
    help_text = " ".join(
        subprocess.run(
            [sys.executable, "-m", "hooktap", "relay", "--help"], capture_output=True, text=True
        ).stdout.split()
    )
    assert "--channel-ttl 7" in help_text and "--trusted-proxy 10.0.0.0/8" in help_text
