"""`--public` with Cloudflare's quick tunnels, end to end, without the internet.

cloudflared is replaced by tests/support/fake_cloudflared.py, a stand-in following
cloudflared's documented interface (`tunnel --url ... --no-autoupdate --metrics ...`,
`GET /quicktunnel`, `GET /ready`, the boxed log line, a 429 when rate-limited), run with
sys.executable and selected through HOOKTAP_CLOUDFLARED. Its "edge" is a local HTTPS port
standing for `https://<name>.trycloudflare.com`: the stand-in writes that port to a folder,
and the probe and the test's client connect there for that name (`connect_to`, like curl's
--connect-to), trusting the stand-in's certificate through SSL_CERT_FILE. Everything behind
the edge is real: hooktap's public ingress, relay, listener, SQLite history and a handler.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from hooktap.public import (
    Backoff,
    Cloudflared,
    PublicIngress,
    PublicUnavailable,
    Tunnel,
    TunnelChange,
    open_public,
    probe,
)
from support.public import Edges, client, staged
from support.tls import make_certificate

FAKE = Path(__file__).parent / "support" / "fake_cloudflared.py"


@pytest.fixture
def edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Edges:
    """HOOKTAP_CLOUDFLARED runs the stand-in; its certificate is trusted via SSL_CERT_FILE."""
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("HOOKTAP_CLOUDFLARED", shlex.join([sys.executable, str(FAKE)]))
    monkeypatch.setenv("FAKE_CLOUDFLARED_CERT", str(cert))
    monkeypatch.setenv("FAKE_CLOUDFLARED_KEY", str(key))
    monkeypatch.setenv("FAKE_CLOUDFLARED_EDGES", str(tmp_path / "edges"))
    monkeypatch.setenv("FAKE_CLOUDFLARED_SCRIPT", str(tmp_path / "script"))
    monkeypatch.setenv("FAKE_CLOUDFLARED_ARGV", str(tmp_path / "argv"))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return Edges(tmp_path / "edges")


def script(tmp_path: Path, *behaviours: str) -> None:
    (tmp_path / "script").write_text("".join(f"{b}\n" for b in behaviours))


def starts(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "argv").read_text().splitlines()]


async def test_url_from_quicktunnel_probe_unseen_and_webhook_reaches_ingress(
    tmp_path: Path, edges: Edges
) -> None:
    async with staged(tmp_path) as stage:
        channel = stage.channel
        async with open_public(stage.relay_app, channel, Cloudflared(), connect_to=edges) as pub:
            (name,) = list(edges)
            assert pub.webhook_url == f"https://{name}/c/{channel}"
            # cloudflared was called as documented, and pointed at the public socket only.
            ((*_, url_flag, origin, autoupdate, metrics_flag, metrics),) = starts(tmp_path)
            assert (url_flag, autoupdate, metrics_flag) == ("--url", "--no-autoupdate", "--metrics")
            assert origin.startswith("http://127.0.0.1:") and origin != stage.relay_url
            assert metrics.startswith("127.0.0.1:")
            # The probe went through and came back, and went no further.
            assert stage.handler.seen == []
            assert (stage.received(), stage.queued(), stage.history()) == (0, 0, 0)
            assert "changes every time" in (pub.stability_note or "")
            assert "--domain" in pub.stability_note and "hooktap relay" in pub.stability_note

            body = b'{"type": "customer.at_risk", "data": {"object": {"id": "c_1"}}}'
            async with (
                client(edges) as http,
                http.post(pub.webhook_url + "/pivotal?attempt=1", data=body) as resp,
            ):
                assert resp.status == 200 and await resp.read() == b"ok"
            (seen,) = stage.handler.seen
            assert seen.body == body and seen.path_qs == "/pivotal?attempt=1"
            headers = dict(seen.raw_headers)
            # The provider's loopback connection is believed about the real sender.
            assert headers["X-Forwarded-Proto"] == "https"
            assert headers["X-Forwarded-Host"] == name
            assert (stage.received(), stage.history()) == (1, 1)


async def test_public_url_serves_only_this_channels_ingress(tmp_path: Path, edges: Edges) -> None:
    async with staged(tmp_path) as stage:
        async with open_public(
            stage.relay_app, stage.channel, Cloudflared(), connect_to=edges
        ) as pub:
            base = pub.tunnel.url
            assert base is not None
            async with client(edges) as http:
                for method, path in [
                    ("POST", "/api/channels"),
                    ("GET", "/metrics"),
                    ("GET", "/healthz"),
                    ("GET", "/"),
                    ("POST", "/c/someoneelse"),
                    ("POST", f"/c/{stage.channel}x"),
                ]:
                    async with http.request(method, base + path, json={}) as resp:
                        assert resp.status == 404, (method, path)
                        assert "error" in await resp.json()
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{base}/c/{stage.channel}/ws")
                assert refused.value.status == 404
                # The same paths on the loopback side are served: the 404s come from the door.
                async with http.get(stage.relay_url + "/healthz") as resp:
                    assert resp.status == 200
                async with http.post(stage.relay_url + "/api/channels", json={}) as resp:
                    assert resp.status == 201
            assert stage.handler.seen == [] and stage.received() == 0


async def test_url_from_the_log_line_when_metrics_do_not_answer(
    tmp_path: Path, edges: Edges
) -> None:
    script(tmp_path, "no-metrics")
    async with staged(tmp_path) as stage:
        provider = Cloudflared(metrics_grace=0.3)
        async with open_public(stage.relay_app, stage.channel, provider, connect_to=edges) as pub:
            (name,) = list(edges)
            assert pub.tunnel.url == f"https://{name}"
            async with client(edges) as http, http.post(pub.webhook_url, data=b"x") as resp:
                assert resp.status == 200
            assert [s.body for s in stage.handler.seen] == [b"x"]


async def test_probe_trusts_only_the_system_store_and_ssl_cert_file(
    tmp_path: Path, edges: Edges, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with staged(tmp_path) as stage, PublicIngress(stage.relay_app, stage.channel) as door:
        async with Tunnel(Cloudflared(), door.url) as tunnel:
            url = f"{tunnel.url}/c/{stage.channel}"
            assert await probe(url, door, timeout=5, connect_to=edges) >= 0
            monkeypatch.delenv("SSL_CERT_FILE")
            with pytest.raises(PublicUnavailable, match=r"certificate not trusted.*SSL_CERT_FILE"):
                await probe(url, door, timeout=1, connect_to=edges)
        assert stage.handler.seen == [] and stage.received() == 0


async def test_killed_provider_is_reported_and_restarted_with_backoff(
    tmp_path: Path, edges: Edges
) -> None:
    """Killed: the user hears at once; two restarts hit the rate limit; the third is up."""
    script(tmp_path, "ok", "rate-limited", "rate-limited", "ok")
    changes: list[TunnelChange] = []
    up_again = asyncio.Event()

    def heard(change: TunnelChange) -> None:
        changes.append(change)
        if change.url is not None:
            up_again.set()

    async with staged(tmp_path) as stage, PublicIngress(stage.relay_app, stage.channel) as door:

        async def verify(base: str) -> None:
            await probe(f"{base}/c/{stage.channel}", door, timeout=10, connect_to=edges)

        tunnel = Tunnel(
            Cloudflared(),
            door.url,
            on_change=heard,
            verify=verify,
            backoff=Backoff(first=0.1, rate_limited=0.3),
        )
        async with tunnel:
            first = tunnel.url
            assert tunnel.session is not None and tunnel.session.pid is not None
            os.kill(tunnel.session.pid, signal.SIGKILL)
            await asyncio.wait_for(up_again.wait(), 20)
            down = changes[:-1]
            assert [c.url for c in down] == [None, None, None]
            assert "killed by SIGKILL" in down[0].reason
            assert all("rate-limiting" in c.reason for c in down[1:])
            # Doubling from 0.1 s; a rate limit waits at least rate_limit_wait.
            assert [c.retry_in for c in down] == [0.1, 0.3, 0.4]
            assert changes[-1].url == tunnel.url != first
            assert len(starts(tmp_path)) == 4
            async with (
                client(edges) as http,
                http.post(f"{tunnel.url}/c/{stage.channel}", data=b"after") as resp,
            ):
                assert resp.status == 200
        assert [s.body for s in stage.handler.seen] == [b"after"]


async def test_rate_limited_at_start_is_one_clear_error(tmp_path: Path, edges: Edges) -> None:
    script(tmp_path, "rate-limited")
    with pytest.raises(PublicUnavailable) as failed:
        await Tunnel(Cloudflared(), "http://127.0.0.1:9").start()
    assert failed.value.kind == "rate-limited"
    assert "429" in str(failed.value) and "wait a few minutes" in str(failed.value)
    assert "--public ssh" in str(failed.value)


def test_missing_binary_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOKTAP_CLOUDFLARED", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PublicUnavailable) as failed:
        Cloudflared().check()
    assert failed.value.kind == "missing"
    for advice in ("brew install cloudflared", "HOOKTAP_CLOUDFLARED", "--public ssh"):
        assert advice in str(failed.value)

    monkeypatch.setenv("HOOKTAP_CLOUDFLARED", str(tmp_path / "nowhere" / "cloudflared"))
    with pytest.raises(PublicUnavailable, match=r"nowhere/cloudflared.*neither an executable"):
        Cloudflared().check()
    (tmp_path / "cloudflared").write_text("#!/bin/sh\n")
    monkeypatch.setenv("HOOKTAP_CLOUDFLARED", str(tmp_path / "cloudflared"))
    with pytest.raises(PublicUnavailable, match="not executable"):
        Cloudflared().check()


async def test_cloudflared_that_exits_at_once_is_reported_with_its_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOOKTAP_CLOUDFLARED naming something that is not cloudflared: it ends before any
    URL, and the user is told how it ended and what it said."""
    monkeypatch.setenv(
        "HOOKTAP_CLOUDFLARED",
        shlex.join([sys.executable, "-c", "import sys; sys.exit('no such command: tunnel')"]),
    )
    with pytest.raises(
        PublicUnavailable, match=r"exited with code 1 before it gave a URL.*no such command"
    ):
        await Cloudflared().open("http://127.0.0.1:9")
