"""`hooktap listen` and `hooktap relay` as a user runs them: real processes, real ports."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

from support.procs import free_port
from support.servers import running_handler


def _hooktap(*args: str, home: Path, env: dict[str, str] | None = None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "hooktap", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOOKTAP_HOME": str(home), **(env or {})},
    )


async def test_json_mode_ready_line_deliveries_and_clean_ctrl_c(procs, hooktap_home, secret):
    async with running_handler() as handler:
        proc = procs.start(
            [
                "listen",
                "--forward",
                handler.url + "/hooks",
                "--port",
                "0",
                "--json",
                "--secret",
                secret,
            ],
            hooktap_home,
        )
        ready = proc.json_line()
        assert ready["event"] == "ready"
        assert ready["forward_to"] == handler.url + "/hooks"
        assert ready["verifying_signatures"] is True and ready["secret_source"] == "--secret"
        url = str(ready["webhook_url"])
        assert url.startswith("http://127.0.0.1:") and "/c/" in url
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/tail?q=1", data=b'{"type":"task.completed"}') as resp:
                assert resp.status == 200
        delivery = proc.wait_json("delivery")
        for key in (
            "id",
            "received_at",
            "method",
            "path",
            "type",
            "svix_id",
            "signature",
            "status",
            "duration_ms",
            "error",
        ):
            assert key in delivery
        assert delivery["path"] == "/tail" and delivery["type"] == "task.completed"
        assert delivery["signature"] == "unsigned" and delivery["status"] == 200
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0
        out, err = proc.rest()
        for line in out:  # stdout is JSON lines and nothing else
            json.loads(line)
        assert not any("Traceback" in line for line in err)


async def test_webhook_url_is_stable_across_restarts_and_token_kept_private(procs, hooktap_home):
    port = free_port()
    urls, secrets = [], []
    for _ in range(2):
        proc = procs.start(
            ["listen", "--forward", "8000", "--port", str(port), "--json"], hooktap_home
        )
        ready = proc.json_line()
        # No secret given: the local test secret verifies, the same one on every start.
        assert ready["verifying_signatures"] is True and ready["secret_source"] == "local-test"
        urls.append(ready["webhook_url"])
        secrets.append((hooktap_home / "local-test-secret").read_text())
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0
    assert urls[0] == urls[1] == urls[0].split("/c/")[0] + "/c/" + urls[0].split("/c/")[1]
    assert urls[0].startswith(f"http://127.0.0.1:{port}/c/")
    assert secrets[0] == secrets[1] and secrets[0].startswith("whsec_")
    creds = json.loads((hooktap_home / "channels.json").read_text())
    token = next(iter(creds.values()))["token"]
    assert (hooktap_home / "channels.json").stat().st_mode & 0o077 == 0
    db = sqlite3.connect(hooktap_home / "relay" / "relay.db")
    stored = [row[0] for row in db.execute("SELECT token_sha256 FROM channels")]
    assert token not in stored and len(stored) == 1 and len(stored[0]) == 64


async def test_second_listener_joins_a_hooktap_relay_on_the_port(procs, tmp_path, hooktap_home):
    port = free_port()
    first = procs.start(
        ["listen", "--forward", "8000", "--port", str(port), "--json"], hooktap_home
    )
    first_url = first.json_line()["webhook_url"]
    second = procs.start(
        ["listen", "--forward", "8001", "--port", str(port), "--json"], tmp_path / "other-home"
    )
    second_url = second.json_line()["webhook_url"]
    assert second_url.startswith(f"http://127.0.0.1:{port}/c/") and second_url != first_url


def test_port_held_by_something_else_is_a_clear_error(tmp_path, hooktap_home):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _hooktap(
            "listen", "--forward", "8000", "--port", str(port), "--no-tui", home=hooktap_home
        )
    assert result.returncode == 2
    assert f"port {port} is in use" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_secret_and_bad_target_exit_2_with_a_reason(hooktap_home):
    for args, words in (
        (["--secret", "whsec_!!!not-base64"], "secret"),
        (["--secret", "hunter2"], "secret"),
    ):
        result = _hooktap("listen", "--forward", "8000", "--no-tui", *args, home=hooktap_home)
        assert result.returncode == 2, result.stderr
        assert words in result.stderr.lower() and "Traceback" not in result.stderr
    result = _hooktap("listen", "--forward", "ftp://x:1", home=hooktap_home)
    assert result.returncode == 2 and "must use http or https" in result.stderr
    result = _hooktap("listen", "--forward", "localhost:99999", home=hooktap_home)
    assert result.returncode == 2 and "99999" in result.stderr
    result = _hooktap(
        "listen",
        "--forward",
        "8000",
        home=hooktap_home,
        env={"PIVOTAL_WEBHOOK_SECRET": "whsec_short"},
    )
    assert result.returncode == 2 and "secret" in result.stderr.lower()


def test_numbers_that_are_not_finite_and_malformed_relay_urls_exit_2(hooktap_home):
    """nan passed click's own range check and then failed every delivery; a relay URL with a
    broken host gave a traceback-shaped message and exit 1."""
    cases = [
        (["--timeout", "nan"], "'nan' is not a finite number"),
        (["--timeout", "inf"], "'inf' is not a finite number"),
        (["--timeout", "-1"], "--timeout"),
        (["--retention-days", "nan"], "'nan' is not a finite number"),
        (["--relay", "http://[bad"], "--relay 'http://[bad' is not a valid URL"),
        (["--relay", "http://host:99999"], "not a valid URL"),
        (["--relay", "http://"], "has no host"),
        (["--relay", "ws://relay.example"], "must be an http(s) URL"),
    ]
    for args, words in cases:
        result = _hooktap("listen", "--forward", "8000", "--no-tui", *args, home=hooktap_home)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
    for command in (["replay", "d1", "--timeout", "nan"], ["relay", "--heartbeat", "inf"]):
        result = _hooktap(*command, home=hooktap_home)
        assert result.returncode == 2 and "not a finite number" in result.stderr


def test_every_option_with_a_variable_shows_it_in_help(hooktap_home):
    result = _hooktap("listen", "--help", home=hooktap_home)
    assert "PIVOTAL_WEBHOOK_SECRET" in result.stdout and "HOOKTAP_RELAY" in result.stdout
    assert "Example" in result.stdout


async def test_listen_through_a_standalone_relay(procs, tmp_path, hooktap_home):
    _, relay_url = procs.relay(tmp_path / "relay-home", "--public-url", "https://hooks.test")
    async with running_handler() as handler:
        proc = procs.start(
            ["listen", "--forward", handler.url, "--json"],
            hooktap_home,
            env={"HOOKTAP_RELAY": relay_url},
        )
        ready = proc.json_line()
        assert str(ready["webhook_url"]).startswith("https://hooks.test/c/")
        channel = str(ready["webhook_url"]).split("/c/")[1]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{relay_url}/c/{channel}", data=b"via relay") as resp:
                assert resp.status == 200
        assert (await handler.wait_for(1))[0].body == b"via relay"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{relay_url}/metrics") as resp:
                text = await resp.text()
        assert "hooktap_relay_deliveries_received_total 1.0" in text
        assert "hooktap_relay_listeners_connected 1.0" in text
