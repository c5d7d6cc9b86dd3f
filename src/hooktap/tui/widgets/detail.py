"""The detail pane: one delivery, loaded only when selected, in four tabs.

Above the tabs sit the rules the delivery broke, worded as the log lines and JSON stream word
them (hooktap.pivotal.rules), because "Pivotal would retry this in ~5 s" is the thing to see
first and ngrok's inspector never says it. Colours are theme variables, so every theme works.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.highlight import highlight
from textual.widgets import Label, Static, TabbedContent, TabPane, Tabs

from hooktap.listen.routes import not_forwarded_reason
from hooktap.records import Attempt, Delivery, Headers
from hooktap.tui import present
from hooktap.tui.widgets.scroll import DetailScroll

TABS = ("request", "response", "attempts", "signature")
EMPTY = (
    "No delivery selected. New deliveries show up above as they arrive; "
    "`hooktap trigger customer.updated` sends a signed sample."
)


@dataclass
class DetailData:
    """What the app loaded for the selected row: the whole delivery and every attempt."""

    delivery: Delivery
    attempts: list[Attempt]
    duplicate: bool
    replay_note: str  # what `r` would do (re-signed, or sent with the stored signature)

    @property
    def forward(self) -> Attempt | None:
        return next((a for a in self.attempts if a.kind == "forward"), None)


def _reason(status: int | None) -> str:
    try:
        return HTTPStatus(status).phrase if status is not None else ""
    except ValueError:
        return ""


def _headers(headers: Headers) -> Content:
    if not headers:
        return Content.styled("(no headers)", "$text-muted")
    width = min(28, max(len(name) for name, _ in headers))
    lines = [
        Content.assemble((f"{name:<{width}} ", "$text-primary"), value)
        for name, value in present.headers_lines(headers)
    ]
    return Content("\n").join(lines)


def _body(body: bytes) -> Content:
    view = present.body_view(body)
    note = Content.styled(view.note, "$text-muted italic")
    if view.kind == "empty":
        return note
    if view.kind == "json" and len(view.text) <= present.HIGHLIGHT_LIMIT:
        shown = highlight(view.text, language="json")
    else:
        shown = Content(view.text)
    return Content("\n").join([note, shown])


def _section(title: str) -> Content:
    return Content.styled(title, "bold $text-accent")


def _join(*parts: Content | str) -> Content:
    return Content("\n").join([Content(p) if isinstance(p, str) else p for p in parts])


class DetailPane(Vertical):
    _data: DetailData | None = None
    _utc = False
    _stale: set[str] = set()  # noqa: RUF012 (replaced per instance in show())

    def compose(self) -> ComposeResult:
        yield Label(EMPTY, id="detail-title", markup=False)
        yield Static("", id="rules")
        with TabbedContent(initial="request", id="tabs"):
            for tab in TABS:
                with TabPane(tab.capitalize(), id=tab), DetailScroll(id=f"{tab}-scroll"):
                    yield Static("", id=f"{tab}-body")

    def on_mount(self) -> None:
        # Focus goes to the open tab's text, never to the tab strip: there the keys a reader
        # presses (down, page down, space) would do nothing. 1-4 and left/right switch tabs.
        self.query_one(Tabs).can_focus = False

    def focus_content(self) -> None:
        self.query_one(f"#{self.active_tab}-scroll", DetailScroll).focus()

    def show_tab(self, tab: str) -> None:
        reading = self.has_focus_within
        self.query_one(TabbedContent).active = tab
        self._render_tab(tab)
        if reading:
            self.focus_content()  # the text that was being read is hidden now: read this one

    def on_detail_scroll_step_tab(self, message: DetailScroll.StepTab) -> None:
        at = TABS.index(self.active_tab)
        self.show_tab(TABS[(at + message.step) % len(TABS)])

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    def clear(self, message: str = EMPTY) -> None:
        self._data = None
        self.query_one("#detail-title", Label).update(message)
        self.query_one("#rules", Static).update("")
        for tab in TABS:
            self.query_one(f"#{tab}-body", Static).update("")

    def show(self, data: DetailData, *, utc: bool) -> None:
        """Show a delivery; only the open tab is rendered now, the others when opened.

        Each rendered tab costs a layout pass; under a 500/s feed that adds up.
        """
        d = data.delivery
        request = f"{d.method} {d.path or '/'}" + (f"?{d.query}" if d.query else "")
        # Where it went comes early, so 80 columns show it: with routes it differs by type.
        where = d.state if d.state in present.NOT_FORWARDED else present.target_text(d.target)
        title = " · ".join(
            part
            for part in (
                d.id,
                d.event_type or "(not a Pivotal event)",
                f"→ {where}" if where else "",
                d.event_id or "",
                present.full_time(d.received_at, utc),
                request,
            )
            if part
        )
        self.query_one("#detail-title", Label).update(title)
        self._data, self._utc = data, utc
        self._show_rules(data)
        self._stale = set(TABS)
        self._render_tab(self.active_tab)

    def _render_tab(self, tab: str) -> None:
        if self._data is None or tab not in self._stale:
            return
        self._stale.discard(tab)
        data, utc = self._data, self._utc
        content = {
            "request": lambda: self._request(data.delivery),
            "response": lambda: self._response(data, utc),
            "attempts": lambda: self._attempts(data, utc),
            "signature": lambda: self._signature(data),
        }[tab]()
        self.query_one(f"#{tab}-body", Static).update(content)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._render_tab(event.pane.id)

    def _show_rules(self, data: DetailData) -> None:
        d, forward = data.delivery, data.forward
        settled = present.settled_by(data.attempts)
        broken = present.rules(d, forward, data.duplicate, settled=settled is not None)
        rules = self.query_one("#rules", Static)
        lines = [Content.styled(f"⚠ {rule}", "$text-warning") for rule in broken]
        if d.state in present.NOT_FORWARDED and forward is None and settled is None:
            why = Content.styled(f"⊘ {not_forwarded_reason(d.state)}", "$text-muted")
            rules.update(Content("\n").join([why, *lines]))
            rules.set_classes("broken" if broken else "not-forwarded")
        elif settled is not None:  # a warning about a failure the handler no longer has is stale
            lines.insert(0, Content.styled(self._settled_text(settled, forward), "$text-success"))
            rules.update(Content("\n").join(lines))
            rules.set_classes("broken" if broken else "fine")
        elif broken:
            rules.update(Content("\n").join(lines))
            rules.set_classes("broken")
        elif forward is None:
            rules.update(Content.styled("… waiting for the handler's answer", "$text-muted"))
            rules.set_classes("pending")
        else:
            took = present.duration_text(forward.duration_ms)
            rules.update(
                Content.styled(
                    f"✓ delivered as Pivotal expects: {forward.status} in {took}, "
                    f"signature {d.signature}",
                    "$text-success",
                )
            )
            rules.set_classes("fine")

    def _settled_text(self, resend: Attempt, forward: Attempt | None) -> str:
        took = present.duration_text(resend.duration_ms)
        when = present.clock_text(resend.started_at, self._utc)
        text = f"✓ re-sent {when}: {resend.status} in {took}"  # one line at 80 columns
        if forward is not None:
            status = present.status_text(forward.status, forward.error, "done")
            text += f"; the original forward got {status}"
        return text

    def _request(self, d: Delivery) -> Content:
        return _join(
            _section(f"Headers ({len(d.headers)}), as the relay received them"),
            _headers(d.headers),
            "",
            _section("Body"),
            _body(d.body),
        )

    def _response(self, data: DetailData, utc: bool) -> Content:
        forward = data.forward
        if forward is None:
            if data.delivery.state in present.NOT_FORWARDED:
                reason = not_forwarded_reason(data.delivery.state)
                return Content(
                    f"No handler was called: {reason}. The sender got 200 from hooktap. "
                    f"`hooktap replay {data.delivery.id} --forward TARGET` sends it to one."
                )
            if data.delivery.state == "interrupted":
                return Content(
                    "The listener stopped while forwarding this delivery; it was not sent "
                    "again, to avoid a duplicate. Press r to re-send it."
                )
            return Content.styled("Waiting for the handler's answer…", "$text-muted")
        status = present.status_text(forward.status, forward.error, "done")
        kind = present.status_kind(forward.status, forward.error, "done")
        colour = "$text-success" if kind == "ok" else "$text-error"
        line = Content.assemble(
            (f"{status} {_reason(forward.status)}".strip(), f"bold {colour}"),
            f" · {present.duration_text(forward.duration_ms)} · {forward.target_url}",
        )
        parts: list[Content | str] = [line]
        if forward.error:
            parts.append(Content.styled(f"error: {forward.error}", "$text-error"))
        if forward.note:  # e.g. held at the relay and re-signed, or a response cut short
            parts.append(Content.styled(forward.note, "$text-warning"))
        parts += [
            "",
            _section(f"Headers ({len(forward.response_headers)})"),
            _headers(forward.response_headers),
            "",
            _section("Body"),
            _body(forward.response_body),
        ]
        return _join(*parts)

    def _attempts(self, data: DetailData, utc: bool) -> Content:
        if not data.attempts:
            return Content.styled("No attempt finished yet.", "$text-muted")
        original = data.forward or data.attempts[0]
        parts: list[Content | str] = []
        for number, attempt in enumerate(data.attempts, 1):
            kind = present.status_kind(attempt.status, attempt.error, "done")
            colour = "$text-success" if kind == "ok" else "$text-error"
            parts.append(Content.styled(present.attempt_line(number, attempt, utc), colour))
            if attempt is original:
                continue
            diff = present.attempt_diff(data.delivery, original, attempt)
            if not diff:
                parts.append(Content.styled("    same status and bodies as #1", "$text-muted"))
            for line in diff:
                style = {"-": "$text-error", "+": "$text-success", "@": "$text-muted"}.get(
                    line[:1], "bold"
                )
                parts.append(Content.styled(f"    {line}", style))
        parts += ["", Content.styled("r re-sends · e edits, then re-sends", "$text-muted")]
        return _join(*parts)

    def _signature(self, data: DetailData) -> Content:
        d = data.delivery
        facts = present.signature_facts(d)
        colour = {"ok": "$text-success", "fail": "$text-error"}.get(
            present.signature_kind(d.signature), "$text-warning"
        )
        lines = []
        for label, value in facts:
            style = f"bold {colour}" if label == "verdict" else ""
            lines.append(Content.assemble((f"{label:<15}", "$text-primary"), (value, style)))
        return _join(
            Content("\n").join(lines),
            "",
            _section("A re-send (r, e)"),
            data.replay_note,
        )
