"""`hooktap replay --har FILE`, and where every replay goes (issue 16: "replay sends to the route
the delivery matched today, or to --forward when given").

The round trip: webhooks through the real relay and listener, `deliveries --har`, then
`replay --har` to a handler on another port, which gets byte-identical bodies (sha256) and the
same headers in the same order, svix's re-signed only where the original was genuine; svix
itself verifies what it can there."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner, Result
from svix.webhooks import Webhook, WebhookVerificationError

from hooktap.cli.history_cmd import deliveries_cmd
from hooktap.cli.replay_cmd import replay_cmd
from hooktap.home import history_db
from hooktap.pivotal.catalog import encode, sample
from hooktap.pivotal.signing import verify
from hooktap.store import Store
from support.servers import Handler, Seen, running_handler, until
from test_har import an_entry, har_doc, listening, send_through_listener

SVIX_SIGNED = {"svix-timestamp", "svix-signature"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cli(cmd: Any, *args: str) -> Result:
    return CliRunner().invoke(cmd, list(args), catch_exceptions=False)


async def hooktap(cmd: Any, *args: str) -> Result:
    """The command in a thread: it runs asyncio.run itself, and the handlers it sends to are
    served by this test's loop."""
    return await asyncio.to_thread(cli, cmd, *args)


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def by_sha(handler: Handler) -> dict[str, Seen]:
    return {sha(g.body): g for g in handler.seen}


@pytest.fixture
async def recorder() -> AsyncIterator[Handler]:
    """A handler that records each request exactly (raw headers, raw body) and answers 200."""
    async with running_handler() as handler:
        yield handler


@pytest.fixture(autouse=True)
def no_project_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./hooktap.toml but the ones a test writes."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def svix_accepts(secret: str, got: Seen) -> bool:
    """svix, as the user's handler runs it; a body svix cannot take (not UTF-8) is judged by
    hooktap's verify, held to svix's verdicts by tests/pivotal."""
    headers = {n.lower(): v for n, v in got.raw_headers if n.lower().startswith("svix-")}
    try:
        got.body.decode("utf-8")
    except UnicodeDecodeError:
        return verify(secret, got.raw_headers, got.body).status == "valid"
    try:
        Webhook(secret).verify(got.body, headers)
    except (WebhookVerificationError, KeyError):
        return False
    return True


def same_headers(har_entry: dict[str, Any], got: Seen, netloc: str, resigned: bool) -> None:
    """The handler got the HAR's headers, in order and case; Host names the new target, and
    only a re-signed request has a new svix-timestamp and svix-signature (same svix-id)."""
    sent = [(h["name"], h["value"]) for h in har_entry["request"]["headers"]]
    assert [n for n, _ in got.raw_headers] == [n for n, _ in sent]
    for (name, was), (_, now) in zip(sent, got.raw_headers, strict=True):
        if name.lower() == "host":
            assert now == netloc
        elif name.lower() in SVIX_SIGNED and resigned:
            assert now != was
        else:
            assert now == was, name


async def test_round_trip_through_har_to_another_handler(
    tmp_path: Path, secret: str, recorder: Handler
) -> None:
    traffic = await send_through_listener(tmp_path, secret)
    exported = await hooktap(deliveries_cmd, "--har")
    har_file = tmp_path / "out.har"
    har_file.write_bytes(exported.stdout_bytes)
    entries = json.loads(exported.stdout_bytes)["log"]["entries"]
    target = f"{recorder.url}/elsewhere"
    netloc = recorder.url.removeprefix("http://")

    result = await hooktap(
        replay_cmd, "--har", str(har_file), "-f", target, "--secret", secret, "--json"
    )
    assert result.exit_code == 1, result.output  # the forged one was refused
    lines = json_lines(result)
    assert [line["entry"] for line in lines] == list(range(len(entries)))
    by_name = {p.name: line for p, line in zip(traffic.posted, lines, strict=True)}
    assert by_name["forged"]["note"] == "not sent"
    assert "does not match the secret" in by_name["forged"]["error"]
    got = by_sha(recorder)
    assert sha(traffic.by_name("forged").body) not in got
    for posted, entry in zip(traffic.posted, entries, strict=True):
        if posted.name == "forged":
            continue
        arrived = got[sha(posted.body)]  # byte-identical, the binary and the 90 KB one too
        assert arrived.path_qs == "/elsewhere" + posted.path_qs
        genuine = posted.verdict == "valid"
        same_headers(entry, arrived, netloc, resigned=genuine)
        assert svix_accepts(secret, arrived) == genuine
        line = by_name[posted.name]
        assert line["status"] == 200 and line["target"] == target + posted.path_qs
        assert line["note"].startswith("from a HAR file, ")
        assert line["note"].endswith("re-signed" if genuine else "as it arrived")
        # Exported from this history: recorded on its delivery as replay ID records it.
        assert line["recorded"] is True and line["attempt"] == 2
        assert line["id"] == entry["_hooktap"]["id"]
    with Store(history_db()) as store:
        genuine_id = entries[0]["_hooktap"]["id"]
        assert [a.kind for a in store.attempts(genuine_id)] == ["forward", "replay"]

    # --force re-signs the forged one, and svix there takes it as genuine: hence the refusal.
    forced = await hooktap(
        replay_cmd, "--har", str(har_file), "-f", target, "--secret", secret,
        "--signature", "invalid", "--force", "--json",
    )  # fmt: skip
    assert forced.exit_code == 0, forced.output
    (line,) = json_lines(forced)
    assert "forced" in line["note"]
    arrived = by_sha(recorder)[sha(traffic.by_name("forged").body)]
    assert svix_accepts(secret, arrived)
    forged_entry = entries[traffic.posted.index(traffic.by_name("forged"))]
    same_headers(forged_entry, arrived, netloc, resigned=True)


async def test_as_is_sends_the_stored_signature_which_svix_refuses(
    tmp_path: Path, secret: str, recorder: Handler
) -> None:
    traffic = await send_through_listener(tmp_path, secret)
    har_file = tmp_path / "out.har"
    har_file.write_bytes((await hooktap(deliveries_cmd, "--har", "--type", "task")).stdout_bytes)
    result = await hooktap(
        replay_cmd, "--har", str(har_file), "-f", recorder.url, "--as-is", "--secret", secret
    )
    assert result.exit_code == 0, result.output
    forged = by_sha(recorder)[sha(traffic.by_name("forged").body)]
    assert not svix_accepts(secret, forged)
    assert "as-is" in result.stdout


async def test_a_har_from_elsewhere_goes_to_the_targets_own_path_and_is_not_recorded(
    tmp_path: Path, recorder: Handler
) -> None:
    har_file = tmp_path / "other.har"
    har_file.write_bytes(
        har_doc(an_entry(url="https://api.example/webhooks/pivotal?v=2", headers=[]))
    )
    result = await hooktap(replay_cmd, "--har", str(har_file), "-f", f"{recorder.url}/hooks")
    assert result.exit_code == 0, result.output
    (got,) = recorder.seen
    assert got.path_qs == "/hooks?v=2"
    assert got.body == b'{"type":"task.completed"}'
    assert "entries[0]" in result.stdout
    assert not history_db().exists()  # nothing to record it on: no history made for it


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not JSON"),
        (b"<html>", "not JSON"),
        (b'{"log": {}}', "not a HAR file"),
        (har_doc({"request": {"method": "POST"}}), "entries[0] cannot be sent"),
        (har_doc(an_entry(postData=None)), "no postData"),
    ],
)
async def test_bad_har_input_exits_2_with_the_reason(
    tmp_path: Path, content: bytes, why: str
) -> None:
    har_file = tmp_path / "bad.har"
    har_file.write_bytes(content)
    result = await hooktap(replay_cmd, "--har", str(har_file), "-f", "8000")
    assert result.exit_code == 2, result.output
    assert why in result.output
    assert "Traceback" not in result.output


async def test_one_bad_entry_among_good_ones_is_named_and_the_rest_sent(
    tmp_path: Path, recorder: Handler
) -> None:
    har_file = tmp_path / "mixed.har"
    bad = an_entry(postData=None)
    har_file.write_bytes(har_doc(an_entry(), bad, an_entry(url="http://x.example/c/ch?n=3")))
    result = await hooktap(replay_cmd, "--har", str(har_file), "-f", recorder.url, "--json")
    assert result.exit_code == 1, result.output
    first, second, third = json_lines(result)
    assert (first["status"], third["status"]) == (200, 200)
    assert second["entry"] == 1 and second["note"] == "not sent"
    assert "entries[1] cannot be sent: it has no postData" in second["error"]
    assert [g.path_qs for g in recorder.seen] == ["/tail?q=1", "/?n=3"]


async def test_har_options_that_cannot_go_together_are_refused(tmp_path: Path) -> None:
    har_file = tmp_path / "one.har"
    har_file.write_bytes(har_doc(an_entry()))
    with_id = await hooktap(replay_cmd, "dlv_1", "--har", str(har_file))
    assert with_id.exit_code == 2 and "not both" in with_id.output
    with_body = await hooktap(replay_cmd, "--har", str(har_file), "--body-file", str(har_file))
    assert with_body.exit_code == 2 and "--body-file" in with_body.output


# --- where replays go ----------------------------------------------------------------------


def typed_har(tmp_path: Path, *types: str) -> Path:
    """A HAR of unsigned Pivotal events, one of each type."""
    har_file = tmp_path / "typed.har"
    entries = [
        an_entry(postData={"mimeType": "application/json", "text": encode(sample(t)).decode()})
        for t in types
    ]
    har_file.write_bytes(har_doc(*entries))
    return har_file


async def test_har_requests_follow_forward_routes_by_type(tmp_path: Path) -> None:
    async with (
        running_handler() as tasks,
        running_handler() as rest,
    ):
        har_file = typed_har(tmp_path, "task.completed", "customer.at_risk", "task.created")
        result = await hooktap(
            replay_cmd, "--har", str(har_file), "-f", f"task.*={tasks.url}/t", "-f", rest.url
        )
        assert result.exit_code == 0, result.output
        assert [json.loads(g.body)["type"] for g in tasks.seen] == [
            "task.completed",
            "task.created",
        ]
        assert [json.loads(g.body)["type"] for g in rest.seen] == ["customer.at_risk"]
        only_tasks = await hooktap(
            replay_cmd, "--har", str(har_file), "-f", f"task.*={tasks.url}/t", "--json"
        )
        assert only_tasks.exit_code == 1
        unrouted = json_lines(only_tasks)[1]
        assert unrouted["note"] == "not sent"
        assert unrouted["error"].startswith("customer.at_risk is unrouted")


async def test_without_forward_hooktap_toml_routes_them(tmp_path: Path, recorder: Handler) -> None:
    Path("hooktap.toml").write_text(
        f'[listen]\nforward = ["customer.*={recorder.url}/customers"]\n'
    )
    har_file = typed_har(tmp_path, "customer.at_risk", "task.completed")
    result = await hooktap(replay_cmd, "--har", str(har_file), "--json")
    assert result.exit_code == 1, result.output
    sent, unrouted = json_lines(result)
    assert sent["status"] == 200 and sent["target"] == f"{recorder.url}/customers/tail?q=1"
    assert "no route takes it" in unrouted["error"]


async def test_with_no_routing_anywhere_it_asks_for_forward(tmp_path: Path) -> None:
    har_file = typed_har(tmp_path, "customer.at_risk")
    result = await hooktap(replay_cmd, "--har", str(har_file))
    assert result.exit_code == 2
    assert "give --forward" in result.output


async def test_a_filtered_delivery_replays_where_the_routing_in_force_sends_it(
    tmp_path: Path, secret: str, recorder: Handler
) -> None:
    """Stored as filtered (no target): while its listener runs, its routes (listener.json)
    still filter it out; --forward sends it; with the listener gone, hooktap.toml routes it.
    A HAR request meanwhile follows the running listener's routes."""
    async with listening(tmp_path, secret, lambda url: [url], "customer.*") as lst:
        body = encode(sample("task.completed"))
        async with aiohttp.ClientSession() as http, http.post(lst.webhook_url, data=body) as r:
            assert r.status == 200
        await until(lambda: lst.store.count() == 1)
        (row,) = lst.store.query()
        assert (row.state, row.target) == ("filtered", "")
        refused = await hooktap(replay_cmd, row.id)
        assert refused.exit_code == 2
        assert "task.completed is filtered out" in refused.output
        har_file = typed_har(tmp_path, "customer.at_risk")
        via_listener = await hooktap(replay_cmd, "--har", str(har_file), "--json")
        assert via_listener.exit_code == 0, via_listener.output
        assert json_lines(via_listener)[0]["target"].startswith(lst.listener.routing.primary.url())
        sent = await hooktap(replay_cmd, row.id, "-f", recorder.url, "--json")
        assert sent.exit_code == 0, sent.output
        assert recorder.seen[-1].body == body
    Path("hooktap.toml").write_text(f'[listen]\nforward = ["task.*={recorder.url}/tasks"]\n')
    routed = await hooktap(replay_cmd, row.id, "--json")
    assert routed.exit_code == 0, routed.output
    assert json_lines(routed)[0]["target"] == f"{recorder.url}/tasks"
    assert recorder.seen[-1].path_qs == "/tasks" and recorder.seen[-1].body == body


async def test_a_forwarded_delivery_goes_where_todays_routes_send_it(
    tmp_path: Path, secret: str, recorder: Handler
) -> None:
    """With no routes in force, a forwarded delivery goes where it went; once hooktap.toml
    routes its type elsewhere (a type moved to another handler), it goes there."""
    traffic = await send_through_listener(tmp_path, secret)
    with Store(history_db()) as store:
        first = store.query(oldest_first=True)[0]
    where_it_went = await hooktap(replay_cmd, first.id, "--secret", secret, "--json")
    # Its handler is gone with its listener: the stored target was tried, and refused.
    (line,) = json_lines(where_it_went)
    assert line["target"].startswith(first.target) and line["error"]
    assert recorder.seen == []

    Path("hooktap.toml").write_text(f'[listen]\nforward = ["{recorder.url}"]\n')
    today = await hooktap(replay_cmd, first.id, "--secret", secret, "--json")
    assert today.exit_code == 0, today.output
    (line,) = json_lines(today)
    assert line["target"].startswith(recorder.url) and line["status"] == 200
    (seen,) = recorder.seen
    assert sha(seen.body) == sha(traffic.posted[0].body)


async def test_a_teammates_export_is_sent_and_not_filed_in_a_history_it_is_not_from(
    tmp_path: Path, recorder: Handler
) -> None:
    entry = an_entry()
    entry["_hooktap"] = {"id": "d0000000000000000001", "state": "done"}
    har_file = tmp_path / "teammate.har"
    har_file.write_bytes(har_doc(entry))
    result = await hooktap(replay_cmd, "--har", str(har_file), "-f", recorder.url, "--json")
    assert result.exit_code == 0, result.output
    (line,) = json_lines(result)
    assert (line["recorded"], line["id"], line["attempt"]) == (False, None, None)
    assert len(recorder.seen) == 1
    assert not history_db().exists()
