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

from hooktap import project_config
from hooktap.listen import state as listener_state
from hooktap.listen.group_commit import StoreCall
from hooktap.listen.pipeline import as_routing
from hooktap.listen.routes import Routing, build_routing
from hooktap.listen.target import parse_target
from hooktap.pivotal.signing import is_signed, resign
from hooktap.records import Delivery
from hooktap.replay import (
    NoRouting,
    NotGenuine,
    NotRouted,
    choose_target,
    replay,
    resign_refusal,
)
from hooktap.store import Store
from hooktap.tui import present
from hooktap.tui.screens.confirm import ForceScreen
from hooktap.tui.screens.editor import EditorScreen, EditResult

if TYPE_CHECKING:
    from hooktap.tui.app import HooktapApp

_CLIPBOARD_WARN = 100_000  # many terminals drop OSC 52 payloads past ~100 KB


def routing_in_force() -> Routing | None:
    """hooktap.toml in the working directory, else the running listener's routes: what
    `hooktap replay` follows (cli/replay_common.Routes), read here without a word on stderr,
    which is the screen. None when neither is there or readable."""
    try:
        config = project_config.load()
        if config is not None and config.forward:
            return build_routing(config.forward, config.events)
    except ValueError:  # a bad hooktap.toml (ConfigError is one)
        return None
    return listener_state.running_routing()


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
        self.target = target  # inspect --forward: where every re-send goes
        # Where re-sends go follows `hooktap replay` (replay.choose_target): the routes given
        # decide (a listener's are today's routes; inspect --forward is one for all); else a
        # delivery goes where it went, and one that went nowhere where the routing in force
        # (hooktap.toml, else a running listener's) sends its type.
        # A single fallback, never parsed as `PATTERN=TARGET`: inspect --forward names one
        # target for every re-send, whatever the type.
        self._given = routing or (as_routing(parse_target(target)) if target else None)

    def target_for(self, delivery: Delivery) -> str | None:
        """Where a re-send or a copied curl of `delivery` goes; None when nowhere, said in a
        notice (filtered or unrouted by the routes in force, or no routes at all)."""
        try:
            return choose_target(
                delivery.event_type,
                delivery.target,
                given=self._given,
                in_force=routing_in_force,
                what=f"delivery {delivery.id}",
            )
        except (NotRouted, NoRouting) as exc:
            self.app.notify(
                f"{exc}.", title="Nowhere to send it", severity="warning", timeout=10, markup=False
            )
            return None

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
            return
        self.app.run_worker(self._resend(delivery, target, edit, force), group="replay")

    async def _resend(
        self, delivery: Delivery, target: str, edit: EditResult | None, force: bool
    ) -> None:
        delivery_id = delivery.id
        self.app.notify(
            f"Re-sending {delivery_id} to {present.target_text(target)}…", timeout=2, markup=False
        )
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
            self.app.notify(
                str(exc), title="Re-send failed", severity="error", timeout=10, markup=False
            )
            return
        status = present.status_text(attempt.status, attempt.error, "done")
        ok = present.status_kind(attempt.status, attempt.error, "done") == "ok"
        detail = f"{status} in {present.duration_text(attempt.duration_ms)} · {attempt.note}"
        if attempt.error:
            detail += f" · {attempt.error}"
        self.app.notify(
            detail,
            title=f"Re-sent {delivery_id}",
            severity="information" if ok else "warning",
            markup=False,
        )
        self.app.after_replay(delivery_id)

    def copy_curl(self, delivery: Delivery) -> None:
        where = self.target_for(delivery)
        if where is None:
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
        self.app.notify(
            what, title="Copied", severity="warning" if warn else "information", markup=False
        )
