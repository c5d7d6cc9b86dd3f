"""`e`: change a delivery's body or headers, then send it through the one replay function.

The body starts as the exact text that arrived (not pretty-printed: an untouched body must go
out byte for byte, and the signature covers bytes). JSON is checked as you type, so a stray
comma is flagged before sending; sending it anyway takes a second ctrl+s, because testing a
handler against malformed JSON is a fair thing to want. ctrl+e hands the text to $EDITOR.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, TextArea

from hooktap.records import Delivery, Headers, header_value

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass
class EditResult:
    """What to send: the body as bytes; headers None when they were left alone."""

    body: bytes
    headers: Headers | None


def headers_to_text(headers: Headers) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers)


def parse_headers(text: str) -> Headers:
    """`Name: value` per line; ValueError names the line, since a bad header cannot be sent."""
    out: Headers = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise ValueError(f"headers line {number}: write it as Name: value")
        value = value.strip()
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"headers line {number}: only Latin-1 characters fit in a header"
            ) from None
        out.append((name, value))
    return out


def json_problem(text: str) -> str | None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    return None


def looks_json(delivery: Delivery) -> bool:
    content_type = header_value(delivery.headers, "content-type") or ""
    return "json" in content_type.lower() or delivery.body.lstrip()[:1] in (b"{", b"[")


def editor_command() -> list[str]:
    return shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")


async def edit_externally(app: App[object], text: str, suffix: str) -> str:
    """Run $EDITOR on `text` and return what was saved.

    The editor runs as an asyncio subprocess, so the listener sharing this loop keeps
    forwarding while the user is in vim; the app only stops drawing (suspend). Where there is
    no terminal to hand over (headless tests), the editor just runs.
    """
    fd, name = tempfile.mkstemp(prefix="hooktap-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(SuspendNotSupported):
                stack.enter_context(app.suspend())
            process = await asyncio.create_subprocess_exec(*editor_command(), str(path))
            code = await process.wait()
        if code != 0:
            raise RuntimeError(f"{editor_command()[0]} exited with status {code}; edit discarded")
        return path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)


class EditorScreen(Screen[EditResult | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "send", "Send", priority=True),
        Binding("ctrl+e", "external", "$EDITOR", priority=True),
        Binding("ctrl+o", "format", "Format JSON", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self, delivery: Delivery, sign_note: str, *, external: bool = False) -> None:
        super().__init__()
        self.external = external  # open $EDITOR straight away (ctrl+e on the list)
        self.delivery = delivery
        self.sign_note = sign_note
        self.json = looks_json(delivery)
        self.original_text = delivery.body.decode("utf-8")  # the app checks it decodes
        self.original_headers = headers_to_text(delivery.headers)
        # What the text areas hold before any edit (they may normalise line endings); an
        # unchanged body is sent as the original bytes, not as re-encoded text.
        self._loaded_body = self.original_text
        self._loaded_headers = self.original_headers
        self._confirm_text: str | None = None
        self._confirm_cancel = False

    def compose(self) -> ComposeResult:
        d = self.delivery
        with Vertical(id="editor"):
            yield Label(
                f"Edit and re-send {d.id} ({d.event_type or 'not a Pivotal event'})",
                id="editor-title",
                markup=False,
            )
            yield Label(self.sign_note, id="editor-sign", markup=False)
            yield Label("Headers — one per line, Name: value", classes="editor-section")
            yield TextArea(self.original_headers, id="editor-headers", soft_wrap=False)
            yield Label("Body", classes="editor-section")
            yield TextArea.code_editor(
                self.original_text, language="json" if self.json else None, id="editor-body"
            )
            yield Label("", id="editor-status", markup=False)
            with Horizontal(id="editor-buttons"):
                yield Button("Send (ctrl+s)", id="send", variant="primary")
                yield Button("$EDITOR (ctrl+e)", id="external")
                yield Button("Format JSON (ctrl+o)", id="format", disabled=not self.json)
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        body = self.query_one("#editor-body", TextArea)
        # TextArea's syntax themes do not follow the app's; pick one of the right brightness.
        body.theme = "vscode_dark" if self.app.current_theme.dark else "github_light"
        self._loaded_body = body.text
        self._loaded_headers = self.query_one("#editor-headers", TextArea).text
        body.focus()
        self._check()
        if self.external:
            self.action_external(body)

    @property
    def body_text(self) -> str:
        return self.query_one("#editor-body", TextArea).text

    @property
    def headers_text(self) -> str:
        return self.query_one("#editor-headers", TextArea).text

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self._confirm_text = None
        self._confirm_cancel = False
        self._check()

    def _problems(self) -> tuple[str | None, str | None]:
        """(blocking problem, warning): bad headers block, bad JSON only warns."""
        try:
            parse_headers(self.headers_text)
        except ValueError as exc:
            return str(exc), None
        return None, json_problem(self.body_text) if self.json else None

    def _check(self) -> None:
        blocking, warning = self._problems()
        status = self.query_one("#editor-status", Label)
        size = len(self.body_text.encode("utf-8"))
        if blocking:
            status.update(f"✕ {blocking}")
            status.set_classes("error")
        elif warning:
            status.update(f"✕ {warning}")
            status.set_classes("error")
        else:
            kind = "valid JSON" if self.json else "text"
            hint = " · ctrl+o pretty-prints it (the bytes change)" if self.json else ""
            status.update(f"✓ {kind}, {size:,} bytes{hint}")
            status.set_classes("fine")

    def action_send(self) -> None:
        blocking, warning = self._problems()
        if blocking:
            self.app.bell()
            return
        body_text = self.body_text
        if warning and self._confirm_text != body_text:
            self._confirm_text = body_text
            status = self.query_one("#editor-status", Label)
            status.update(f"✕ {warning} — ctrl+s again sends it anyway")
            self.app.bell()
            return
        body = self.delivery.body if body_text == self._loaded_body else body_text.encode()
        headers_text = self.headers_text
        headers = None if headers_text == self._loaded_headers else parse_headers(headers_text)
        self.dismiss(EditResult(body, headers))

    def action_cancel(self) -> None:
        """Leave without sending; edits are not thrown away on one stray keypress."""
        edited = self.body_text != self._loaded_body or self.headers_text != self._loaded_headers
        if edited and not self._confirm_cancel:
            self._confirm_cancel = True
            status = self.query_one("#editor-status", Label)
            status.update("Unsent changes: esc again discards them, ctrl+s sends them.")
            status.set_classes("error")
            return
        self.dismiss(None)

    def action_format(self) -> None:
        if not self.json or json_problem(self.body_text):
            self.app.bell()
            return
        area = self.query_one("#editor-body", TextArea)
        area.text = json.dumps(json.loads(self.body_text), indent=2, ensure_ascii=False)

    def action_external(self, area: TextArea | None = None) -> None:
        """$EDITOR on the focused text (headers or body; the body when neither has focus)."""
        if area is None:
            focused = self.focused
            area = focused if isinstance(focused, TextArea) else None
        area = area or self.query_one("#editor-body", TextArea)
        self.run_worker(self._external(area), exclusive=True, group="external-editor")

    async def _external(self, area: TextArea) -> None:
        suffix = ".json" if area.id == "editor-body" and self.json else ".txt"
        try:
            text = await edit_externally(self.app, area.text, suffix)
        except (OSError, RuntimeError) as exc:
            self.notify(f"$EDITOR failed: {exc}", severity="error", markup=False)
            return
        area.text = text
        area.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "send": self.action_send,
            "external": self.action_external,
            "format": self.action_format,
            "cancel": self.action_cancel,
        }
        actions[event.button.id or "cancel"]()
