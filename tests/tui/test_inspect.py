"""`hooktap inspect`: the stored history with no listener, re-sends included."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner
from tui_helpers import screen_text, wait_until

from hooktap.cli.inspect_cmd import inspect_cmd
from hooktap.listen import state as listener_state
from hooktap.pivotal import catalog
from hooktap.pivotal.signing import signed_headers
from hooktap.records import Attempt, Delivery
from hooktap.store import Store
from hooktap.tui.app import HooktapApp
from support.history import finish, record
from support.servers import running_handler


def store_delivery(store: Store, n: int, target: str, secret: str, status: int = 200) -> str:
    body = catalog.encode(catalog.sample("customer.updated"))
    received = time.time() - 86400 + n
    headers = [("Host", "relay.example"), *signed_headers(secret, body, timestamp=int(received))]
    d = Delivery(
        id=f"dlv_{n:04d}",
        received_at=received,
        method="POST",
        path="",
        query="",
        headers=headers,
        body=body,
        target=target,
        signature="valid",
        svix_id=f"msg_{n}",
        event_type="customer.updated",
        state="dispatched",
    )
    record(store, d)
    finish(store, d.id, Attempt(d.id, "forward", received, target, status=status, duration_ms=4))
    return d.id


async def test_inspect_browses_history_and_resends_to_the_stored_target(
    tmp_path: Path, secret: str
) -> None:
    async with running_handler() as handler:
        store = Store(tmp_path / "history.db")
        for n in range(3):
            store_delivery(store, n, handler.url + "/hooks", secret, status=500)
        app = HooktapApp(store, secret=secret, utc=True)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_until(pilot, lambda: len(app.deliveries.rows) == 3)
            await wait_until(pilot, lambda: "■ history only" in screen_text(app))
            await wait_until(
                pilot,
                lambda: "stored: received 3 · forwarded 0 · failed 3" in screen_text(app),
            )
            await pilot.press("r")
            seen = await handler.wait_for(1)
            assert seen[0].path_qs == "/hooks"
            await wait_until(pilot, lambda: app.deliveries.rows[0].attempts == 2)
            # `p` has nothing to pause here: shown disabled, and pressing it changes nothing.
            assert app.check_action("pause", ()) is None
            await pilot.press("p")
            # Rows another process stores (a `hooktap listen --no-tui`) show up by themselves.
            writer = Store(tmp_path / "history.db")
            store_delivery(writer, 9, handler.url, secret)
            writer.close()
            await wait_until(pilot, lambda: app.deliveries.rows[0].id == "dlv_0009", timeout=5)
            await pilot.press("q")
        store.close()


def test_inspect_command_needs_a_terminal_and_has_an_example() -> None:
    runner = CliRunner()
    result = runner.invoke(inspect_cmd, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "hooktap inspect --filter" in result.output
    assert "PIVOTAL_WEBHOOK_SECRET" in result.output
    result = runner.invoke(inspect_cmd, [])
    assert result.exit_code == 2
    assert "needs a terminal" in result.output


async def test_inspect_resends_one_that_went_nowhere_where_the_running_listeners_routes_say(
    tmp_path: Path, secret: str
) -> None:
    """An unrouted delivery has no stored target; as `hooktap replay` does, the routes of the
    listener running now (its listener.json) decide where it goes."""
    async with running_handler() as customers:
        store = Store(tmp_path / "history.db")
        body = catalog.encode(catalog.sample("customer.updated"))
        d = Delivery(
            id="dlv_unrouted",
            received_at=time.time() - 60,
            method="POST",
            path="",
            query="",
            headers=[("Host", "relay.example"), *signed_headers(secret, body)],
            body=body,
            signature="valid",
            event_type="customer.updated",
            state="unrouted",
        )
        record(store, d)
        listener_state.write(
            "http://127.0.0.1:8787/c/x",
            "http://localhost:9/none",
            "",
            routes=["task.*=localhost:9/none", f"customer.*={customers.url}/hooks"],
        )
        try:
            app = HooktapApp(store, secret=secret, utc=True)
            async with app.run_test(size=(140, 40)) as pilot:
                await wait_until(pilot, lambda: len(app.deliveries.rows) == 1)
                assert "unrouted" in screen_text(app)
                await wait_until(
                    pilot,
                    lambda: (
                        "received 1 · forwarded 0 · failed 0 · not forwarded 1" in screen_text(app)
                    ),
                    what="the counts",
                )
                await wait_until(pilot, lambda: app.detail_settled)
                await pilot.press("r")
                (seen,) = await customers.wait_for(1)
        finally:
            listener_state.clear()
            store.close()
    assert seen.path_qs == "/hooks" and seen.body == body
