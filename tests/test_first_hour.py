"""A newcomer's first hour: no Pivotal secret yet, the handler at /webhooks/pivotal, the
embedded relay that lives only while `hooktap listen` runs, and a standalone relay that does
not. Real `hooktap` processes where the whole command line matters, real handlers verifying
with svix, real relays."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.cli import main
from hooktap.listen.events import ListenerEvent, Ready
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.target import parse_target
from hooktap.pivotal.signing import parse_secret
from hooktap.store import Store
from support.procs import free_port
from support.servers import running_handler, serve

HANDLER_PATH = "/webhooks/pivotal"


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


async def hooktap(*args: str, home: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A `hooktap` process off the event loop: the handler it reaches runs on this loop."""
    full_env = {**os.environ, "HOOKTAP_HOME": str(home), **(env or {})}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hooktap", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
    )


@dataclass
class PivotalHandler:
    """Pivotal's FastAPI example in aiohttp: svix over the raw body, 401 on any failure, at
    /webhooks/pivotal only, so a delivery sent to any other path is a 404 as in the user's app.
    `secret` is set once the test knows it (from `hooktap listen --print-secret`)."""

    secret: str = ""
    url: str = ""
    statuses: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        names = ("svix-id", "svix-timestamp", "svix-signature")
        try:
            Webhook(self.secret).verify(body, {n: request.headers.get(n, "") for n in names})
            status = 200
        except (WebhookVerificationError, ValueError):
            status = 401
        self.statuses.append(status)
        return web.Response(status=status)

    async def wait_for(self, count: int) -> None:
        async def wait() -> None:
            while len(self.statuses) < count:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(wait(), 10)


@contextlib.asynccontextmanager
async def pivotal_handler(secret: str = "") -> AsyncIterator[PivotalHandler]:
    handler = PivotalHandler(secret)
    app = web.Application()
    app.router.add_post(HANDLER_PATH, handler.handle)
    async with serve(app) as url:
        handler.url = url
        yield handler


def local_file(home: Path) -> Path:
    return home / "local-test-secret"


# --- 3. a local test secret ------------------------------------------------------------------


async def test_listen_makes_a_local_secret_and_trigger_samples_read_valid(
    procs, hooktap_home: Path
) -> None:
    """The whole first hour with no secret at all: listen makes one and says so, the user's
    handler verifies with `--print-secret`'s value, trigger signs with it: sig=valid, 200."""
    async with pivotal_handler() as handler:
        proc = procs.start(
            ["listen", "--forward", handler.url + HANDLER_PATH, "--port", "0", "--json"],
            hooktap_home,
        )
        ready = proc.json_line()
        assert ready["event"] == "ready" and ready["verifying_signatures"] is True
        assert ready["secret_source"] == "local-test"
        assert ready["secret_file"] == str(local_file(hooktap_home))
        assert "made now" in proc.wait_stderr("local test secret")
        proc.wait_stderr("not Pivotal's")
        proc.wait_stderr("export PIVOTAL_WEBHOOK_SECRET=$(hooktap listen --print-secret)")
        proc.wait_stderr("--secret whsec_... or PIVOTAL_WEBHOOK_SECRET")

        printed = await hooktap("listen", "--print-secret", home=hooktap_home)
        assert printed.returncode == 0, printed.stderr
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]+\n", printed.stdout)
        handler.secret = printed.stdout.strip()
        assert local_file(hooktap_home).read_text().strip() == handler.secret
        assert stat.S_IMODE(local_file(hooktap_home).stat().st_mode) == 0o600

        sent = await hooktap("trigger", "customer.at_risk", "--json", home=hooktap_home)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["status"] == 200
        assert "local test secret" in sent.stderr
        delivery = proc.wait_json("delivery")
        assert delivery["signature"] == "valid", delivery
        assert delivery["status"] == 200 and delivery["target"].endswith(HANDLER_PATH)
        assert handler.statuses == [200]

        # The secret stays on this machine: the relay, the channel file, the listener's
        # state and the history hold signatures made with it, never the secret itself.
        key = handler.secret.removeprefix("whsec_").encode()
        for path in hooktap_home.rglob("*"):
            if path.is_file() and path != local_file(hooktap_home):
                assert key not in path.read_bytes(), path
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0


async def test_a_given_secret_wins_and_makes_no_local_one(
    procs, hooktap_home: Path, secret: str
) -> None:
    proc = procs.start(
        ["listen", "--forward", "localhost:8000" + HANDLER_PATH, "--port", "0", "--json"],
        hooktap_home,
        env={"PIVOTAL_WEBHOOK_SECRET": secret},
    )
    ready = proc.json_line()
    assert ready["secret_source"] == "PIVOTAL_WEBHOOK_SECRET" and "secret_file" not in ready
    assert not local_file(hooktap_home).exists()
    proc.signal(signal.SIGINT)
    assert proc.wait() == 0
    _, err = proc.rest()
    assert not any("local test secret" in line for line in err)
    assert cli("listen", "--print-secret", "--secret", secret).stdout == secret + "\n"
    assert not local_file(hooktap_home).exists()


async def test_the_secret_in_force_comes_back_when_the_home_is_deleted(
    procs, hooktap_home: Path
) -> None:
    """The listener recreates a deleted HOOKTAP_HOME; the secret it verifies with comes back
    too, or `hooktap trigger` would sign with none (or a new one) while it runs on."""
    proc = procs.start(["listen", "--forward", "9", "--port", "0", "--json"], hooktap_home)
    proc.json_line()
    before = local_file(hooktap_home).read_text()
    shutil.rmtree(hooktap_home)
    lost = proc.wait_json("home_lost")
    assert lost["recovered"] is True
    assert local_file(hooktap_home).read_text() == before
    assert stat.S_IMODE(local_file(hooktap_home).stat().st_mode) == 0o600


def test_print_secret_prints_only_the_secret_once_made_owner_only(hooktap_home: Path) -> None:
    first = cli("listen", "--print-secret")
    assert first.exit_code == 0 and first.stderr == ""
    value = first.stdout.strip()
    assert first.stdout == value + "\n" and parse_secret(value) == value
    assert stat.S_IMODE(local_file(hooktap_home).stat().st_mode) == 0o600
    assert stat.S_IMODE(hooktap_home.stat().st_mode) == 0o700
    assert cli("listen", "--print-secret").stdout == first.stdout  # kept, not made anew
    # Exported into the environment, it is still the local test secret, not Pivotal's.
    again = cli("listen", "--print-secret", env={"PIVOTAL_WEBHOOK_SECRET": value})
    assert again.stdout == first.stdout


def test_listen_still_needs_a_forward_target(hooktap_home: Path) -> None:
    result = cli("listen", "--no-tui")
    assert result.exit_code == 2
    assert "--forward" in result.stderr and HANDLER_PATH in result.stderr


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"hunter2\n", "is not a signing secret"),
        (b"whsec_\xff\xfe\n", "not ASCII text"),
        (b"", "is not a signing secret"),
        (None, "cannot be read"),  # a folder where the file should be
    ],
)
def test_a_broken_secret_file_is_exit_2_naming_it(
    hooktap_home: Path, content: bytes | None, why: str, secret: str
) -> None:
    hooktap_home.mkdir(parents=True)
    where = local_file(hooktap_home)
    if content is None:
        where.mkdir()
    else:
        where.write_bytes(content)
    for args in (
        ["listen", "--print-secret"],
        ["listen", "--forward", "8000", "--no-tui", "--port", "0"],
        ["trigger", "customer.at_risk", "--url", "http://127.0.0.1:9"],
        ["check", "--forward", "127.0.0.1:9"],
        ["replay", "--since", "1h"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert str(where) in result.stderr and why in result.stderr, result.stderr
        assert "delete it" in result.stderr
    # A secret given outright does not need the broken file.
    assert cli("listen", "--print-secret", "--secret", secret).stdout == secret + "\n"


async def test_trigger_and_check_sign_with_the_local_secret_until_one_is_given(
    hooktap_home: Path, secret: str
) -> None:
    made = cli("listen", "--print-secret").stdout.strip()
    async with pivotal_handler(made) as handler:
        target = handler.url + HANDLER_PATH
        checked = await asyncio.to_thread(cli, "check", "--forward", target)
        assert checked.exit_code == 0, checked.output
        # Signed with the local secret, the genuine delivery is taken and no check fails.
        assert "signed delivery: 200" in checked.stdout and "FAIL" not in checked.stdout
        assert "local test secret" in checked.stderr
        sent = await asyncio.to_thread(cli, "trigger", "task.completed", "--url", target)
        assert sent.exit_code == 0, sent.output
        # Pivotal's own secret (or anything given) wins: the handler then refuses it.
        for given in (["--secret", secret], []):
            env = {} if given else {"PIVOTAL_WEBHOOK_SECRET": secret}
            other = await asyncio.to_thread(
                cli, "trigger", "task.completed", "--url", target, *given, env=env
            )
            assert other.exit_code == 1 and "local test secret" not in other.stderr
    assert handler.statuses[-3:] == [200, 401, 401]


# --- 8. the embedded relay's lifetime; trigger and a standalone relay ------------------------


async def test_trigger_reaches_a_standalone_relay_channel_while_no_listener_runs(
    procs, tmp_path: Path, hooktap_home: Path
) -> None:
    _, relay_url = procs.relay(tmp_path / "relay-home")
    async with pivotal_handler() as handler:
        listen_args = ["listen", "--forward", handler.url + HANDLER_PATH, "--json"]
        first = procs.start(listen_args, hooktap_home, env={"HOOKTAP_RELAY": relay_url})
        webhook_url = first.json_line()["webhook_url"]
        first.signal(signal.SIGINT)
        assert first.wait() == 0
        handler.secret = cli("listen", "--print-secret").stdout.strip()

        by_flag = await hooktap(
            "trigger", "customer.created", "--relay", relay_url, "--json", home=hooktap_home
        )
        by_env = await hooktap(
            "trigger", "customer.updated", "--json", home=hooktap_home,
            env={"HOOKTAP_RELAY": relay_url},
        )  # fmt: skip
        for sent in (by_flag, by_env):
            assert sent.returncode == 0, sent.stderr
            record = json.loads(sent.stdout)
            assert record["url"] == webhook_url and record["status"] == 202  # held for us

        second = procs.start(listen_args, hooktap_home, env={"HOOKTAP_RELAY": relay_url})
        second.json_line()
        # Off the loop: the handler answers on it while the listener forwards.
        got = [await asyncio.to_thread(second.wait_json, "delivery") for _ in range(2)]
        assert {d["type"] for d in got} == {"customer.created", "customer.updated"}
        assert [(d["signature"], d["status"]) for d in got] == [("valid", 200)] * 2
        assert handler.statuses == [200, 200]  # signed with the local secret, verified with it


def test_trigger_with_nothing_to_send_to_names_what_it_looked_for(
    hooktap_home: Path, secret: str
) -> None:
    alone = cli("trigger", "customer.at_risk", "--secret", secret)
    assert alone.exit_code == 2
    assert "no running listener found" in alone.stderr
    assert str(hooktap_home / "listener.json") in alone.stderr
    assert "--relay" in alone.stderr and "--url" in alone.stderr
    relay = "https://hooks.example.com"
    unknown = cli("trigger", "customer.at_risk", "--secret", secret, "--relay", relay)
    assert unknown.exit_code == 2
    assert str(hooktap_home / "channels.json") in unknown.stderr and relay in unknown.stderr
    assert f"hooktap listen --relay {relay}" in unknown.stderr
    bad = cli("trigger", "customer.at_risk", "--secret", secret, "--relay", "ftp://x")
    assert bad.exit_code == 2 and "must be an http(s) URL" in bad.stderr


async def test_the_embedded_relay_keeps_its_queue_across_a_restart_not_while_down(
    hooktap_home: Path,
) -> None:
    """What the README and `listen --help` promise about the embedded relay."""
    port = free_port()
    async with running_handler() as handler:
        async with embedded_listener(handler.url, port, paused=True) as url:
            async with aiohttp.ClientSession() as http, http.post(url, data=b"queued") as resp:
                assert resp.status == 202
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as http, http.post(url, data=b"down"):
                pass
        async with embedded_listener(handler.url, port, paused=False) as again:
            assert again == url
            (seen,) = await handler.wait_for(1)
            assert seen.body == b"queued"


@contextlib.asynccontextmanager
async def embedded_listener(target: str, port: int, *, paused: bool) -> AsyncIterator[str]:
    with Store(Path(os.environ["HOOKTAP_HOME"]) / "history.db") as store:
        config = ListenerConfig(target=parse_target(target), port=port, paused=paused)
        listener = Listener(config, store)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_ready(event: ListenerEvent) -> None:
            if isinstance(event, Ready) and not ready.done():
                ready.set_result(event.webhook_url)

        listener.subscribe(on_ready)
        task = asyncio.create_task(listener.run())
        try:
            yield await asyncio.wait_for(ready, 10)
        finally:
            await listener.stop()
            await asyncio.wait_for(task, 10)


def test_listen_help_says_what_the_embedded_relay_keeps() -> None:
    text = " ".join(cli("listen", "--help").stdout.split())
    assert "only while it runs" in text and "connection refused" in text
    assert "handed over when `hooktap listen` starts again" in text
    assert "standalone `hooktap relay`" in text and "while no listener runs" in text


# --- 7 and 9. examples as a user would type them ---------------------------------------------


def _help_texts(group: click.Group = main, prefix: tuple[str, ...] = ()) -> dict[str, str]:
    texts = {" ".join(prefix) or "hooktap": cli(*prefix, "--help").stdout}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            texts.update(_help_texts(command, (*prefix, name)))
        else:
            texts[" ".join((*prefix, name))] = cli(*prefix, name, "--help").stdout
    return texts


def test_help_examples_use_ids_like_real_ones() -> None:
    for name, text in _help_texts().items():
        assert "dlv_" not in text, name
        for line in text.splitlines():
            if re.match(r"\s+hooktap (replay|deliveries show) (?!-)", line):
                assert re.search(r" d[0-9a-f]{20}\b", line), (name, line)


def test_examples_of_these_commands_name_the_handlers_path() -> None:
    texts = _help_texts()
    for name in ("hooktap", "listen", "replay", "inspect"):
        described = texts[name].split("Options:", 1)[0]
        examples = [
            line for line in described.splitlines() if "hooktap" in line and "--forward" in line
        ]
        assert examples, name
        for line in examples:
            assert re.search(r"--forward \S+" + re.escape(HANDLER_PATH), line), (name, line)


def test_readme_first_command_forwards_to_the_handlers_path() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    commands = re.findall(r"^    (python -m pip install .*)$", readme, re.M)
    assert commands[:2] == [
        "python -m pip install . && hooktap listen --forward localhost:8000/webhooks/pivotal",
        "python -m pip install -e '.[test]' && python -m pytest",
    ]
    assert "hooktap listen --print-secret" in readme
