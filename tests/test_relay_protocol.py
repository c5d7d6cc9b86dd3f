"""The relay under malformed frames: a clear error frame, a clean close, and it keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hooktap.protocol import (
    Batch,
    Delivery,
    Error,
    Hello,
    Ping,
    Pong,
    Result,
    Welcome,
    decode,
    encode,
)
from support.servers import running_handler, running_listener, running_relay


async def _channel(relay: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay}/api/channels", json={}) as resp:
            return await resp.json()


@pytest.mark.parametrize(
    ("first", "code", "words"),
    [
        (b"\x2agarbage", "protocol-error", "unknown frame kind"),
        ("a text message", "protocol-error", "text messages"),
        (encode(Hello(versions=[42])), "version-mismatch", "no common protocol version"),
    ],
)
async def test_malformed_first_frame_gets_an_error_and_a_clean_close(
    tmp_path: Path, first: bytes | str, code: str, words: str
) -> None:
    async with running_relay(tmp_path / "relay") as relay:
        ch = await _channel(relay)
        url = relay.replace("http", "ws") + f"/c/{ch['channel']}/ws"
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {ch['token']}"}
        ) as ws:
            await ws.send(first)
            frame = decode(await ws.recv())
            assert isinstance(frame, Error) and frame.code == code and words in frame.reason
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002


async def test_malformed_frame_mid_session_then_relay_still_serves(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as relay, running_handler() as handler:
        ch = await _channel(relay)
        url = relay.replace("http", "ws") + f"/c/{ch['channel']}/ws"
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {ch['token']}"}
        ) as ws:
            await ws.send(encode(Hello()))
            assert isinstance(decode(await ws.recv()), Welcome)
            await ws.send(b"\x04\x00\x00\x00\x02{}")  # a Result without id/status
            frame = decode(await ws.recv())
            while not isinstance(frame, Error):
                frame = decode(await ws.recv())
            assert "Result frame is missing" in frame.reason
        async with running_listener(relay, handler.url, tmp_path / "h.db") as listener:
            async with aiohttp.ClientSession() as http:
                async with http.post(listener.webhook_url, data=b"still alive") as resp:
                    assert resp.status == 200
            assert (await handler.wait_for(1))[0].body == b"still alive"


async def _speaking(relay: str, versions: list[int]):
    ch = await _channel(relay)
    url = relay.replace("http", "ws") + f"/c/{ch['channel']}/ws"
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {ch['token']}"})
    await ws.send(encode(Hello(versions=versions)))
    welcome = decode(await ws.recv())
    assert isinstance(welcome, Welcome)
    return ws, welcome


async def test_deliveries_of_one_tick_travel_as_one_batch_and_results_come_back_as_one(
    tmp_path: Path,
) -> None:
    """Protocol 2: senders the relay serves in the same loop tick share a message, and a
    Batch of Results answers each of them with its own status and body."""
    async with running_relay(tmp_path / "relay") as relay, aiohttp.ClientSession() as http:
        ws, welcome = await _speaking(relay, [1, 2])
        assert welcome.version == 2

        async def post(i: int) -> tuple[int, bytes]:
            async with http.post(welcome.webhook_url, data=f"n{i}".encode()) as resp:
                return resp.status, await resp.read()

        senders = asyncio.gather(*(post(i) for i in range(24)))
        messages: list[Delivery | Batch] = []
        arrived: list[Delivery] = []
        while len(arrived) < 24:
            frame = decode(await asyncio.wait_for(ws.recv(), 10))
            if isinstance(frame, (Delivery, Batch)):
                messages.append(frame)
                arrived += frame.frames if isinstance(frame, Batch) else [frame]
        assert sorted(d.body for d in arrived) == sorted(f"n{i}".encode() for i in range(24))
        assert any(isinstance(m, Batch) for m in messages) and len(messages) < 24
        results = [Result(d.id, 200 + int(d.body[1:]) % 3, body=b"re " + d.body) for d in arrived]
        await ws.send(encode(Batch(results)))
        answers = await asyncio.wait_for(senders, 10)
        assert answers == [(200 + i % 3, f"re n{i}".encode()) for i in range(24)]
        await ws.close()


async def test_a_version_1_listener_gets_single_frames_and_may_not_send_a_batch(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as relay, aiohttp.ClientSession() as http:
        ws, welcome = await _speaking(relay, [1])
        assert welcome.version == 1

        async def post(i: int) -> int:
            async with http.post(welcome.webhook_url, data=b"x") as resp:
                return resp.status

        senders = asyncio.gather(*(post(i) for i in range(8)))
        arrived = [decode(await asyncio.wait_for(ws.recv(), 10)) for _ in range(8)]
        assert all(isinstance(frame, Delivery) for frame in arrived)
        await ws.send(encode(Batch([Result(f.id, 200) for f in arrived])))  # type: ignore[union-attr]
        frame = decode(await ws.recv())
        while not isinstance(frame, Error):
            frame = decode(await ws.recv())
        assert "need protocol version 2" in frame.reason
        # The relay dropped the link without answers: the senders' deliveries are kept.
        assert await asyncio.wait_for(senders, 10) == [202] * 8


async def test_each_ping_gets_exactly_one_pong_carrying_the_queue_depth(tmp_path: Path) -> None:
    """The relay's session answers a listener's Ping (its queued Pong is what is sent, once),
    and the Pong says how many deliveries wait: what a paused listener shows."""
    async with running_relay(tmp_path / "relay") as relay:
        ch = await _channel(relay)
        async with aiohttp.ClientSession() as http:
            for body in (b"one", b"two"):
                async with http.post(f"{relay}/c/{ch['channel']}", data=body) as resp:
                    assert resp.status == 202
        url = relay.replace("http", "ws") + f"/c/{ch['channel']}/ws"
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {ch['token']}"}
        ) as ws:
            await ws.send(encode(Hello(paused=True)))
            assert isinstance(decode(await ws.recv()), Welcome)
            for sent_at in (1.0, 2.0, 3.0):
                await ws.send(encode(Ping(sent_at)))
            pongs = []
            while len(pongs) < 4:
                frame = decode(await asyncio.wait_for(ws.recv(), 5))
                if isinstance(frame, Pong):
                    pongs.append(frame)
                    if len(pongs) == 3:  # a fourth Ping: its Pong must be the next one
                        await ws.send(encode(Ping(4.0)))
            assert pongs == [Pong(t, queued=2) for t in (1.0, 2.0, 3.0, 4.0)]
