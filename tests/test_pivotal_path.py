"""Pivotal's own path: signed like Pivotal, through relay and listener, into the handler shape
from Pivotal's docs (FastAPI + svix on the raw body)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from hooktap.cli.pivotal_cmd import trigger_cmd
from hooktap.listen.events import DeliveryForwarded
from hooktap.listen.output import delivery_json
from hooktap.pivotal.catalog import encode, event_types, sample
from hooktap.pivotal.signing import signed_headers
from support.fastapi_app import SECRET, Handled, correct_handler, docs_handler, serve
from support.servers import (
    TRANSPORTS,
    RunningListener,
    running_handler,
    running_listener,
    running_relay,
)


class Tunnel:
    def __init__(self, listener: RunningListener, http: aiohttp.ClientSession) -> None:
        self.listener = listener
        self.http = http

    async def post(self, body: bytes, signed_body: bytes | None = None) -> tuple[int, str]:
        """POST `body` signed as `signed_body` (default: itself); the status and text."""
        headers = signed_headers(SECRET, body if signed_body is None else signed_body)
        async with self.http.post(self.listener.webhook_url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    def forwarded(self) -> list[DeliveryForwarded]:
        return [e for e in self.listener.events if isinstance(e, DeliveryForwarded)]


@asynccontextmanager
async def tunnel(target: str, tmp_path: Path, transport: str) -> AsyncIterator[Tunnel]:
    """Relay and listener forwarding to `target`, and a way to post signed bodies to them."""
    async with (
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, target, tmp_path / "h.db", transport, secret=SECRET) as listener,
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as http,
    ):
        yield Tunnel(listener, http)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_docs_handler_accepts_tunnelled_deliveries_and_rejects_tampering(
    tmp_path: Path, transport: str
) -> None:
    async with (
        serve(correct_handler(SECRET)) as handler_url,
        tunnel(handler_url, tmp_path, transport) as t,
    ):
        body = encode(sample("customer.at_risk"))
        assert await t.post(body) == (200, "ok")
        tampered = body.replace(b"customer", b"kustomer", 1)
        assert (await t.post(tampered, signed_body=body))[0] == 401
        assert [e.delivery.signature for e in t.forwarded()] == ["valid", "invalid"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_docs_handler_reads_every_types_record_from_data_object(
    tmp_path: Path, transport: str
) -> None:
    """Pivotal's own handler types the event as { id, type, data: { object } } and reads the
    record there: every sample, tunnelled, must be processed, not crash it."""
    handled = Handled()
    sent = []
    async with (
        serve(docs_handler(SECRET, handled)) as handler_url,
        tunnel(handler_url, tmp_path, transport) as t,
    ):
        for event_type in event_types():
            doc = sample(event_type)
            assert await t.post(encode(doc)) == (200, '"ok"'), event_type
            sent.append((doc["id"], doc["data"]["object"]["id"]))
    assert handled.events == sent


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_wrong_forward_path_gets_a_rule_naming_the_path_and_the_fix(
    tmp_path: Path, transport: str
) -> None:
    """`listen --forward 127.0.0.1:PORT` in front of Pivotal's handler: every delivery gets
    404 for /, and the rule line says so, with the --forward that reaches the handler."""
    async with serve(correct_handler(SECRET)) as handler_url:
        root = handler_url.removesuffix("/webhooks/pivotal")
        async with tunnel(root, tmp_path, transport) as t:
            assert (await t.post(encode(sample("customer.at_risk"))))[0] == 404
            (event,) = t.forwarded()
    # As --json prints it (listen's log lines and the inspector word the same rules).
    rules = delivery_json(event)["rules_broken"]
    netloc = root.removeprefix("http://")
    assert rules == [
        "Pivotal would retry: next attempt in ~5 s (404 is not 2xx; a 4xx is retried too)",
        "your handler answered 404 for /: is the path right? Pivotal's handlers live at "
        f"/webhooks/pivotal; restart with --forward {netloc}/webhooks/pivotal",
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_trigger_every_catalog_type_through_the_tunnel_is_valid(
    tmp_path: Path, hooktap_home: Path, transport: str
) -> None:
    async with (
        running_handler() as handler,
        running_relay(tmp_path / "relay") as relay,
        running_listener(
            relay, handler.url, tmp_path / "h.db", transport, secret=SECRET
        ) as listener,
    ):
        types = event_types()
        assert len(types) >= 20

        def trigger(event_type: str) -> None:
            # In this process (a thread, while the loop serves relay and listener): twenty
            # interpreter start-ups cost more than everything else here on a busy machine.
            args = [event_type, "--url", listener.webhook_url, "--secret", SECRET]
            result = CliRunner().invoke(trigger_cmd, args)
            assert result.exit_code == 0, result.output

        for event_type in types:  # one at a time: CliRunner swaps the process's stdout
            await asyncio.to_thread(trigger, event_type)
        await handler.wait_for(len(types))
        forwarded = [e.delivery for e in listener.events if isinstance(e, DeliveryForwarded)]
        assert sorted(d.event_type for d in forwarded) == sorted(types)
        assert {d.signature for d in forwarded} == {"valid"}, [
            (d.event_type, d.signature_reason) for d in forwarded if d.signature != "valid"
        ]


async def _hooktap(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hooktap",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_replay_an_hour_later_passes_the_docs_handler_and_as_is_does_not(
    tmp_path: Path, hooktap_home: Path
) -> None:
    import time

    from hooktap.pivotal.signing import sign

    async with (
        serve(correct_handler(SECRET)) as handler_url,
        running_relay(tmp_path / "relay") as relay,
        running_listener(relay, handler_url, hooktap_home / "history.db", secret=SECRET) as lst,
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as http,
    ):
        body = encode(sample("customer.churned"))
        an_hour_ago = int(time.time()) - 3600
        headers = [
            ("content-type", "application/json"),
            ("svix-id", "msg_hour_old"),
            ("svix-timestamp", str(an_hour_ago)),
            ("svix-signature", sign(SECRET, "msg_hour_old", an_hour_ago, body)),
        ]
        async with http.post(lst.webhook_url, data=body, headers=headers) as resp:
            assert resp.status == 401  # what the handler says to a stale signature
        (row,) = lst.store.query(None, limit=5)
        assert row.signature == "expired"

        code, _, err = await _hooktap("replay", row.id, "--secret", SECRET)
        assert code == 0, err
        edited = tmp_path / "edited.json"
        edited.write_bytes(body.replace(b'"customer.churned"', b'"customer.churned" ', 1))
        code, _, err = await _hooktap(
            "replay", row.id, "--secret", SECRET, "--body-file", str(edited)
        )
        assert code == 0, err
        code, out, err = await _hooktap("replay", row.id, "--as-is", "--json")
        assert code == 1 and "expired" in out  # it says the handler will see a stale signature
        replays = [a for a in lst.store.attempts(row.id) if a.kind == "replay"]
        assert [a.status for a in replays] == [200, 200, 401]
        assert replays[1].request_body == edited.read_bytes()
        # svix-id is kept, so the handler's idempotency sees the same message each time.
        for attempt in replays:
            assert ("svix-id", "msg_hour_old") in attempt.request_headers
        assert lst.store.first_attempt(row.id).status == 401  # the original is untouched
