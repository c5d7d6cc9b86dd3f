"""The relay under malformed frames: a clear error frame, a clean close, and it keeps serving."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hooktap.protocol import Error, Hello, Welcome, decode, encode
from support.servers import running_handler, running_listener, running_relay


async def _channel(relay: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay}/api/channels", json={}) as resp:
            return await resp.json()


@pytest.mark.parametrize(
    ("first", "code", "words"),
    [
        (b"\x09garbage", "protocol-error", "unknown frame kind"),
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
