"""Byte caps of a relay on the internet (issue 13, points 2 and 8): what one channel and the
whole relay keep for absent listeners is capped in bytes, refused 503 and 507 past the caps
with Retry-After, counted across a restart, and nothing accepted is lost; an absolute-form
request target reaches the handler as its path. A real `hooktap relay` process, the real
listener and a real handler on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from support.procs import Procs, free_port
from support.servers import running_handler, running_listener, running_relay

MiB = 1024 * 1024
Answer = tuple[int, dict[str, str], bytes]


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes | AsyncIterator[bytes]
) -> Answer:
    async with http.post(url, data=body) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    """The body with no Content-Length: the relay learns its size only by reading it."""
    for start in range(0, len(body), 256 * 1024):
        yield body[start : start + 256 * 1024]


async def _metric(http: aiohttp.ClientSession, relay: str, name: str) -> float:
    async with http.get(f"{relay}/metrics") as resp:
        text = await resp.text()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _refused(answer: Answer, status: int, option: str) -> str:
    """A cap's refusal: the status, Retry-After, and a JSON reason naming the option."""
    got, headers, body = answer
    assert got == status, answer[::2]
    assert int(headers["Retry-After"]) > 0
    reason = json.loads(body)["error"]
    assert option in reason, reason
    return reason


def _digests(bodies: list[bytes]) -> Counter[str]:
    return Counter(hashlib.sha256(body).hexdigest() for body in bodies)


async def test_byte_caps_refuse_503_and_507_survive_a_restart_and_lose_nothing(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    args = ("--port", str(port), "--data-dir", str(tmp_path / "data"))
    caps = ("--max-channel-mb", "3", "--max-store-mb", "5")
    relay_proc, relay = procs.relay(tmp_path / "relay-home", *args, *caps)
    async with running_handler() as handler, aiohttp.ClientSession() as http:
        async with running_listener(relay, handler.url, tmp_path / "history.db") as first:
            mine = first.webhook_url
        async with http.post(f"{relay}/api/channels", json={}) as resp:
            other = (await resp.json())["webhook_url"]

        # No listener: the channel keeps 3 MiB, then refuses 503, whether the size is told
        # up front (Content-Length) or only known once read (chunked).
        kept = [os.urandom(MiB) for _ in range(3)]
        assert [(await _post(http, mine, body))[0] for body in kept] == [202, 202, 202]
        reason = _refused(await _post(http, mine, b"x"), 503, "--max-channel-mb")
        assert "this channel already keeps 3.0 MiB" in reason and "cap of 3 MiB" in reason
        _refused(await _post(http, mine, _chunked(os.urandom(MiB))), 503, "--max-channel-mb")
        # Another channel has room of its own, until the relay's 5 MiB are kept: then 507.
        others = [os.urandom(MiB) for _ in range(2)]
        assert [(await _post(http, other, body))[0] for body in others] == [202, 202]
        reason = _refused(await _post(http, other, b"y"), 507, "--max-store-mb")
        assert "the relay already keeps 5.0 MiB" in reason and "cap of 5 MiB" in reason
        assert await _metric(http, relay, "hooktap_relay_queue_bytes") == 5 * MiB
        assert (
            await _metric(
                http, relay, 'hooktap_relay_requests_rejected_total{reason="channel-bytes"}'
            )
            == 2
        )
        assert (
            await _metric(
                http, relay, 'hooktap_relay_requests_rejected_total{reason="store-bytes"}'
            )
            == 1
        )

        # A restart counts the queue again from disk: the same caps hold where they were.
        relay_proc.stop()
        relay_proc, _ = procs.relay(tmp_path / "relay-home", *args, *caps)
        assert await _metric(http, relay, "hooktap_relay_queue_bytes") == 5 * MiB
        _refused(await _post(http, mine, b"x"), 503, "--max-channel-mb")
        _refused(await _post(http, other, b"y"), 507, "--max-store-mb")

        # The listener comes back: everything accepted reaches the handler byte for byte.
        async with running_listener(relay, handler.url, tmp_path / "history.db") as second:
            assert second.webhook_url == mine
            seen = await handler.wait_for(len(kept))
            assert _digests([s.body for s in seen]) == _digests(kept)
            # Confirmed deliveries give their bytes back: the channel takes 3 MiB again.
            async with asyncio.timeout(10):
                while await _metric(http, relay, "hooktap_relay_queue_bytes") != 2 * MiB:
                    await asyncio.sleep(0.05)
        again = [os.urandom(MiB) for _ in range(3)]
        assert [(await _post(http, mine, body))[0] for body in again] == [202, 202, 202]
        _refused(await _post(http, other, b"y"), 507, "--max-store-mb")
    assert len(handler.seen) == len(kept)  # no refused body ever reached it


async def test_an_absolute_form_target_reaches_the_handler_as_its_path(tmp_path: Path) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler.url + "/hooks", tmp_path / "history.db") as listener,
    ):
        channel = listener.webhook_url.rsplit("/c/", 1)[1]
        host, port = relay.split("://", 1)[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        target = f"http://evil:80/c/{channel}/x/a%2Fb?q=%41&r"
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: evil\r\nContent-Length: 4\r\n"
            "Connection: close\r\n\r\nbody".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 15)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        seen = (await handler.wait_for(1))[0]
    # Only the target's path and query, raw as sent: no scheme, host or doubled slash.
    assert seen.path_qs == "/hooks/x/a%2Fb?q=%41&r"
    assert seen.body == b"body"
