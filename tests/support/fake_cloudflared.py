"""A stand-in following cloudflared's documented quick-tunnel interface, for tests that
cannot reach the internet. Run it with sys.executable; select it with HOOKTAP_CLOUDFLARED.

    fake_cloudflared.py tunnel --url http://127.0.0.1:P --no-autoupdate --metrics 127.0.0.1:M

Like cloudflared it picks a random `<words>.trycloudflare.com` name, prints the boxed log
line with the URL on stderr, serves `GET /quicktunnel` -> {"hostname": ...} and `GET /ready`
on the metrics address, and forwards every request its "edge" receives to the origin given
by --url, adding the headers Cloudflare adds. Its edge is a local HTTPS port (the real one is
Cloudflare's network): it writes that port to FAKE_CLOUDFLARED_EDGES/<hostname>, so a test
can send the public URL's traffic there (probe's connect_to), with FAKE_CLOUDFLARED_CERT and
FAKE_CLOUDFLARED_KEY as the edge's certificate.

What each start does is the first line of FAKE_CLOUDFLARED_SCRIPT, which it removes:
  ok            as above (the default when there is no script or it is empty)
  no-metrics    as above, but nothing answers on the metrics address
  rate-limited  cloudflared's output when trycloudflare.com answers 429, then exit 1
Each start appends its argv as a JSON line to FAKE_CLOUDFLARED_ARGV, when set.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import ssl
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

_WORDS = ["amber", "basin", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris"]
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "proxy-connection"}


def log(level: str, message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} {level} {message}", file=sys.stderr, flush=True)


def parse(argv: list[str]) -> tuple[str, str]:
    """(origin, metrics) from cloudflared's own flags; anything else is refused as
    cloudflared would refuse it, so a test notices hooktap calling it wrongly."""
    if not argv or argv[0] != "tunnel":
        sys.exit(f"fake cloudflared: expected the `tunnel` command, got {argv}")
    flags: dict[str, str | None] = {}
    rest = argv[1:]
    while rest:
        flag = rest.pop(0)
        if flag == "--no-autoupdate":
            flags[flag] = None
        elif flag in ("--url", "--metrics") and rest:
            flags[flag] = rest.pop(0)
        else:
            sys.exit(f"fake cloudflared: Incorrect Usage: flag provided but not defined: {flag}")
    if set(flags) != {"--url", "--no-autoupdate", "--metrics"}:
        sys.exit(f"fake cloudflared: expected --url, --no-autoupdate and --metrics, got {flags}")
    return str(flags["--url"]), str(flags["--metrics"])


def next_behaviour() -> str:
    script = os.environ.get("FAKE_CLOUDFLARED_SCRIPT")
    if not script or not Path(script).exists():
        return "ok"
    lines = Path(script).read_text().splitlines()
    Path(script).write_text("".join(f"{line}\n" for line in lines[1:]))
    return lines[0].strip() if lines and lines[0].strip() else "ok"


def box(lines: list[str]) -> list[str]:
    width = max(len(line) for line in lines) + 4
    border = "+" + "-" * width + "+"
    return [border, *(f"|  {line.ljust(width - 4)}  |" for line in lines), border]


def edge_app(origin: str) -> web.Application:
    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        headers += [
            ("Cf-Connecting-Ip", request.remote or ""),
            ("X-Forwarded-For", request.remote or ""),
            ("X-Forwarded-Proto", "https"),
        ]
        if request.headers.get("Upgrade"):
            headers.append(("Connection", "Upgrade"))
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                origin.rstrip("/") + request.raw_path,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers={"User-Agent", "Content-Type"},
            ) as resp,
        ):
            answer = await resp.read()
            kept = [
                (k, v)
                for k, v in resp.headers.items()
                if k.lower() not in _HOP and k.lower() != "content-length"
            ]
            return web.Response(status=resp.status, body=answer, headers=kept)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def metrics_app(hostname: str) -> web.Application:
    async def quicktunnel(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"hostname": hostname}))

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": 200, "readyConnections": 1})

    app = web.Application()
    app.router.add_get("/quicktunnel", quicktunnel)
    app.router.add_get("/ready", ready)
    return app


async def serve(app: web.Application, host: str, port: int, tls: ssl.SSLContext | None) -> int:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    return int(runner.addresses[0][1])


async def main() -> None:
    origin, metrics = parse(sys.argv[1:])
    behaviour = next_behaviour()
    if os.environ.get("FAKE_CLOUDFLARED_ARGV"):
        with open(os.environ["FAKE_CLOUDFLARED_ARGV"], "a") as out:
            out.write(json.dumps(sys.argv[1:]) + "\n")
    log("INF", "Requesting new quick Tunnel on trycloudflare.com...")
    if behaviour == "rate-limited":
        log(
            "ERR",
            'Error unmarshaling QuickTunnel response: error code: 1015 error="invalid '
            'character \'e\' looking for beginning of value" status_code="429 Too Many Requests"',
        )
        print(
            "failed to unmarshal quick Tunnel: invalid character 'e' looking for beginning of "
            "value",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
    hostname = "-".join(secrets.choice(_WORDS) for _ in range(3))
    hostname += f"-{secrets.token_hex(3)}.trycloudflare.com"
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(os.environ["FAKE_CLOUDFLARED_CERT"], os.environ["FAKE_CLOUDFLARED_KEY"])
    edge_port = await serve(edge_app(origin), "127.0.0.1", 0, tls)
    edges = Path(os.environ["FAKE_CLOUDFLARED_EDGES"])
    edges.mkdir(parents=True, exist_ok=True)
    (edges / hostname).write_text(f"127.0.0.1:{edge_port}")
    message = "Your quick Tunnel has been created! Visit it at (it may take some time to be "
    for line in box([message + "reachable):", f"https://{hostname}"]):
        log("INF", line)
    if behaviour != "no-metrics":
        host, _, port = metrics.rpartition(":")
        await serve(metrics_app(hostname), host, int(port), None)
        log("INF", f"Starting metrics server on {metrics}/metrics")
    log("INF", "Registered tunnel connection connIndex=0 location=test protocol=quic")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log("INF", "Initiating graceful shutdown due to signal terminated ...")


if __name__ == "__main__":
    asyncio.run(main())
