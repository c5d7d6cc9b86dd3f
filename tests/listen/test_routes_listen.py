"""Routes by event type and --events in a real Listener behind a real relay, with real
handlers on several ports at once: each handler gets only its types, byte for byte; the
fallback takes the rest; a filtered or unrouted delivery is answered 200, stored with that
state, found by status:filtered / status:unrouted, and never reaches a handler, not even when
the relay hands it over again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from hooktap.cli.history_cmd import deliveries_cmd
from hooktap.filters import parse_filter
from hooktap.home import history_db
from hooktap.listen.events import (
    DeliveryForwarded,
    DeliveryNotForwarded,
    DeliveryReceived,
    ListenerEvent,
)
from hooktap.listen.routes import build_routing
from hooktap.protocol import Delivery as WireDelivery
from hooktap.protocol import Result
from support.servers import TRANSPORTS, running_handler, running_listener, running_relay


def envelope(event_type: str, n: int) -> bytes:
    """A Pivotal envelope, each one different (and of its own length) so a body that went to
    the wrong handler, or was altered on the way, cannot pass for another."""
    return json.dumps(
        {
            "id": f"evt_{n}",
            "type": event_type,
            "created_at": "2026-12-01T18:00:00Z",
            "data": {"object": {"n": n, "name": "Acmé " + "x" * n}},
        },
        ensure_ascii=False,
    ).encode()


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def of_type(events: list[ListenerEvent], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_route_gets_only_its_types_and_the_fallback_the_rest(
    tmp_path: Path, transport: str
) -> None:
    async with (
        running_handler() as customers,
        running_handler() as tasks,
        running_handler() as rest,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        targets = {
            "customer": f"{customers.url}/hooks",
            "task": f"{tasks.url}/webhooks/pivotal",
            "rest": f"{rest.url}/other",
        }
        routing = build_routing(
            [f"customer.*={targets['customer']}", f"task.*={targets['task']}", targets["rest"]]
        )
        types = [
            "customer.created",
            "task.completed",
            "onboarding.created",
            "customer.at_risk",
            "task.overdue",
            "webhook.ping",
        ]
        async with running_listener(
            relay, targets["rest"], tmp_path / "h.db", transport, routing=routing
        ) as run:
            sent: dict[str, bytes] = {}
            for n, event_type in enumerate(types):
                sent[event_type] = envelope(event_type, n)
                status, _ = await post(http, run.webhook_url + "/tail?x=1", sent[event_type])
                assert status == 200
            not_json = b"\x00\xffnot an envelope"
            assert (await post(http, run.webhook_url, not_json))[0] == 200
            rows = {r.event_type: r for r in run.store.query(None, limit=20)}
            states = {r.state for r in rows.values()}
            forwarded = of_type(run.events, DeliveryForwarded)

        def got(handler) -> list[str]:  # type: ignore[no-untyped-def]
            return [sha(seen.body) for seen in handler.seen]

        assert got(customers) == [sha(sent["customer.created"]), sha(sent["customer.at_risk"])]
        assert got(tasks) == [sha(sent["task.completed"]), sha(sent["task.overdue"])]
        assert got(rest) == [
            sha(sent["onboarding.created"]),
            sha(sent["webhook.ping"]),
            sha(not_json),
        ]
        assert {s.path_qs for s in customers.seen} == {"/hooks/tail?x=1"}
        assert {s.path_qs for s in tasks.seen} == {"/webhooks/pivotal/tail?x=1"}
        assert [s.path_qs for s in rest.seen] == ["/other/tail?x=1"] * 2 + ["/other"]
        # Each delivery records the target it went to, and its attempt the URL it was sent to.
        expect = {t: targets[t.split(".")[0]] if t.split(".")[0] in targets else targets["rest"]
                  for t in types}  # fmt: skip
        assert {t: rows[t].target for t in types} == expect
        assert rows[None].target == targets["rest"]
        assert states == {"done"}
        routes = {e.delivery.event_type: e.route for e in forwarded}
        assert routes == {
            "customer.created": "customer.*",
            "customer.at_risk": "customer.*",
            "task.completed": "task.*",
            "task.overdue": "task.*",
            "onboarding.created": None,  # the fallback
            "webhook.ping": None,
            None: None,
        }
        assert {e.attempt.target_url for e in forwarded if e.route == "task.*"} == {
            targets["task"] + "/tail?x=1"
        }


async def test_events_filter_stores_and_answers_200_but_forwards_only_matching_types(
    tmp_path: Path,
) -> None:
    """The filtered are answered 200 with a body saying why, stored as "filtered" with no
    target, found by status:filtered (the store, `hooktap deliveries`), shown with why by
    `deliveries show`, and a copy the relay hands over again gets the same 200 from history
    and still reaches no handler."""
    history_db().parent.mkdir(parents=True, exist_ok=True)
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        routing = build_routing([handler.url], "customer.*,task.completed")
        async with running_listener(relay, handler.url, history_db(), routing=routing) as run:
            answers = {}
            bodies = {}
            for n, event_type in enumerate(
                ["task.completed", "task.created", "customer.updated", "onboarding.delayed"]
            ):
                bodies[event_type] = envelope(event_type, n)
                answers[event_type] = await post(http, run.webhook_url, bodies[event_type])
            filtered = run.store.query(parse_filter("status:filtered"), limit=10)
            forwarded = run.store.query(parse_filter("status:2xx"), limit=10)
            by_type = {r.event_type: r for r in run.store.query(None, limit=10)}

            # The relay hands the first filtered one over again (as after a reconnect with
            # its result lost): answered from history, not forwarded, still "filtered".
            stored = run.store.get(by_type["task.created"].id)
            assert stored is not None
            copy = WireDelivery(
                id=stored.id,
                received_at=stored.received_at,
                method=stored.method,
                path=stored.path,
                query=stored.query,
                headers=stored.headers,
                body=stored.body,
            )
            replies: list[Result] = []

            async def reply(result: Result) -> None:
                replies.append(result)

            await run.listener.pipeline.handle(reply, copy)
            state_after = run.store.get_state(stored.id)
            events = list(run.events)

    assert [sha(s.body) for s in handler.seen] == [
        sha(bodies["task.completed"]),
        sha(bodies["customer.updated"]),
    ]
    assert answers["task.completed"] == (200, b"ok")
    for left_out in ("task.created", "onboarding.delayed"):
        status, body = answers[left_out]
        assert status == 200
        said = json.loads(body)
        assert said["hooktap"] == "filtered" and "not in --events" in said["reason"]
        assert by_type[left_out].state == "filtered" and by_type[left_out].target == ""
    assert {r.event_type for r in filtered} == {"task.created", "onboarding.delayed"}
    assert {r.event_type for r in forwarded} == {"task.completed", "customer.updated"}
    assert by_type["task.completed"].target == handler.url + "/"  # as str(Target) spells it

    (again,) = replies
    assert (again.status, again.duplicate) == (200, True)
    assert json.loads(again.body)["hooktap"] == "filtered"
    assert state_after == "filtered"
    assert len(handler.seen) == 2

    # Received, then not forwarded, for each filtered one: shown, not silently dropped.
    kinds = [
        (type(e).__name__, e.delivery.event_type)
        for e in events
        if isinstance(e, DeliveryReceived | DeliveryNotForwarded)
    ]
    for left_out in ("task.created", "onboarding.delayed"):
        assert kinds.index(("DeliveryReceived", left_out)) < kinds.index(
            ("DeliveryNotForwarded", left_out)
        )
    (note,) = [
        e for e in of_type(events, DeliveryNotForwarded) if e.delivery.event_type == "task.created"
    ]
    assert "not in --events" in note.reason

    runner = CliRunner()
    listed = runner.invoke(deliveries_cmd, ["--filter", "status:filtered", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["type"] for r in rows} == {"task.created", "onboarding.delayed"}
    assert {(r["state"], r["target"]) for r in rows} == {("filtered", "")}
    assert all("not in --events" in r["reason"] for r in rows)
    table = runner.invoke(deliveries_cmd, ["--status", "filtered,2xx"])
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split()[-1] == "TARGET"
    line = next(x for x in table.stdout.splitlines() if "task.created" in x)
    assert "filtered" in line.split()
    shown = runner.invoke(deliveries_cmd, ["show", by_type["onboarding.delayed"].id])
    assert shown.exit_code == 0, shown.output
    assert "state      filtered" in shown.stdout
    assert "why        filtered: its event type is not in --events" in shown.stdout


async def test_a_type_no_route_takes_without_a_fallback_is_stored_unrouted(
    tmp_path: Path,
) -> None:
    async with (
        running_handler() as customers,
        running_relay(tmp_path / "relay") as relay,
        aiohttp.ClientSession() as http,
    ):
        routing = build_routing([f"customer={customers.url}/c"])  # customer and customer.*
        async with running_listener(
            relay, customers.url, tmp_path / "h.db", routing=routing
        ) as run:
            kept = envelope("customer.churned", 1)
            assert (await post(http, run.webhook_url, kept))[0] == 200
            status, body = await post(http, run.webhook_url, envelope("task.completed", 2))
            unrouted = run.store.query(parse_filter("status:unrouted"), limit=10)
            filtered = run.store.query(parse_filter("status:filtered"), limit=10)
            not_forwarded = of_type(run.events, DeliveryNotForwarded)
    assert status == 200
    said = json.loads(body)
    assert said["hooktap"] == "unrouted" and "no --forward route matches" in said["reason"]
    assert [(r.event_type, r.state, r.target) for r in unrouted] == [
        ("task.completed", "unrouted", "")
    ]
    assert filtered == []
    assert [sha(s.body) for s in customers.seen] == [sha(kept)]
    assert [(e.delivery.event_type, e.delivery.state) for e in not_forwarded] == [
        ("task.completed", "unrouted")
    ]
