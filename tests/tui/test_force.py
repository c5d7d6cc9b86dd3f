"""The inspector asks before re-signing a delivery whose original signature did not match.

A live session at 80x24 (a real relay, listener and handler): a payload is posted to the public
URL with Pivotal's real headers from another body, the listener stores it as invalid, and `r`,
`e` and `c` must not turn it into a genuine-looking request without the user's `y`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from svix.webhooks import Webhook
from textual.pilot import Pilot
from textual.widgets import Label, TextArea
from tui_helpers import Session, live_app, rows, screen_text, settle, wait_until

from hooktap.pivotal.signing import signed_headers
from hooktap.replay import FORCED
from hooktap.tui.app import HooktapApp
from hooktap.tui.screens.confirm import ForceScreen
from hooktap.tui.screens.editor import EditorScreen

SMALL = (80, 24)
# A literal body: the test is about signatures, not about the catalog's sample data.
GENUINE = (
    b'{"id":"evt_force01","type":"customer.at_risk","created_at":"2025-06-15T15:00:00Z",'
    b'"data":{"object":{"id":"cus_2gT8kP4mQx7N","object":"customer","health_score":12}}}'
)
FORGED = GENUINE.replace(b'"health_score":12', b'"health_score":99')


@contextlib.asynccontextmanager
async def showing_forged(session: Session) -> AsyncIterator[tuple[Pilot[None], HooktapApp]]:
    """The inspector at 80x24, once it lists a delivery posted with real signed headers for
    GENUINE but carrying FORGED: what anyone can send to the public URL."""
    async with live_app(session, size=SMALL) as pilot:
        assert isinstance(pilot.app, HooktapApp)
        await session.send(body=FORGED, headers=signed_headers(session.secret, GENUINE))
        await rows(pilot, 1)
        assert pilot.app.deliveries.rows[0].signature == "invalid"
        yield pilot, pilot.app


async def replay_note(pilot: Pilot[None], session: Session) -> str:
    """The note of the one re-send recorded for the listed delivery, once it is recorded."""
    app = pilot.app
    assert isinstance(app, HooktapApp)
    delivery_id = app.deliveries.rows[0].id
    await wait_until(pilot, lambda: len(session.store.attempts(delivery_id)) == 2)
    return session.store.attempts(delivery_id)[1].note


def verifies(secret: str, headers: list[tuple[str, str]], body: bytes) -> bool:
    wanted = ("svix-id", "svix-timestamp", "svix-signature")
    Webhook(secret).verify(body, {n.lower(): v for n, v in headers if n.lower() in wanted})
    return True


async def test_r_then_n_sends_nothing(session: Session) -> None:
    async with showing_forged(session) as (pilot, app):
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ForceScreen), what="the question")
        text = str(app.screen.query_one("#force-text", Label).render())
        assert text == (
            "Its original signature did not match your secret: no signature matches the "
            "secret. Re-signing would make it look genuine to your handler. Send anyway? y/n"
        )
        shown = screen_text(app)  # on screen, whole, at 80x24
        assert "Send anyway? y/n" in shown and "y sends it re-signed · n or esc" in shown
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ForceScreen))
        await settle(pilot)
        await pilot.pause(0.3)  # time enough for a wrongly started re-send to arrive
        assert len(session.handler.seen) == 1  # only the original forward
        delivery_id = app.deliveries.rows[0].id
        assert [a.kind for a in session.store.attempts(delivery_id)] == ["forward"]


async def test_r_then_y_sends_once_re_signed_and_says_forced(session: Session) -> None:
    async with showing_forged(session) as (pilot, app):
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ForceScreen))
        await pilot.press("y")
        seen = await session.handler.wait_for(2)
        assert seen[1].body == FORGED
        assert verifies(session.secret, seen[1].raw_headers, seen[1].body)  # what y agreed to
        assert await replay_note(pilot, session) == f"{FORCED} (no signature matches the secret)"
        await settle(pilot)
        await pilot.pause(0.3)
        assert len(session.handler.seen) == 2  # once, not again
        assert not isinstance(app.screen, ForceScreen)


async def test_e_asks_before_the_editor_and_y_sends_the_edit_forced(session: Session) -> None:
    async with showing_forged(session) as (pilot, app):
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ForceScreen))
        await pilot.press("escape")  # no: no editor, nothing sent
        await wait_until(pilot, lambda: not isinstance(app.screen, ForceScreen))
        await pilot.pause(0.1)
        assert not isinstance(app.screen, EditorScreen)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ForceScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen))
        assert "Forced (you answered y): ctrl+s re-signs it" in screen_text(app)
        area = app.screen.query_one("#editor-body", TextArea)
        area.text = area.text.replace('"health_score":99', '"health_score":98')
        await pilot.pause()
        await pilot.press("ctrl+s")
        seen = await session.handler.wait_for(2)
        assert b'"health_score":98' in seen[1].body
        assert verifies(session.secret, seen[1].raw_headers, seen[1].body)
        assert (await replay_note(pilot, session)).startswith(f"edited body, {FORCED}")


async def test_a_genuine_old_delivery_is_re_sent_without_a_question(session: Session) -> None:
    async with live_app(session, size=SMALL) as pilot:
        app = pilot.app
        assert isinstance(app, HooktapApp)
        await session.send(body=GENUINE, timestamp=int(time.time()) - 3600)
        await rows(pilot, 1)
        assert app.deliveries.rows[0].signature == "expired"
        await pilot.press("r")
        seen = await session.handler.wait_for(2)
        assert verifies(session.secret, seen[1].raw_headers, seen[1].body)
        assert not isinstance(app.screen, ForceScreen)


async def test_c_copies_a_forged_delivery_with_its_stored_signature(session: Session) -> None:
    async with showing_forged(session) as (pilot, app):
        await wait_until(pilot, lambda: app._detail_data is not None)
        await pilot.press("c")
        await wait_until(pilot, lambda: app.clipboard.startswith("curl"))
        stored = dict((n.lower(), v) for n, v in session.handler.seen[0].raw_headers)
        assert f"svix-signature: {stored['svix-signature']}" in app.clipboard
        assert f"svix-timestamp: {stored['svix-timestamp']}" in app.clipboard
        delivery_id = app.deliveries.rows[0].id
        messages = [n.message for n in app._notifications]
        assert any(
            "not re-signed" in m
            and "your handler will reject it" in m
            and f"hooktap replay {delivery_id} --force" in m
            for m in messages
        ), messages
        assert not isinstance(app.screen, ForceScreen)
