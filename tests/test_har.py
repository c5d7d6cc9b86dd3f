"""`hooktap deliveries --har`: deliveries that came through the real relay and listener to a
real handler, written as HAR 1.2, checked against a schema written from the spec
(tests/data/har-1.2.schema.json), read back by a second, independent HAR reader (haralyzer),
and compared byte for byte (sha256) with what was posted and what the handler answered."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from haralyzer import HarParser

from hooktap import har
from hooktap.cli.history_cmd import deliveries_cmd
from hooktap.filters import build_filter
from hooktap.home import history_db
from hooktap.listen.routes import build_routing
from hooktap.pivotal.catalog import encode, sample
from hooktap.pivotal.signing import signed_headers
from hooktap.store import Store
from support.servers import RunningListener, running_listener, running_relay, serve, until

SCHEMA = json.loads((Path(__file__).parent / "data" / "har-1.2.schema.json").read_text())
OTHER_SECRET = "whsec_" + base64.b64encode(b"not the endpoint's secret, 32 b").decode()
BINARY_REPLY = b"\x89PNG\r\n\x1a\n\xff\xfe\x00 not text"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cli(*args: str) -> Result:
    return CliRunner().invoke(deliveries_cmd, list(args), catch_exceptions=False)


@dataclass
class Posted:
    """One webhook as the test sent it to the public URL: what each check compares with."""

    name: str
    tail: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    verdict: str

    @property
    def path_qs(self) -> str:
        """What follows the webhook URL: the tail and the query."""
        return self.tail + (f"?{self.query}" if self.query else "")


@dataclass
class Traffic:
    webhook_url: str
    posted: list[Posted] = field(default_factory=list)

    def by_name(self, name: str) -> Posted:
        return next(p for p in self.posted if p.name == name)


def webhooks(secret: str) -> list[Posted]:
    """A signed event, a forged one, a signed body that is not UTF-8, a signed one past the
    store's 64 KiB inline limit (kept in a file), and an unsigned one with a tail and query
    whose handler answers 500 with a binary body."""
    genuine = encode(sample("customer.at_risk"))
    forged = encode(sample("task.completed"))
    binary = b"\x00\xff\xfe binary \xc3\x28 upload \x80" + bytes(range(256))
    big = encode(sample("customer.updated", {"data.object.name": "Acmé " + "x" * 90_000}))
    unsigned = b'{"type":"task.created","id":"evt_unsigned","note":"caf\xc3\xa9"}'
    ct = ("Content-Type", "application/json")
    return [
        Posted("genuine", "", "", [ct, *_svix(secret, genuine), ("X-T", "1")], genuine, "valid"),
        Posted("forged", "", "", [ct, *_svix(OTHER_SECRET, forged)], forged, "invalid"),
        Posted(
            "binary",
            "",
            "",
            [("Content-Type", "application/octet-stream"), *_svix(secret, binary)],
            binary,
            "valid",
        ),
        Posted("big", "", "", [ct, *_svix(secret, big)], big, "valid"),
        Posted(
            "unsigned",
            "/deep/tail",
            "answer=binary&x=1&x=2",
            [ct, ("X-Repeat", "a"), ("x-lower-case", "b")],
            unsigned,
            "unsigned",
        ),
    ]


def _svix(secret: str, body: bytes) -> list[tuple[str, str]]:
    """Signed two minutes ago: inside svix's window, and unlike a re-signing made now."""
    signed = signed_headers(secret, body, timestamp=int(time.time()) - 120)
    return [(n, v) for n, v in signed if n.startswith("svix-")]


async def handler_app() -> web.Application:
    """Answers 200 with JSON, or 500 with a binary body when asked (?answer=binary)."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if request.query.get("answer") == "binary":
            return web.Response(
                status=500, body=BINARY_REPLY, content_type="application/octet-stream"
            )
        return web.json_response({"ok": True}, headers={"X-Handler": "yes"})

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def listening(
    tmp_path: Path,
    secret: str,
    routes: Callable[[str], list[str]],
    events: str | None = None,
) -> AsyncIterator[RunningListener]:
    """The real relay, and a real listener routing (`routes` of the handler's URL) to the
    real handler, recording in this test's history."""
    async with (
        serve(await handler_app()) as handler_url,
        running_relay(tmp_path / "relay") as relay,
        running_listener(
            relay,
            handler_url,
            history_db(),
            secret=secret,
            routing=build_routing(routes(handler_url), events),
        ) as lst,
    ):
        yield lst


async def send_through_listener(tmp_path: Path, secret: str) -> Traffic:
    """Every webhook through the real relay and listener to the real handler, recorded in the
    history of this test's HOOKTAP_HOME; returns once each has its forward's outcome."""
    async with (
        listening(tmp_path, secret, lambda url: [f"task.*={url}/tasks", f"{url}/hooks"]) as lst,
        aiohttp.ClientSession(skip_auto_headers=["Content-Type", "User-Agent"]) as http,
    ):
        traffic = Traffic(lst.webhook_url)
        for p in webhooks(secret):
            async with http.post(
                lst.webhook_url + p.path_qs, data=p.body, headers=p.headers
            ) as resp:
                await resp.read()
            traffic.posted.append(p)
        await until(lambda: lst.store.count(build_filter("status:2xx,5xx")) == len(traffic.posted))
    return traffic


@pytest.fixture
async def traffic(tmp_path: Path, secret: str) -> Traffic:
    return await send_through_listener(tmp_path, secret)


def exported(*args: str) -> dict[str, Any]:
    result = cli("--har", *args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout_bytes.decode("utf-8"))  # strict UTF-8, valid JSON
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return doc


def request_body(entry: dict[str, Any]) -> bytes:
    """The body as any reader gets it from the text (see har.py for the surrogateescape)."""
    return entry["request"]["postData"]["text"].encode("utf-8", "surrogateescape")


async def test_har_holds_each_request_as_received_and_its_latest_response(
    traffic: Traffic,
) -> None:
    doc = await asyncio.to_thread(exported)
    entries = doc["log"]["entries"]
    assert doc["log"]["version"] == "1.2" and doc["log"]["creator"]["name"] == "hooktap"
    assert len(entries) == len(traffic.posted)
    assert [e["startedDateTime"] for e in entries] == sorted(e["startedDateTime"] for e in entries)
    with Store(history_db()) as store:
        for entry, posted in zip(entries, traffic.posted, strict=True):
            d = store.get(entry["_hooktap"]["id"])
            assert d is not None
            req = entry["request"]
            # The body: byte-exact, binary and the 90 KB one (kept in a file) included.
            assert sha(request_body(entry)) == sha(posted.body) == sha(d.body)
            assert entry["_hooktap"]["body_sha256"] == sha(posted.body)
            assert req["bodySize"] == len(posted.body)
            # Headers: as the relay received them, in order, repeats and case kept.
            assert [(h["name"], h["value"]) for h in req["headers"]] == d.headers
            sent = [(n.lower(), v) for n, v in posted.headers]
            got = [(h["name"].lower(), h["value"]) for h in req["headers"]]
            assert [h for h in got if h in sent] == sent
            assert req["method"] == "POST"
            assert req["url"] == traffic.webhook_url + posted.path_qs
            assert req["postData"]["mimeType"] == dict(posted.headers)["Content-Type"]
            assert entry["_hooktap"]["signature"] == posted.verdict
            assert entry["_hooktap"]["state"] == "done"
            assert entry["_hooktap"]["target"] == d.target
            # time is the sum of the timings, as the spec requires.
            timings = entry["timings"]
            assert entry["time"] == pytest.approx(
                sum(v for k, v in timings.items() if k != "comment" and v != -1)
            )
            assert entry["time"] > 0
        unsigned = entries[traffic.posted.index(traffic.by_name("unsigned"))]
        assert unsigned["request"]["queryString"] == [
            {"name": "answer", "value": "binary"},
            {"name": "x", "value": "1"},
            {"name": "x", "value": "2"},
        ]
        content = unsigned["response"]["content"]
        assert unsigned["response"]["status"] == 500
        assert content["encoding"] == "base64"
        assert base64.b64decode(content["text"]) == BINARY_REPLY
        assert content["mimeType"] == "application/octet-stream"
        genuine = entries[0]
        assert genuine["response"]["status"] == 200
        assert genuine["response"]["statusText"] == "OK"
        assert json.loads(genuine["response"]["content"]["text"]) == {"ok": True}
        assert "encoding" not in genuine["response"]["content"]
        assert {"name": "X-Handler", "value": "yes"} in genuine["response"]["headers"]
        assert genuine["_hooktap"]["attempts"][0]["kind"] == "forward"
        tasks = entries[traffic.posted.index(traffic.by_name("forged"))]
        assert tasks["_hooktap"]["target"].endswith("/tasks")  # the route it matched


async def test_a_second_har_reader_gets_the_same_requests_and_responses(
    traffic: Traffic,
) -> None:
    """haralyzer, not hooktap's own reader: its pages, entries, times and bodies."""
    doc = await asyncio.to_thread(exported)
    parser = HarParser(doc)
    assert parser.version == "1.2"
    (page,) = parser.pages  # no pageref: one page of entries without a page, as the spec says
    got = page.entries
    assert len(got) == len(traffic.posted)
    for entry, posted in zip(got, traffic.posted, strict=True):
        body = entry.request.text.encode("utf-8", "surrogateescape")
        assert sha(body) == sha(posted.body)
        assert entry.request.method == "POST"
        assert entry.request.url.endswith(posted.path_qs)
        assert abs(entry.startTime.timestamp() - time.time()) < 60
        if posted.name == "unsigned":
            assert entry.response.status == 500
            assert entry.response.textEncoding == "base64"
            assert base64.b64decode(entry.response.text) == BINARY_REPLY
        else:
            assert entry.response.status == 200


# mitmproxy is not in the test extras (see pyproject.toml): point this at a Python that has it
# (python -m venv /tmp/mitm && /tmp/mitm/bin/pip install mitmproxy) to run the check below.
MITMPROXY_PYTHON = os.environ.get("HOOKTAP_MITMPROXY_PYTHON")
READ_WITH_MITMPROXY = """
import hashlib, json, sys
from mitmproxy import io
flows = io.read_flows_from_paths([sys.argv[1]])
print(json.dumps([
    {"sha": hashlib.sha256(f.request.raw_content).hexdigest(), "method": f.request.method,
     "url": f.request.url,
     "headers": [[k.decode(), v.decode()] for k, v in f.request.headers.fields],
     "status": f.response.status_code, "response": f.response.raw_content.hex()}
    for f in flows
]))
"""


@pytest.mark.skipif(
    not MITMPROXY_PYTHON, reason="HOOKTAP_MITMPROXY_PYTHON names no Python with mitmproxy"
)
async def test_mitmproxy_reads_the_har_back(traffic: Traffic, tmp_path: Path) -> None:
    """mitmproxy's own HAR import (mitmproxy/io/har.py): the same bytes, binary included."""
    assert MITMPROXY_PYTHON is not None
    har_file = tmp_path / "out.har"
    har_file.write_bytes((await asyncio.to_thread(cli, "--har")).stdout_bytes)
    proc = await asyncio.create_subprocess_exec(
        MITMPROXY_PYTHON, "-c", READ_WITH_MITMPROXY, str(har_file), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    flows = json.loads(out)
    with Store(history_db()) as store:
        rows = store.query(oldest_first=True)  # the HAR's order
        for flow, posted, row in zip(flows, traffic.posted, rows, strict=True):
            assert flow["sha"] == sha(posted.body)
            assert flow["url"] == traffic.webhook_url + posted.path_qs
            stored = store.get(row.id)
            assert stored is not None
            # mitmproxy adds charset=utf-8 to its copy of a non-UTF-8 body's Content-Type.
            assert [n for n, _ in flow["headers"]] == [n for n, _ in stored.headers]
        unsigned = flows[traffic.posted.index(traffic.by_name("unsigned"))]
        assert (unsigned["status"], bytes.fromhex(unsigned["response"])) == (500, BINARY_REPLY)


async def test_filters_choose_the_entries_as_they_choose_the_listing(traffic: Traffic) -> None:
    forged = await asyncio.to_thread(exported, "--signature", "invalid")
    assert [e["_hooktap"]["signature"] for e in forged["log"]["entries"]] == ["invalid"]
    tasks = await asyncio.to_thread(exported, "--filter", "type:task.* status:5xx")
    assert [request_body(e) for e in tasks["log"]["entries"]] == [traffic.by_name("unsigned").body]
    # --limit, when given, keeps the newest, written oldest first.
    last_two = await asyncio.to_thread(exported, "--limit", "2")
    bodies = [request_body(e) for e in last_two["log"]["entries"]]
    assert bodies == [traffic.by_name("big").body, traffic.by_name("unsigned").body]
    none = await asyncio.to_thread(exported, "--type", "no.such")
    assert none["log"]["entries"] == []


async def test_a_big_body_whose_file_is_gone_is_left_out_and_said(traffic: Traffic) -> None:
    for f in (history_db().parent / "bodies").iterdir():
        f.unlink()
    result = await asyncio.to_thread(cli, "--har")
    assert result.exit_code == 1
    doc = json.loads(result.stdout_bytes)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert len(doc["log"]["entries"]) == len(traffic.posted) - 1
    assert "left out of the HAR file" in result.stderr
    assert "Traceback" not in result.output


async def test_har_and_json_together_are_refused() -> None:
    result = await asyncio.to_thread(cli, "--har", "--json")
    assert result.exit_code == 2
    assert "pick one" in result.output


async def test_a_filtered_delivery_gets_status_0_and_says_why(tmp_path: Path, secret: str) -> None:
    """Never forwarded (outside --events): HAR's "no response", status 0 with _error, as
    browsers and mitmproxy write it; its state and empty target under _hooktap."""
    async with (
        listening(tmp_path, secret, lambda url: [url], "customer.*") as lst,
        aiohttp.ClientSession() as http,
    ):
        body = encode(sample("task.completed"))
        async with http.post(lst.webhook_url, data=body, headers=_svix(secret, body)) as resp:
            assert resp.status == 200
        await until(lambda: lst.store.count(build_filter("status:filtered")) == 1)
    doc = await asyncio.to_thread(exported)
    (entry,) = doc["log"]["entries"]
    assert entry["response"]["status"] == 0
    assert entry["response"]["_error"].startswith("filtered:")
    assert entry["_hooktap"]["state"] == "filtered"
    assert entry["_hooktap"]["target"] == "" and entry["_hooktap"]["attempts"] == []
    assert entry["time"] == 0
    assert sha(request_body(entry)) == sha(body)


# --- reading HAR files (pure) ------------------------------------------------------------------


def har_doc(*entries: object) -> bytes:
    return json.dumps({"log": {"version": "1.2", "creator": {}, "entries": list(entries)}}).encode()


def an_entry(**request: object) -> dict[str, Any]:
    base: dict[str, Any] = {
        "method": "POST",
        "url": "https://relay.example/c/abc/tail?q=1",
        "headers": [{"name": "Content-Type", "value": "application/json"}],
        "postData": {"mimeType": "application/json", "text": '{"type":"task.completed"}'},
    }
    base.update(request)
    fields = {k: v for k, v in base.items() if v is not None}  # None: leave the field out
    return {"startedDateTime": "2026-12-01T10:00:00.000Z", "request": fields, "response": {}}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not json {", "not JSON"),
        (b'{"entries": []}', "not a HAR file"),
        (b"[1, 2]", "not a HAR file"),
        (b'{"log": {"version": "2.0", "entries": []}}', "HAR version '2.0'"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_file_that_is_not_har_is_refused_whole(data: bytes, why: str) -> None:
    with pytest.raises(har.HarError, match=why):
        har.read(data)


@pytest.mark.parametrize(
    ("request_fields", "why"),
    [
        ({"postData": None}, "no postData"),
        ({"postData": {"mimeType": "x", "params": [{"name": "a"}]}}, "params but no text"),
        ({"postData": {"mimeType": "x", "text": "%%", "encoding": "base64"}}, "not base64"),
        ({"url": "/c/abc"}, "not an absolute http"),
        ({"method": "PO ST"}, "not an HTTP method"),
        ({"headers": [{"name": "X-Evil", "value": "a\r\nHost: other"}]}, "not valid HTTP"),
        ({"headers": "nope"}, "not a list"),
        ({"postData": {"mimeType": "x", "text": "\ud800"}}, "no byte of a body"),
    ],
)
def test_a_bad_entry_is_named_among_good_ones(request_fields: dict[str, Any], why: str) -> None:
    bad = an_entry(**request_fields)
    good = an_entry()
    first, second, third = har.read(har_doc(good, bad, good))
    assert isinstance(first, har.HarRequest) and isinstance(third, har.HarRequest)
    assert isinstance(second, har.BadEntry) and second.where == "entries[1]"
    assert why in second.reason


def test_requests_from_other_tools_are_read_as_they_mean() -> None:
    """A BOM (the spec allows it), base64 postData (HAR 1.3's proposal, Reqable), HTTP/2
    pseudo-headers (Chrome) and [name, value] headers (Slack); a URL that is not a hooktap
    webhook URL sends to the target's own path."""
    raw = bytes(range(256))
    entry = an_entry(
        url="https://api.example/webhooks/pivotal?v=2",
        headers=[{"name": ":authority", "value": "api.example"}, ["X-Slack", "1"]],
        postData={"mimeType": "x", "text": base64.b64encode(raw).decode(), "encoding": "base64"},
    )
    (req,) = har.read(b"\xef\xbb\xbf" + har_doc(entry))
    assert isinstance(req, har.HarRequest)
    assert req.body == raw
    assert req.headers == [("X-Slack", "1")]
    assert (req.tail, req.query) == ("", "v=2")
    assert har.read(b'{"log": {"version": "", "entries": []}}') == []  # "": 1.1, says the spec
    (ours,) = har.read(har_doc(an_entry()))
    assert isinstance(ours, har.HarRequest)
    assert (ours.tail, ours.query, ours.event_type) == ("/tail", "q=1", "task.completed")


def test_the_filter_language_applies_to_har_entries() -> None:
    (req,) = har.read(har_doc(an_entry()))
    assert isinstance(req, har.HarRequest)
    assert har.matches(build_filter("type:task"), req, "unsigned")
    assert not har.matches(build_filter("type:customer.*"), req, "unsigned")
    assert har.matches(build_filter("sig:unsigned COMPLETED"), req, "unsigned")
    assert not har.matches(build_filter("sig:valid"), req, "unsigned")
    assert har.matches(build_filter("status:err"), req, "unsigned")  # no response in it
    assert not har.matches(build_filter("status:2xx"), req, "unsigned")
    assert not har.matches(build_filter("since:1h"), req, "unsigned", now=time.time())
    assert har.matches(build_filter("since:2026-12-01"), req, "unsigned")
