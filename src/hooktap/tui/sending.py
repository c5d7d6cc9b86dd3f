"""Re-sending and copying a delivery from the inspector.

Re-sends go through hooktap.replay.replay, the function behind `hooktap replay`, so a re-send
from the TUI is signed, sent and recorded exactly as one from the command line, under the same
re-signing rule: a delivery whose original signature did not match is re-signed (forced) only
after the user answers `y` to ForceScreen. Copies go through App.copy_to_clipboard (OSC 52),
which reaches the user's clipboard over SSH too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hooktap.listen.group_commit import StoreCall
from hooktap.listen.routes import Routing
from hooktap.listen.target import parse_target
from hooktap.pivotal.signing import is_signed, resign
from hooktap.records import Delivery
from hooktap.replay import NotGenuine, replay, resign_refusal
from hooktap.store import Store
from hooktap.tui import present
from hooktap.tui.screens.confirm import ForceScreen
from hooktap.tui.screens.editor import EditorScreen, EditResult

if TYPE_CHECKING:
    from hooktap.tui.app import HooktapApp

_CLIPBOARD_WARN = 100_000  # many terminals drop OSC 52 payloads past ~100 KB


class Sender:
    def __init__(
        self,
        app: HooktapApp,
        store: Store,
        *,
        secret: str | None,
        target: str | None,
        call: StoreCall,
        routing: Routing | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.call = call  # how a re-send reaches the store off the event loop
        self.secret = secret
        self.target = target  # given for every re-send (inspect --forward); else:
        # The listener's routes, minus --events: a re-send asked for by name goes to the route
        # its type matches today, filtered or not. None: each delivery's own stored target.
        self.routing = Routing(routing.routes) if routing is not None else None

    def target_for(self, delivery: Delivery) -> str | None:
        """Where a re-send or a copied curl of `delivery` goes; None: nowhere (say why with
        `no_target`)."""
        if self.target:
            return self.target
        if self.routing is not None:
            decided = self.routing.decide(delivery.event_type).target
            return str(decided) if decided is not None else None
        return delivery.target or None

    def no_target(self, delivery: Delivery) -> str:
        if self.routing is not None:
            return (
                f"No route takes {delivery.event_type or 'a delivery without an event type'} "
                f"(routes: {', '.join(self.routing.describe())}), so there is nowhere to send it."
            )
        return "This delivery has no forward target; `hooktap replay ID --forward 8000` names one."

    def edit_note(self, where: str, forced: bool = False) -> str:
        if forced:
            return (  # the start is what an 80-column editor shows
                "Forced (you answered y): ctrl+s re-signs it although its original signature "
                f"did not match, and sends it to {where}."
            )
        if self.secret:
            return f"ctrl+s sends it to {where}, re-signed with a fresh timestamp."
        return (
            f"ctrl+s sends it to {where}. No secret (--secret / PIVOTAL_WEBHOOK_SECRET): it goes "
            "with the stored signature, which an edited body will not match."
        )

    def confirm_then(self, delivery: Delivery, go: Callable[[bool], object]) -> None:
        """`go(force)` at once when re-signing `delivery` is allowed (or there is nothing to
        re-sign); for one whose original signature did not match, only after a `y`."""
        reason = resign_refusal(delivery, self.secret)
        if reason is None:
            go(False)
        else:
            self._ask(reason, lambda: go(True))

    def edit_then_send(self, delivery: Delivery, *, external: bool = False) -> None:
        """`e`: the editor (or $EDITOR straight away), then a re-send of what it saved."""
        try:
            delivery.body.decode("utf-8")
        except UnicodeDecodeError:
            self.app.notify("This body is binary; it cannot be edited as text.", severity="warning")
            return

        where = self.target_for(delivery)
        if where is None:
            self.app.notify(self.no_target(delivery), severity="warning", timeout=10)
            return

        def open_editor(force: bool) -> None:
            def send(result: EditResult | None) -> None:
                if result is not None:
                    self.resend(delivery, result, force=force)

            note = self.edit_note(present.target_text(where), forced=force)
            self.app.push_screen(EditorScreen(delivery, note, external=external), send)

        self.confirm_then(delivery, open_editor)  # asks first if it did not match

    def resend_confirmed(self, delivery: Delivery) -> None:
        """`r`: re-send at once, or after a `y` when its original signature did not match."""
        self.confirm_then(delivery, lambda force: self.resend(delivery, force=force))

    def _ask(self, reason: str, then: Callable[[], object]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ForceScreen(reason), answered)

    def resend(
        self, delivery: Delivery, edit: EditResult | None = None, *, force: bool = False
    ) -> None:
        target = self.target_for(delivery)
        if target is None:
            self.app.notify(self.no_target(delivery), severity="warning", timeout=10)
            return
        self.app.run_worker(self._resend(delivery, target, edit, force), group="replay")

    async def _resend(
        self, delivery: Delivery, target: str, edit: EditResult | None, force: bool
    ) -> None:
        delivery_id = delivery.id
        self.app.notify(f"Re-sending {delivery_id} to {present.target_text(target)}…", timeout=2)
        try:
            attempt = await replay(
                self.store,
                delivery_id,
                target=target,
                secret=self.secret,
                body=edit.body if edit else None,
                headers=edit.headers if edit else None,
                force=force,
                call=self.call,
            )
        except NotGenuine as exc:
            # Asked already for a delivery that did not match; this is an unsigned one given
            # signature headers in the editor. Refused before anything was sent: ask now.
            self._ask(exc.reason, lambda: self.resend(delivery, edit, force=True))
            return
        except (LookupError, ValueError) as exc:
            self.app.notify(str(exc), title="Re-send failed", severity="error", timeout=10)
            return
        status = present.status_text(attempt.status, attempt.error, "done")
        ok = present.status_kind(attempt.status, attempt.error, "done") == "ok"
        detail = f"{status} in {present.duration_text(attempt.duration_ms)} · {attempt.note}"
        if attempt.error:
            detail += f" · {attempt.error}"
        self.app.notify(
            detail, title=f"Re-sent {delivery_id}", severity="information" if ok else "warning"
        )
        self.app.after_replay(delivery_id)

    def copy_curl(self, delivery: Delivery) -> None:
        where = self.target_for(delivery)
        if where is None:
            self.app.notify(self.no_target(delivery), severity="warning", timeout=10)
            return
        url = parse_target(where).url(delivery.path, delivery.query)
        headers = delivery.headers
        signed = is_signed(headers)
        # The replay rule: a copy is re-signed only when the original's signature matched.
        mismatch = resign_refusal(delivery, self.secret)
        warn = False
        if self.secret and signed and mismatch is None:
            headers = resign(headers, delivery.body, self.secret)
            how = "re-signed now: valid for 5 minutes"
        elif mismatch is not None:
            how = (
                f"with its stored signature, not re-signed: its original signature did not match "
                f"your secret ({mismatch}), so your handler will reject it. "
                f"`hooktap replay {delivery.id} --force` sends it re-signed anyway"
            )
            warn = True
        elif signed:
            how = "with the stored signature (no secret to re-sign)"
        else:
            how = "unsigned, as it arrived"
        command = present.curl_command(url, delivery.method, headers, delivery.body)
        self._copy(command, f"curl to {url}, {how}", warn=warn)

    def copy_body(self, delivery: Delivery) -> None:
        text, what = present.body_for_clipboard(delivery.body)
        self._copy(text, what)

    def _copy(self, text: str, what: str, *, warn: bool = False) -> None:
        self.app.copy_to_clipboard(text)
        if len(text) > _CLIPBOARD_WARN:
            what += f" — {len(text):,} characters; some terminals cut OSC 52 copies that long"
        self.app.notify(what, title="Copied", severity="warning" if warn else "information")
