"""Rate limits of a relay on the internet (issue 13, points 3 and 4): deliveries per channel
(--rate), channels made per source, failed listener logins per source; and an unknown channel
answered exactly as a wrong token is. The real relay, listener and handler on loopback."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

import aiohttp

from hooktap.public import PublicIngress
from hooktap.relay.app import RelayConfig, make_app
from hooktap.relay.db import channel_id, new_token
from hooktap.relay.rates import Rates, delivery_window, source_key
from support.servers import running_handler, running_listener, running_relay, serve

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
Answer = tuple[int, dict[str, str], bytes]


async def _post(http: aiohttp.ClientSession, url: str, body: bytes, **headers: str) -> Answer:
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def _make_channel(
    http: aiohttp.ClientSession, relay: str, body: dict[str, str] | None = None, **headers: str
) -> Answer:
    async with http.post(f"{relay}/api/channels", json=body or {}, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def _ws_attempt(
    http: aiohttp.ClientSession, relay: str, channel: str, token: str, **headers: str
) -> Answer:
    """A listener's websocket handshake as a plain GET: refusals come before any upgrade."""
    handshake = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Authorization": f"Bearer {token}",
        **headers,
    }
    async with http.get(f"{relay}/c/{channel}/ws", headers=handshake) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def _rejected(http: aiohttp.ClientSession, relay: str, reason: str) -> int:
    async with http.get(f"{relay}/metrics") as resp:
        text = await resp.text()
    found = re.search(rf'hooktap_relay_requests_rejected_total{{reason="{reason}"}} (\S+)', text)
    return int(float(found.group(1))) if found else 0


def _retry_after(answer: Answer, most: int) -> int:
    """A 429's Retry-After: whole seconds, at least 1, at most the window; the JSON says it too."""
    status, headers, body = answer
    assert status == 429, answer
    seconds = int(headers["Retry-After"])
    assert 1 <= seconds <= most, answer
    assert f"retry after {seconds} s" in body.decode()
    return seconds


async def test_a_channel_over_its_rate_gets_429_and_nothing_accepted_is_lost(
    tmp_path: Path,
) -> None:
    async with (
        running_relay(tmp_path / "relay", rate=5) as relay,
        running_handler() as handler,
        aiohttp.ClientSession() as http,
    ):
        async with running_listener(relay, handler.url, tmp_path / "history.db") as first:
            url = first.webhook_url
        channel = url.rsplit("/", 1)[1]
        # No listener now: what the relay accepts it keeps (202) until one connects.
        bodies = [os.urandom(40) + b"\xff\x00%d" % i for i in range(20)]
        started = time.monotonic()
        answers = await asyncio.gather(*(_post(http, url, body) for body in bodies))
        elapsed = time.monotonic() - started
        accepted = [b for b, (status, _, _) in zip(bodies, answers, strict=True) if status < 300]
        limited = [a for a in answers if a[0] == 429]
        assert {a[0] for a in answers} <= {202, 429}, answers
        # At most 5 in any second: a burst of one second's worth, then the rest refused.
        assert 5 <= len(accepted) <= 5 * (int(elapsed) + 1), (len(accepted), elapsed)
        assert len(accepted) + len(limited) == 20 and limited
        for answer in limited:
            _retry_after(answer, most=1)
            assert f"channel {channel!r} takes at most 5 deliveries a second" in answer[2].decode()
        assert await _rejected(http, relay, "rate-limited") == len(limited)
        # Honouring Retry-After is enough for the channel to take a delivery again.
        await asyncio.sleep(_retry_after(limited[-1], most=1))
        assert (await _post(http, url, b"after the wait \x00\xfe"))[0] == 202
        accepted.append(b"after the wait \x00\xfe")

        async with running_listener(relay, handler.url, tmp_path / "history.db") as second:
            assert second.webhook_url == url
            await handler.wait_for(len(accepted))
            assert (await _post(http, url, b"live"))[:3:2] == (200, b"ok")
            accepted.append(b"live")
        # Every accepted body reached the handler byte for byte, once; no refused one did.
        assert Counter(s.body for s in handler.seen) == Counter(accepted)


async def test_the_public_door_counts_against_the_same_channel_rate(tmp_path: Path) -> None:
    app = make_app(RelayConfig(data_dir=tmp_path / "relay", rate=2))
    async with serve(app) as relay, aiohttp.ClientSession() as http:
        status, _, made = await _make_channel(http, relay)
        assert status == 201
        channel = json.loads(made)["channel"]
        for _ in range(2):
            assert (await _post(http, f"{relay}/c/{channel}", b"x"))[0] == 202
        async with PublicIngress(app, channel) as door:
            answer = await _post(
                http, f"{door.url}/c/{channel}", b"y", **{"X-Forwarded-For": "203.0.113.9"}
            )
        _retry_after(answer, most=1)


async def test_channel_creation_is_limited_per_source_and_re_claims_are_not(
    tmp_path: Path,
) -> None:
    async with (
        running_relay(tmp_path / "relay", create_per_minute=3, trusted_proxies=LOOPBACK) as relay,
        aiohttp.ClientSession() as http,
    ):
        made = [await _make_channel(http, relay) for _ in range(3)]
        assert [m[0] for m in made] == [201, 201, 201]
        refused = await _make_channel(http, relay)
        _retry_after(refused, most=60)
        assert "made 3 channels in the last minute" in refused[2].decode()
        # A token the relay does not know makes a channel, so it counts too.
        _retry_after(await _make_channel(http, relay, {"token": new_token()}), most=60)
        # Re-claiming one's own channel makes nothing and is never limited.
        token = json.loads(made[0][2])["token"]
        for _ in range(5):
            status, _, body = await _make_channel(http, relay, {"token": token})
            assert status == 200 and json.loads(body)["token"] == token
        # Behind a trusted proxy the sender is the right-most address the proxy appended:
        # another sender has its own count; what a sender writes to the left is not believed.
        other = {"X-Forwarded-For": "203.0.113.7"}
        assert [(await _make_channel(http, relay, **other))[0] for _ in range(3)] == [201] * 3
        _retry_after(await _make_channel(http, relay, **other), most=60)
        spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        _retry_after(await _make_channel(http, relay, **spoofed), most=60)
        assert (await _make_channel(http, relay, **{"X-Forwarded-For": "2001:db8::1"}))[0] == 201
        assert await _rejected(http, relay, "create-rate-limited") == 4

    # A relay that trusts no proxy ignores X-Forwarded-For: it cannot buy a fresh count.
    async with (
        running_relay(tmp_path / "plain", create_per_minute=1) as relay,
        aiohttp.ClientSession() as http,
    ):
        assert (await _make_channel(http, relay))[0] == 201
        spoof = {"X-Forwarded-For": "203.0.113.8"}
        _retry_after(await _make_channel(http, relay, **spoof), most=60)


async def test_wrong_tokens_from_one_source_are_cut_off_whatever_they_carry(
    tmp_path: Path,
) -> None:
    async with (
        running_relay(tmp_path / "relay", trusted_proxies=LOOPBACK) as relay,
        aiohttp.ClientSession() as http,
    ):
        made = json.loads((await _make_channel(http, relay))[2])
        channel, token = made["channel"], made["token"]
        attempts = 200
        answers = []
        for i in range(attempts):
            # Wrong tokens on the real channel and guesses at channels that do not exist.
            target = channel if i % 2 else channel_id(new_token())
            answers.append(await _ws_attempt(http, relay, target, new_token()))
        statuses = [a[0] for a in answers]
        # The relay's default: 20 failures a minute from one source, then 429 for the minute.
        assert statuses == [403] * 20 + [429] * (attempts - 20), Counter(statuses)
        for answer in answers[20:]:
            _retry_after(answer, most=60)
        # Cut off means cut off: even the right token waits out the window from there.
        _retry_after(await _ws_attempt(http, relay, channel, token), most=60)
        assert await _rejected(http, relay, "wrong-token") == 20
        assert await _rejected(http, relay, "wrong-token-rate-limited") == attempts - 20 + 1
        # Another source (behind the trusted proxy) is not held to this one's count.
        ws_url = relay.replace("http", "ws", 1) + f"/c/{channel}/ws"
        async with http.ws_connect(
            ws_url,
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.5"},
        ) as ws:
            assert not ws.closed


async def test_an_unknown_channel_is_answered_exactly_as_a_wrong_token(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as relay, aiohttp.ClientSession() as http:
        channel = json.loads((await _make_channel(http, relay))[2])["channel"]
        guess = new_token()
        unknown = channel_id(guess)
        seen = []
        for target, token in [(channel, guess), (unknown, guess), (channel, "x"), (unknown, "x")]:
            status, headers, body = await _ws_attempt(http, relay, target, token)
            headers.pop("Date", None)
            seen.append((status, headers, body))
        assert seen[0][0] == 403
        assert json.loads(seen[0][2]) == {"error": "unknown channel or wrong token"}
        # Status, every header and every byte of the body: nothing tells the two apart.
        assert all(answer == seen[0] for answer in seen), seen


def test_a_rate_never_allows_more_than_asked() -> None:
    windows = {r: delivery_window(r) for r in (5, 0.5, 2.5, 0.3, 1000)}
    assert {r: (w.amount, w.get_expiry()) for r, w in windows.items() if w} == {
        5: (5, 1),
        0.5: (1, 2),
        2.5: (2, 1),
        0.3: (1, 4),
        1000: (1000, 1),
    }
    assert delivery_window(0) is None
    assert source_key("2001:db8:1:2:3:4:5:6") == source_key("2001:db8:1:2:ffff::1")
    assert source_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert source_key("garbage" * 20) == ("garbage" * 20)[:64]


async def test_per_source_state_is_swept_once_its_window_has_passed(tmp_path: Path) -> None:
    """A flood of fresh keys (sources, channels) leaves nothing behind once its window has
    passed and traffic goes on: the store does not grow with every address ever seen."""
    rates = Rates(RelayConfig(data_dir=tmp_path, rate=1))
    assert rates.delivery is not None
    for n in range(2000):
        assert await rates.limiter.hit(rates.delivery, "delivery", f"ch{n}")
    assert len(rates.storage.events) == 2000
    await asyncio.sleep(1.1)

    async def swept() -> None:
        # Each hit starts a sweep unless one is running; a sweep drops every key whose
        # entries have all expired, and the key's lock with it.
        while len(rates.storage.events) > 1 or len(rates.storage.locks) > 1:
            await rates.limiter.hit(rates.delivery, "delivery", "later traffic")
            await asyncio.sleep(0.05)

    await asyncio.wait_for(swept(), 30)
