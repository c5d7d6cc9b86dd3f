"""`replay` with --forward and a hooktap.toml that has `events`: the flags alone decide where
each replay goes (the file's events must not refuse what --forward was given to send), and
a set's summary counts the ones today's routing filtered out apart from the ones sent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hooktap.cli.replay_cmd import replay_cmd
from hooktap.home import history_db
from hooktap.pivotal.catalog import encode, sample
from hooktap.records import Delivery
from hooktap.store import Store
from support.history import record
from support.servers import running_handler
from test_har import an_entry, har_doc

TOML = """[listen]
forward = ["localhost:9/webhooks/pivotal"]
events = ["customer.*"]
"""


async def hooktap(*args: str) -> Result:
    """The command in a thread: it runs asyncio.run itself, and the handler it sends to is
    served by this test's loop."""
    return await asyncio.to_thread(CliRunner().invoke, replay_cmd, list(args))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "hooktap.toml").write_text(TOML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def stored(delivery_id: str, event_type: str, state: str, target: str = "") -> Delivery:
    """A delivery in this test's history, as the listener left it: unsigned, recent."""
    delivery = Delivery(
        id=delivery_id,
        received_at=time.time() - 60,
        method="POST",
        path="",
        query="",
        headers=[("Content-Type", "application/json")],
        body=encode(sample(event_type)),
        signature="unsigned",
        event_type=event_type,
        target=target,
        state=state,
    )
    with Store(history_db()) as store:
        assert record(store, delivery)
    return delivery


def filtered_delivery() -> str:
    """A task.completed the listener stored as filtered (no target), as with --events."""
    return stored("dlv_filtered", "task.completed", "filtered").id


async def test_forward_sends_a_delivery_the_files_events_filter_out(project: Path) -> None:
    delivery_id = filtered_delivery()
    async with running_handler() as handler:
        result = await hooktap(delivery_id, "-f", handler.url + "/hooks")
        assert result.exit_code == 0, result.output
        assert [s.path_qs for s in handler.seen] == ["/hooks"]
        # Without --forward the file's events are in force: refused, the hint said once.
        refused = await hooktap(delivery_id)
    assert refused.exit_code == 2
    assert "task.completed is filtered out" in refused.output
    assert refused.output.count("--forward TARGET sends it anyway") == 1, refused.output


async def test_the_summary_counts_what_routing_did_not_send_apart(
    project: Path, tmp_path: Path
) -> None:
    har_file = tmp_path / "three.har"
    types = ["customer.updated", "task.completed", "customer.created"]
    har_file.write_bytes(
        har_doc(
            *(
                an_entry(
                    postData={"mimeType": "application/json", "text": encode(sample(t)).decode()}
                )
                for t in types
            )
        )
    )
    async with running_handler() as handler:
        (project / "hooktap.toml").write_text(TOML.replace("localhost:9", handler.url))
        result = await hooktap("--har", str(har_file))
    assert result.exit_code == 1, result.output  # not everything was sent
    assert len(handler.seen) == 2
    assert "Replayed 2: 2 got a 2xx, 0 did not. 1 not sent: filtered/unrouted." in result.stderr


async def test_a_stored_set_counts_what_routing_did_not_send_apart(project: Path) -> None:
    """`replay --since` over history: a delivery today's events filter out is not counted as
    sent and failed."""
    filtered = filtered_delivery()
    body = stored(
        "dlv_customer", "customer.updated", "done", "http://localhost:9/webhooks/pivotal"
    ).body
    async with running_handler() as handler:
        (project / "hooktap.toml").write_text(TOML.replace("localhost:9", handler.url))
        result = await hooktap("--since", "1h", "--as-is")
    assert result.exit_code == 1, result.output  # one was not sent
    assert [s.body for s in handler.seen] == [body]
    assert "Replayed 1: 1 got a 2xx, 0 did not. 1 not sent: filtered/unrouted." in result.stderr
    assert filtered in result.output
