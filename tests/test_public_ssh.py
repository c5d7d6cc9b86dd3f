"""`--public ssh` (localhost.run over the system's `ssh -R`).

The tunnel is tested for real: the system's ssh client logs in to an OpenSSH server the test
starts (support/sshd.py) and its `-R` forward carries the probe and a webhook to the public
ingress. localhost.run's own part is a stand-in: the server's ForceCommand prints the JSON
lines localhost.run prints (support/fake_lhr.py), and a TLS "edge" in front of the forwarded
port plays its HTTPS front (support/tls.py); the public name reaches that edge through
`connect_to`, the certificate is trusted through SSL_CERT_FILE. The parsing is also checked
against recorded lines.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest

from hooktap.public import LocalhostRun, PublicIngress, PublicUnavailable, Tunnel, TunnelChange
from hooktap.public import probe as send_probe
from hooktap.public.localhost_run import ForwardEvent, parse_line
from support.procs import free_port
from support.public import client, staged
from support.sshd import running_sshd
from support.tls import make_certificate, tls_edge

RECORDED = [
    '{"connection_id":"5f0c","event":"authn","message":"authenticated as anonymous user"}',
    '{"connection_id":"5f0c","event":"tcpip-forward","message":"0b20df995bc7ac.lhr.life '
    'tunneled with tls termination, https://0b20df995bc7ac.lhr.life","address":'
    '"0b20df995bc7ac.lhr.life","listen_host":"0b20df995bc7ac.lhr.life","status":"success",'
    '"tls_termination":true}',
]


def test_recorded_json_lines_give_the_url() -> None:
    assert parse_line(RECORDED[0]) is None
    assert parse_line(RECORDED[1]) == ForwardEvent("https://0b20df995bc7ac.lhr.life", None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # No address field: the URL is in the message.
        (
            '{"event":"tcpip-forward","message":"x1.lhr.life tunneled with tls termination, '
            'https://x1.lhr.life"}',
            ForwardEvent("https://x1.lhr.life", None),
        ),
        # The service ignored --output json: its plain announcement.
        (
            "x2.lhr.life tunneled with tls termination, https://x2.lhr.life",
            ForwardEvent("https://x2.lhr.life", None),
        ),
        (
            '{"event":"tcpip-forward","status":"failure","message":"port 80 is in use"}',
            ForwardEvent(None, "port 80 is in use"),
        ),
        ('{"event":"tcpip-forward","address":"evil.example/path?x"}', None),
        ('{"event":"tcpip-forward","address":["not", "text"]}', None),
        ("Welcome to localhost.run!", None),
        ("{not json", None),
        ("[1, 2]", None),
        ("", None),
    ],
)
def test_other_lines(line: str, expected: ForwardEvent | None) -> None:
    assert parse_line(line) == expected


async def test_ssh_tunnel_carries_probe_and_webhook_and_reports_a_rotated_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    rotate = tmp_path / "rotate"
    first, second = "k3x9q2.lhr.life", "p7m4w1.lhr.life"
    changes: list[TunnelChange] = []
    rotated = asyncio.Event()

    def heard(change: TunnelChange) -> None:
        changes.append(change)
        rotated.set()

    force = ["--address", first, "--rotate-file", str(rotate), "--next", second]
    async with staged(tmp_path) as stage, PublicIngress(stage.relay_app, stage.channel) as door:
        with running_sshd(tmp_path / "sshd", force) as sshd:
            async with tls_edge(cert, key, sshd.forward_port) as edge:
                names = {first: ("127.0.0.1", edge), second: ("127.0.0.1", edge)}

                async def verify(base: str) -> None:
                    await send_probe(
                        f"{base}/c/{stage.channel}", door, timeout=10, connect_to=names
                    )

                provider = sshd.provider()
                async with Tunnel(provider, door.url, on_change=heard, verify=verify) as tunnel:
                    assert tunnel.url == f"https://{first}"
                    assert stage.handler.seen == [] and stage.history() == 0
                    webhook = f"{tunnel.url}/c/{stage.channel}/hooks"
                    async with client(names) as http, http.post(webhook, data=b"via ssh") as resp:
                        assert resp.status == 200 and await resp.read() == b"ok"
                    assert [(s.path_qs, s.body) for s in stage.handler.seen] == [
                        ("/hooks", b"via ssh")
                    ]
                    rotate.touch()
                    await asyncio.wait_for(rotated.wait(), 10)
                    assert changes == [TunnelChange(f"https://{second}", "ssh moved to a new URL")]
                    assert tunnel.url == f"https://{second}"
                # The forward went with ssh: the edge now has nothing behind it.
                with pytest.raises(aiohttp.ClientError):
                    async with client(names) as http, http.post(webhook, data=b"late"):
                        pass
    assert len(stage.handler.seen) == 1


async def test_ssh_refusals_are_clear(tmp_path: Path) -> None:
    async with staged(tmp_path) as stage, PublicIngress(stage.relay_app, stage.channel) as door:
        with running_sshd(tmp_path / "sshd", ["--address", "x.lhr.life"]) as sshd:
            stranger = sshd.provider("stranger_key")
            with pytest.raises(PublicUnavailable, match="refused the ssh login") as failed:
                await stranger.open(door.url)
            assert failed.value.kind == "refused"
            # A port the server does not allow: ssh gives up on the forward (ExitOnForwardFailure).
            greedy = sshd.provider(remote_port=free_port())
            with pytest.raises(PublicUnavailable, match="refused to forward a port"):
                await greedy.open(door.url)
        nobody = LocalhostRun(host="127.0.0.1", port=free_port(), ssh_options=("-F", "/dev/null"))
        with pytest.raises(PublicUnavailable, match=r"cannot reach 127\.0\.0\.1 over ssh"):
            await nobody.open(door.url)


async def test_the_services_own_refusal_is_shown(tmp_path: Path) -> None:
    async with staged(tmp_path) as stage, PublicIngress(stage.relay_app, stage.channel) as door:
        force = ["--address", "x.lhr.life", "--refuse", "no tunnels for you today"]
        with running_sshd(tmp_path / "sshd", force) as sshd:
            provider = sshd.provider()
            with pytest.raises(PublicUnavailable) as failed:
                await provider.open(door.url)
    assert str(failed.value) == "127.0.0.1 refused the tunnel: no tunnels for you today"
    assert failed.value.kind == "refused"


def test_missing_ssh_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("ssh") is None
    with pytest.raises(PublicUnavailable, match="openssh-client") as failed:
        LocalhostRun().check()
    assert failed.value.kind == "missing"
