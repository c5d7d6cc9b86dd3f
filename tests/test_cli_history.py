"""`hooktap deliveries` and `hooktap replay` through click, against a real store and handler."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from hooktap.cli.history_cmd import deliveries_cmd
from hooktap.cli.replay_cmd import replay_cmd
from hooktap.home import history_db
from hooktap.records import Attempt, Delivery
from hooktap.store import Store
from support.history import finish, record
from support.verifying import BODY, VerifyingHandler, stored_delivery


def run(cmd, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cmd, list(args), env=env, input=stdin, catch_exceptions=False)


@pytest.fixture
def handler(secret: str) -> Iterator[VerifyingHandler]:
    """The verifying handler on its own loop in a thread: the CLI runs asyncio.run itself."""
    h = VerifyingHandler(secret)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", h.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        h.url = f"http://{host}:{port}"
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield h
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def forward(d: Delivery, status: int | None, error: str | None = None) -> Attempt:
    return Attempt(
        delivery_id=d.id,
        kind="forward",
        started_at=d.received_at + 0.01,
        target_url=d.target + d.path,
        status=status,
        response_headers=[("Content-Type", "text/plain")],
        response_body=b"handler says no" if status and status >= 400 else b"ok",
        duration_ms=7.0,
        error=error,
    )


def seed(secret: str, target: str) -> list[Delivery]:
    """Three signed deliveries from the last hour and one binary one, forwarded with outcomes."""
    made = []
    with Store(history_db()) as store:
        for id, age, status, event_type in [
            ("dlv_a", 3000, 503, "customer.at_risk"),
            ("dlv_b", 2000, 200, "task.completed"),
            ("dlv_c", 1000, 500, "customer.updated"),
        ]:
            d = stored_delivery(secret, target, id=id, age=age)
            d.event_type = event_type
            record(store, d)
            finish(store, d.id, forward(d, status))
            made.append(d)
        binary = stored_delivery(secret, target, id="bin_1", age=10, signed=False)
        binary.body, binary.event_type, binary.event_id = b"\x89PNG\x00\xff", None, None
        record(store, binary)
        finish(store, binary.id, forward(binary, None, "connection refused by http://x"))
        made.append(binary)
    return made


def test_empty_history() -> None:
    result = run(deliveries_cmd)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No deliveries are stored yet" in result.stderr
    assert stat.S_IMODE(history_db().stat().st_mode) == 0o600


def test_list_newest_first_as_table(secret: str) -> None:
    seed(secret, "http://localhost:8000")
    result = run(deliveries_cmd)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "EVENT", "SIGNATURE", "STATUS", "TIME", "TRIES"]
    assert [line.split()[0] for line in lines[1:]] == ["bin_1", "dlv_c", "dlv_b", "dlv_a"]
    assert "POST /tail" in lines[1] and "err" in lines[1] and "unsigned" in lines[1]
    assert "customer.updated" in lines[2] and " 500 " in lines[2]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--type", "customer.*"], ["dlv_c", "dlv_a"]),
        (["--status", "5xx"], ["dlv_c", "dlv_a"]),
        (["--status", "err"], ["bin_1"]),
        (["--signature", "unsigned"], ["bin_1"]),
        (["--since", "40m"], ["bin_1", "dlv_c", "dlv_b"]),
        (["--limit", "2"], ["bin_1", "dlv_c"]),
        (["--filter", "type:task.* acme"], ["dlv_b"]),
        (["--type", "customer.*", "--status", "503"], ["dlv_a"]),
    ],
)
def test_list_filters_json(secret: str, args: list[str], expected: list[str]) -> None:
    seed(secret, "http://localhost:8000")
    result = run(deliveries_cmd, *args, "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == expected


def test_list_json_fields(secret: str) -> None:
    seed(secret, "http://localhost:8000")
    rows = [json.loads(line) for line in run(deliveries_cmd, "--json").stdout.splitlines()]
    c = rows[1]
    assert c["type"] == "customer.updated"
    assert c["status"] == 500 and c["duration_ms"] == 7.0 and c["attempts"] == 1
    assert c["signature"] == "valid" and c["svix_id"] == "msg_original"
    assert c["duplicate"] is True  # the seeded deliveries share one svix-id
    assert rows[0]["error"] == "connection refused by http://x"
    assert rows[0]["received"].endswith("Z")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "6xx"], "bad status '6xx'"),
        (["--since", "later"], "bad time 'later'"),
        (["--filter", "colour:red"], "unknown filter 'colour:'"),
        (["--signature", "good"], "bad signature verdict 'good'"),
    ],
)
def test_bad_filters_are_user_errors(args: list[str], message: str) -> None:
    result = run(deliveries_cmd, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_show_human(secret: str) -> None:
    seed(secret, "http://localhost:8000")
    with Store(history_db()) as store:
        store.add_attempt(
            Attempt(
                delivery_id="dlv_c",
                kind="replay",
                started_at=time.time(),
                target_url="http://localhost:8000/tail",
                status=200,
                duration_ms=3.2,
                note="re-signed",
            )
        )
    result = run(deliveries_cmd, "show", "dlv_c")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("Delivery dlv_c\n")
    assert "POST /tail?x=1" in out
    names = [n for n, _ in stored_delivery(secret, "x").headers]
    positions = [out.index(f"\n  {n}: ") for n in names]
    assert positions == sorted(positions)  # headers in their original order
    assert '  "type": "customer.at_risk",\n' in out  # the body, pretty-printed
    assert "#1 forward" in out and "500" in out and "response: handler says no" in out
    assert "#2 replay" in out and "note: re-signed" in out


def test_show_binary_and_prefix(secret: str) -> None:
    seed(secret, "http://localhost:8000")
    human = run(deliveries_cmd, "show", "bin")
    assert "binary; --json gives it as base64" in human.stdout
    assert "error: connection refused" in human.stdout
    data = json.loads(run(deliveries_cmd, "show", "bin_1", "--json").stdout)
    assert data["body_encoding"] == "base64"
    assert base64.b64decode(data["body"]) == b"\x89PNG\x00\xff"
    assert data["attempts"][0]["error"] == "connection refused by http://x"


def test_show_json_is_whole(secret: str) -> None:
    original = seed(secret, "http://localhost:8000")[0]
    result = run(deliveries_cmd, "show", "dlv_a", "--json")
    data = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert data["body"].encode() == BODY and data["body_encoding"] == "utf-8"
    assert data["headers"] == [[n, v] for n, v in original.headers]
    assert data["received_at"] == original.received_at
    assert data["attempts"][0]["kind"] == "forward"
    assert data["attempts"][0]["response_body"] == "handler says no"


def test_show_unknown_and_ambiguous(secret: str) -> None:
    seed(secret, "http://localhost:8000")
    unknown = run(deliveries_cmd, "show", "nope")
    assert unknown.exit_code == 2
    assert "no stored delivery with id 'nope'" in unknown.stderr
    ambiguous = run(deliveries_cmd, "show", "dlv_")
    assert ambiguous.exit_code == 2
    assert "matches several deliveries" in ambiguous.stderr


def test_replay_one_resigned(secret: str, handler: VerifyingHandler) -> None:
    seed(secret, handler.url + "/webhooks")
    result = run(replay_cmd, "dlv_a", env={"PIVOTAL_WEBHOOK_SECRET": secret})
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("dlv_a  " + handler.url + "/webhooks/tail?x=1  200  ")
    assert line.endswith("re-signed")
    assert handler.seen[0].status == 200
    with Store(history_db()) as store:
        assert [a.kind for a in store.attempts("dlv_a")] == ["forward", "replay"]


def test_replay_as_is_says_expired(secret: str, handler: VerifyingHandler) -> None:
    seed(secret, handler.url)
    result = run(replay_cmd, "dlv_a", "--as-is", "--secret", secret)
    assert result.exit_code == 1  # the handler did not take it
    assert "  401  " in result.stdout
    assert "as-is: the handler will see a stale (expired) signature" in result.stdout


def test_replay_filtered_set_in_arrival_order(secret: str, handler: VerifyingHandler) -> None:
    seed(secret, handler.url)
    result = run(replay_cmd, "--since", "1h", "--status", "5xx", "--json", "--secret", secret)
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["dlv_a", "dlv_c"]  # oldest first
    assert all(r["status"] == 200 and r["note"] == "re-signed" for r in rows)
    assert len(handler.seen) == 2


def test_replay_to_another_target_new_id(secret: str, handler: VerifyingHandler) -> None:
    seed(secret, "http://127.0.0.1:9")
    result = run(
        replay_cmd,
        "dlv_b",
        "--forward",
        handler.url + "/other",
        "--new-id",
        "--secret",
        secret,
        "--json",
    )
    data = json.loads(result.stdout)
    assert data["status"] == 200 and data["note"] == "re-signed, new svix-id"
    assert handler.seen[0].path_qs == "/other/tail?x=1"
    assert handler.header(0, "svix-id") != "msg_original"


def test_replay_json_attempt_is_the_number_deliveries_show_lists(
    secret: str, handler: VerifyingHandler
) -> None:
    """The attempt a user sees as #3 in `deliveries show` is "attempt": 3, not the database's
    id, which counts every delivery's attempts (here 6 of them)."""
    seed(secret, handler.url)
    for _ in range(2):  # attempts of another delivery take database ids in between
        assert run(replay_cmd, "dlv_b", "--secret", secret).exit_code == 0
    numbers = []
    for _ in range(2):
        result = run(replay_cmd, "dlv_a", "--new-id", "--secret", secret, "--json")
        assert result.exit_code == 0, result.output
        numbers.append(json.loads(result.stdout))
    assert [(r["attempt"], r["status"]) for r in numbers] == [(2, 200), (3, 200)]
    assert numbers[1]["attempt_id"] > numbers[0]["attempt_id"] > 3  # the database's own
    shown = run(deliveries_cmd, "show", "dlv_a").stdout
    assert re.search(r"^  #3 replay ", shown, re.M) and "#4" not in shown
    listed = json.loads(run(deliveries_cmd, "show", "dlv_a", "--json").stdout)["attempts"]
    assert listed[2]["id"] == numbers[1]["attempt_id"]
    as_is = run(replay_cmd, "bin_1", "--as-is", "--json")  # unsigned: 401, still attempt #2
    assert json.loads(as_is.stdout)["attempt"] == 2


def test_replay_body_file_and_stdin(tmp_path: Path, secret: str, handler: VerifyingHandler) -> None:
    seed(secret, handler.url)
    edited = BODY.replace(b"Acme", b"Edited Inc")
    path = tmp_path / "edited.json"
    path.write_bytes(edited)
    result = run(replay_cmd, "dlv_a", "--body-file", str(path), "--secret", secret)
    assert result.exit_code == 0
    assert "edited body, re-signed" in result.stdout
    piped = run(replay_cmd, "dlv_a", "--body-file", "-", "--secret", secret, stdin=edited)
    assert piped.exit_code == 0
    assert [s.body for s in handler.seen] == [edited, edited]


def test_replay_edit_in_editor(tmp_path: Path, secret: str, handler: VerifyingHandler) -> None:
    seed(secret, handler.url)
    script = tmp_path / "editor.py"
    script.write_text(
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "p.write_text(p.read_text().replace('Acme', 'Typed'))\n"
    )
    result = run(
        replay_cmd,
        "dlv_a",
        "--edit",
        "--secret",
        secret,
        env={"EDITOR": f"{sys.executable} {script}"},
    )
    assert result.exit_code == 0, result.output
    assert b'"name":"Typed"' in handler.seen[0].body


def test_replay_without_secret_warns(secret: str, handler: VerifyingHandler) -> None:
    seed(secret, handler.url)
    result = run(replay_cmd, "dlv_a")
    assert result.exit_code == 1
    assert "No secret" in result.stderr
    assert "no secret: sent with the stored signature" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give an ID, or filters"),
        (["dlv_a", "--since", "1h"], "either an ID or filters"),
        (["--since", "1h", "--edit"], "one delivery"),
        (["dlv_a", "--secret", "whsec_tooshort"], "whsec_"),
        (["dlv_a", "--new-id"], "needs re-signing"),
        (["dlv_a", "--forward", "ftp://x"], "http or https"),
        (["nope"], "no stored delivery with id 'nope'"),
        (["--status", "9xx"], "bad status"),
    ],
)
def test_replay_user_errors(secret: str, args: list[str], message: str) -> None:
    seed(secret, "http://127.0.0.1:9")
    result = run(replay_cmd, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_replay_nothing_matches(secret: str) -> None:
    seed(secret, "http://127.0.0.1:9")
    result = run(replay_cmd, "--type", "onboarding.*")
    assert result.exit_code == 0
    assert "nothing sent" in result.stderr


def test_help_has_examples() -> None:
    for args in ([], ["show"]):
        assert "Example" in run(deliveries_cmd, *args, "--help").stdout
    help_text = run(replay_cmd, "--help").stdout
    assert "hooktap replay --since 1h --status 5xx" in help_text
    assert "PIVOTAL_WEBHOOK_SECRET" in help_text


def test_every_command_spells_forward_and_timeout_alike() -> None:
    """--forward and --timeout come from cli.common wherever a command sends to a handler, so
    the short -f, the metavar, the range and the default cannot drift between commands.
    A command that routes by event type takes cli.routing's repeatable --forward ("forwards"),
    shared the same way."""
    from hooktap.cli import main

    shapes: dict[str, dict[str, tuple[object, ...]]] = {
        "forward": {},
        "forwards": {},
        "timeout": {},
    }
    for name, command in main.commands.items():
        for param in command.params:
            if param.name in shapes:
                kind = param.type
                bounds = (getattr(kind, "min", None), getattr(kind, "max", None))
                shape = (*param.opts, param.metavar, param.default, type(kind).__name__, *bounds)
                shapes[param.name][name] = shape
    forward = set(shapes["forward"]) | set(shapes["forwards"])
    assert forward == {"listen", "replay", "inspect", "check"}
    assert not set(shapes["forward"]) & set(shapes["forwards"])
    assert set(shapes["timeout"]) == {"listen", "replay", "check"}
    for by_command in shapes.values():
        assert len(set(by_command.values())) <= 1, by_command


def test_big_body_file_deleted_by_hand_is_a_clear_error(secret: str) -> None:
    """A body over 64 KiB lives in a file beside the database; if someone deletes it, `show`
    and `replay` say which file is gone instead of printing a traceback."""
    big = stored_delivery(secret, "http://127.0.0.1:9", id="dlv_big")
    big.body = b'{"type":"task.completed","pad":"' + b"x" * 100_000 + b'"}'
    with Store(history_db()) as store:
        record(store, big)
    files = list((history_db().parent / "bodies").iterdir())
    assert len(files) == 1
    shown = json.loads(run(deliveries_cmd, "show", "dlv_big", "--json").stdout)
    assert shown["body"] == big.body.decode()
    files[0].unlink()
    for cmd, args in ((deliveries_cmd, ("show", "dlv_big")), (replay_cmd, ("dlv_big",))):
        result = run(cmd, *args)
        assert result.exit_code == 2, result.output
        assert "body of delivery dlv_big is missing" in result.stderr
        assert str(files[0]) in result.stderr
