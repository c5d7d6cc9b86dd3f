"""Every key of the inspector, pressed in a live session against a real handler."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from subprocess import PIPE

import pytest
from svix.webhooks import Webhook
from textual.command import CommandPalette
from textual.widgets import Input, TextArea
from tui_helpers import Session, live_app, rows, screen_text, settle, wait_until

from hooktap.records import Headers
from hooktap.tui.app import HooktapApp
from hooktap.tui.screens.editor import EditorScreen
from hooktap.tui.screens.filter import FilterScreen
from hooktap.tui.screens.help import HelpScreen
from hooktap.tui.widgets.delivery_list import DeliveryList


def app_of(pilot) -> HooktapApp:  # type: ignore[no-untyped-def]
    assert isinstance(pilot.app, HooktapApp)
    return pilot.app


def header(headers: Headers, name: str) -> str:
    return next(v for n, v in headers if n.lower() == name)


def verifies(secret: str, headers: Headers, body: bytes) -> bool:
    Webhook(secret).verify(
        body, {k: header(headers, k) for k in ("svix-id", "svix-timestamp", "svix-signature")}
    )
    return True


async def test_r_resends_re_signed_and_shows_the_attempt_under_the_row(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        old = int(time.time()) - 3600  # signed an hour ago: only a re-sign makes it pass
        session.handler.status = 500
        await session.send("customer.at_risk", timestamp=old)
        await rows(pilot, 1)
        rules = app.detail.query_one("#rules")
        await wait_until(pilot, lambda: "Pivotal would retry" in str(rules.render()))
        session.handler.status = 200
        await pilot.press("r")
        seen = await session.handler.wait_for(2)
        original, resent = seen
        assert resent.body == original.body
        assert header(resent.raw_headers, "svix-id") == header(original.raw_headers, "svix-id")
        assert int(header(resent.raw_headers, "svix-timestamp")) >= int(time.time()) - 60
        assert verifies(session.secret, resent.raw_headers, resent.body)
        lst = app.deliveries
        await wait_until(pilot, lambda: lst.rows[0].attempts == 2 and lst.replays)
        await wait_until(pilot, lambda: "└ re-sent" in screen_text(app))
        assert app.detail.active_tab == "attempts"
        await wait_until(pilot, lambda: "#2  replay" in screen_text(app))
        text = screen_text(app)
        assert "re-signed" in text and "-500" in text and "+200" in text
        # The handler takes it now: the retry warning is history; the signature's still holds.
        await wait_until(pilot, lambda: "✓ re-sent" in str(rules.render()))
        assert "Pivotal would retry" not in str(rules.render())
        assert "signature expired" in str(rules.render())
        # The same function as `hooktap replay` recorded it.
        attempts = session.store.attempts(lst.rows[0].id)
        assert [a.kind for a in attempts] == ["forward", "replay"]
        assert attempts[1].note == "re-signed"


async def test_e_edits_flags_invalid_json_then_sends_re_signed(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("task.completed")
        await rows(pilot, 1)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen))
        editor = app.screen
        assert isinstance(editor, EditorScreen)
        body_area = editor.query_one("#editor-body", TextArea)
        assert body_area.language == "json"  # highlighting: tree-sitter-json loaded, no crash
        original = session.handler.seen[0].body
        assert body_area.text == original.decode()  # the exact bytes, not pretty-printed
        doc = json.loads(original)
        doc["data"]["status"] = "reopened"
        body_area.text = json.dumps(doc)[:-1]  # cut the closing brace
        await pilot.pause()
        status = editor.query_one("#editor-status")
        assert "invalid JSON at line 1" in str(status.render())
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, EditorScreen)  # flagged, not sent
        assert "ctrl+s again sends it anyway" in str(status.render())
        body_area.text = json.dumps(doc)
        headers_area = editor.query_one("#editor-headers", TextArea)
        headers_area.text += "\nX-Debug: from-the-editor"
        await pilot.pause()
        assert "valid JSON" in str(status.render())
        await pilot.press("ctrl+s")
        seen = await session.handler.wait_for(2)
        sent = seen[1]
        assert json.loads(sent.body)["data"]["status"] == "reopened"
        assert header(sent.raw_headers, "x-debug") == "from-the-editor"
        assert verifies(session.secret, sent.raw_headers, sent.body)
        await wait_until(pilot, lambda: "edited body and headers, re-signed" in screen_text(app))
        assert '+    "status": "reopened"' in screen_text(app) or "reopened" in screen_text(app)


async def test_ctrl_e_hands_the_body_to_editor(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "fake_editor.py"
    script.write_text(
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "p.write_text(p.read_text().replace('task.completed', 'task.reopened'))\n"
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.delenv("VISUAL", raising=False)
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("task.completed")
        await rows(pilot, 1)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen))
        area = app.screen.query_one("#editor-body", TextArea)
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: "task.reopened" in area.text, what="$EDITOR's change")
        await pilot.press("escape")  # edited: the first esc only warns
        assert "esc again discards them" in screen_text(app)
        await pilot.press("escape")  # cancel: nothing is sent
        await wait_until(pilot, lambda: not isinstance(app.screen, EditorScreen))
        assert len(session.handler.seen) == 1
        # ctrl+e on the list goes straight to $EDITOR; ctrl+s sends what it saved.
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: isinstance(app.screen, EditorScreen))
        area = app.screen.query_one("#editor-body", TextArea)
        await wait_until(
            pilot,
            lambda: "task.reopened" in area.text,
            what=f"$EDITOR's change {[n.message for n in app._notifications]}",
        )
        await pilot.press("ctrl+s")
        seen = await session.handler.wait_for(2)
        assert b"task.reopened" in seen[1].body


async def test_slash_filters_by_type_status_verdict_and_text(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("customer.updated", body=b'{"type":"customer.updated","n":"acme"}')
        session.handler.status = 500
        await session.send("customer.churned", body=b'{"type":"customer.churned","n":"acme"}')
        await session.send("customer.churned", body=b'{"type":"customer.churned","n":"zeta"}')
        await session.send("task.completed", secret="whsec_" + "B" * 32)
        await rows(pilot, 4)
        await pilot.press("slash")
        await wait_until(pilot, lambda: isinstance(app.screen, FilterScreen))
        field = app.screen.query_one(Input)
        field.value = "type:customer.* status:nope"
        await pilot.pause()
        assert "bad status 'nope'" in screen_text(app)
        field.value = "type:customer.* status:5xx acme"
        await pilot.press("enter")
        lst = app.deliveries
        await wait_until(pilot, lambda: len(lst.rows) == 1, what="the filtered list")
        assert lst.rows[0].event_type == "customer.churned" and lst.rows[0].status == 500
        await wait_until(pilot, lambda: "1 delivery match" in screen_text(app))
        await pilot.press("slash")
        await wait_until(pilot, lambda: isinstance(app.screen, FilterScreen))
        app.screen.query_one(Input).value = "sig:invalid"
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(lst.rows) == 1 and lst.rows[0].signature == "invalid")
        await pilot.press("escape")  # clears the filter
        await wait_until(pilot, lambda: len(lst.rows) == 4)


async def test_c_copies_a_curl_command_that_works(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("onboarding.delayed", timestamp=int(time.time()) - 3600)
        await rows(pilot, 1)
        await wait_until(pilot, lambda: app._detail_data is not None)
        await pilot.press("c")
        await wait_until(pilot, lambda: app.clipboard.startswith("curl"))
        command = app.clipboard
        assert f"{session.handler.url}/webhooks/pivotal" in command
        assert "-H 'svix-signature: v1," in command and "--data-binary '" in command
        # Run it as a user would paste it (asynchronously: the handler shares this loop).
        curl = await asyncio.create_subprocess_exec("bash", "-c", command, stdout=PIPE, stderr=PIPE)
        out, err = await asyncio.wait_for(curl.communicate(), 20)
        assert curl.returncode == 0, err
        assert out == b"ok"
        seen = await session.handler.wait_for(2)
        assert seen[1].body == seen[0].body
        assert verifies(session.secret, seen[1].raw_headers, seen[1].body)  # re-signed fresh


async def test_y_copies_the_body_and_u_the_webhook_url(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("phase.changed")
        await rows(pilot, 1)
        await pilot.press("y")
        await wait_until(pilot, lambda: app.clipboard == session.handler.seen[0].body.decode())
        await pilot.press("u")
        assert app.clipboard == session.webhook_url
        app.copy_to_clipboard("")
        await pilot.click("#webhook-url")  # the mouse does the same
        assert app.clipboard == session.webhook_url


async def test_p_pauses_forwarding_at_the_relay_and_resumes(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: "‖ paused" in screen_text(app))
        assert session.listener.paused
        resp = await session.send("task.updated")
        assert resp.status == 202  # held and queued at the relay
        await pilot.pause(0.3)
        assert session.handler.seen == [] and app.deliveries.rows == []
        await pilot.press("p")
        await session.handler.wait_for(1)
        await rows(pilot, 1)
        await wait_until(pilot, lambda: "‖ paused" not in screen_text(app))


async def test_question_mark_lists_every_key(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = str(app.screen.query_one("#help-text").render())
        for binding in [*HooktapApp.BINDINGS, *DeliveryList.BINDINGS, *EditorScreen.BINDINGS]:
            assert binding.description in text  # type: ignore[union-attr]
        assert "q ctrl+c" in text and "Mouse" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_lists_and_runs_every_action(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        assert len(titles) == len(set(titles)), titles  # "Keys" once, not Textual's too
        for binding in HooktapApp.BINDINGS:
            assert binding.description in titles  # type: ignore[union-attr]
        helps = {c.title: c.help for c in commands}
        # hooktap's own Quit and Theme, with their keys; not Textual's under other words.
        assert helps["Quit"] == "key: q ctrl+c" and helps["Theme"] == "key: t"
        assert helps["Keys"] == "key: ?"
        await session.send("task.completed")
        await rows(pilot, 1)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Re-send")
        await wait_until(pilot, lambda: "Re-send" in screen_text(app))
        await pilot.pause(0.2)
        await pilot.press("enter")
        await session.handler.wait_for(2)


async def test_mouse_selects_rows_and_tabs(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        for kind in ("task.created", "task.updated", "task.completed"):
            await session.send(kind)
        await rows(pilot, 3)
        await settle(pilot)
        await pilot.click(DeliveryList, offset=(5, 2))
        lst = app.deliveries
        assert lst.cursor == 2 and lst.selected is not None
        assert lst.selected.event_type == "task.created" and not lst.following
        await pilot.click("#tabs Tab#--content-tab-signature")
        assert app.detail.active_tab == "signature"
        await wait_until(pilot, lambda: "task.created" in screen_text(app))


async def test_t_opens_the_theme_picker_and_themes_apply(session: Session) -> None:
    async with live_app(session) as pilot:
        app = app_of(pilot)
        await session.send("task.completed")
        await rows(pilot, 1)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press("escape")
        app.theme = "textual-light"
        await pilot.pause()
        assert "task.completed" in screen_text(app)
