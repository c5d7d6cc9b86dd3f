"""The sender's Host header in a HAR export, and HAR files Python's JSON reader refuses.

The Host header is the sender's text: copied as is into the exported URL, `x/c/zz/admin?`
moved the path a `replay --har` sent to. And an integer of more than 4,300 digits made the
reader raise a plain ValueError: a traceback and exit 1 instead of exit 2 with a reason."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hooktap import har
from hooktap.cli.replay_cmd import replay_cmd
from hooktap.pivotal.catalog import encode, sample
from hooktap.records import Delivery
from support.servers import running_handler


def delivery(host: str) -> Delivery:
    return Delivery(
        id="dlv_host",
        received_at=time.time(),
        method="POST",
        path="/tail",
        query="q=1",
        headers=[("Host", host), ("Content-Type", "application/json")],
        body=encode(sample("task.completed")),
        channel="abc",
        signature="unsigned",
        event_type="task.completed",
        state="done",
    )


def exported(host: str) -> bytes:
    return "".join(har.document([har.entry(delivery(host), [])])).encode()


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("relay.example:8080", "http://relay.example:8080/c/abc/tail?q=1"),
        ("[::1]:9000", "http://[::1]:9000/c/abc/tail?q=1"),
        ("x/c/zz/admin?", "http://localhost/c/abc/tail?q=1"),
        ("evil.example/c/zz/admin#", "http://localhost/c/abc/tail?q=1"),
        ("a b", "http://localhost/c/abc/tail?q=1"),
    ],
)
def test_the_exported_url_takes_only_a_valid_host_from_the_header(host: str, url: str) -> None:
    assert har.webhook_url(delivery(host)) == url


def test_the_import_takes_the_tail_hooktap_saved_not_the_urls() -> None:
    data = exported("relay.example")
    # A HAR whose URL says another path (edited, or written by an older hooktap from the
    # raw Host header): _hooktap's path and query, as received, are what is sent.
    data = data.replace(b"/c/abc/tail?q=1", b"/c/zz/admin?x=2")
    (req,) = har.read(data)
    assert isinstance(req, har.HarRequest)
    assert (req.tail, req.query) == ("/tail", "q=1")


async def test_replay_har_sends_to_the_received_tail_whatever_the_host_said(
    tmp_path: Path,
) -> None:
    har_file = tmp_path / "export.har"
    har_file.write_bytes(exported("x/c/zz/admin?"))
    async with running_handler() as handler:
        result = await asyncio.to_thread(
            CliRunner().invoke, replay_cmd, ["--har", str(har_file), "-f", handler.url + "/hooks"]
        )
        assert result.exit_code == 0, result.output
    assert [s.path_qs for s in handler.seen] == ["/hooks/tail?q=1"]


def test_an_integer_of_too_many_digits_is_a_har_error(tmp_path: Path) -> None:
    data = b'{"log": {"version": "1.2", "entries": [], "n": ' + b"9" * 5000 + b"}}"
    with pytest.raises(har.HarError, match="not JSON hooktap can read"):
        har.read(data)
    har_file = tmp_path / "big.har"
    har_file.write_bytes(data)
    result: Result = CliRunner().invoke(replay_cmd, ["--har", str(har_file), "-f", "8000"])
    assert result.exit_code == 2, result.output
    assert "not JSON hooktap can read" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
