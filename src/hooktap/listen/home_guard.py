"""Watching HOOKTAP_HOME while `hooktap listen` runs, and putting it back when it goes.

A folder deleted under a running listener does not stop it: on Linux its open SQLite files
live on unlinked, every commit succeeds, and everything written since the deletion vanishes
when the process ends. Measured before this guard: after `rm -rf $HOOKTAP_HOME` and a restart,
a new channel and URL, while the old URL went on answering 202 to deliveries nobody would see.

So once a second the guard checks that history.db at its path is still the file the Store has
open (device and inode), that the folder is writable, and the same for the embedded relay's
relay.db when this process serves it. When one is gone, it copies what the open connections
hold back to the recreated folder (SQLite's backup API reads through them), rewrites
channels.json from the channel in memory (so the webhook URL stays), and says so. When the
folder cannot be recreated, the same copies go to a new temporary folder laid out as a
HOOKTAP_HOME, history stops accepting writes (so deliveries are refused and the relay keeps
them), and the listener stops with a message naming that folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hooktap.home import home_path
from hooktap.listen import channel as channels
from hooktap.listen.channel import ChannelCredentials
from hooktap.listen.embedded import EmbeddedRelay
from hooktap.listen.events import HomeLost
from hooktap.listen.group_commit import StoreCall
from hooktap.relay.embed import InProcessRelay
from hooktap.store import Store, StoreError

log = logging.getLogger("hooktap.listen")

CHECK_INTERVAL = 1.0  # seconds: a loss is noticed within about this long
FileId = tuple[int, int]  # (st_dev, st_ino)


class HomeUnusable(ConnectionError):
    """HOOKTAP_HOME was lost and cannot be recreated or written; the message says where the
    history went. A ConnectionError only because that is what `hooktap listen` reports as
    one plain line (exit 1) on both its paths, the inspector's and the log lines'."""


@dataclass
class _Loss:
    what: str  # "HOOKTAP_HOME (/x) was deleted", for the message
    history: bool  # the history file must be copied back
    relay: bool  # the embedded relay's queue must be copied back
    folder: bool = False  # a folder must be recreated, though no database was in it


class HomeGuard:
    """Runs beside a Listener (start() once it holds its channel, stop() when it ends).

    `credentials` gives the listener's channel as it is now (it can change on a reconnect);
    `announce` gets the HomeLost event; `restore_state` rewrites the listener's own small
    files in the home; `on_failure` is awaited once the home is given up, to stop the
    listener, which then raises `failure`. Every call on the store goes through `call`, the
    listener's one way to it off the event loop (GroupCommit.call), in turn with its commits:
    a move or a count must neither stall deliveries nor run beside a commit.
    """

    def __init__(
        self,
        store: Store,
        *,
        call: StoreCall,
        embedded: EmbeddedRelay | None,
        credentials: Callable[[], ChannelCredentials | None],
        announce: Callable[[HomeLost], None],
        on_failure: Callable[[], Awaitable[None]],
        restore_state: Callable[[], None] = lambda: None,
        interval: float = CHECK_INTERVAL,
        relays: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.call = call
        self.embedded = embedded
        self.credentials = credentials
        self.announce = announce
        self.on_failure = on_failure
        self.restore_state = restore_state
        self.relays = relays  # several --relay URLs share the channel: it is kept under each
        self.interval = interval
        self.failure: HomeUnusable | None = None
        self._relay_file: tuple[InProcessRelay, FileId | None] | None = None
        self._told_unsaved = False  # the "cannot save it anywhere" message went out already
        self._saved: Path | None = None  # the folder history went to when the home could not
        self._task: asyncio.Task[None] | None = None
        self._rescuing = False

    @property
    def home(self) -> Path:
        return home_path()

    def start(self) -> None:
        self._relay_db()  # note which file the relay has open now, before anything happens
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="home-guard")

    async def stop(self) -> None:
        """Stop watching; a rescue under way finishes first (it moves open connections)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if not self._rescuing:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _watch(self) -> None:
        while self.failure is None:
            await asyncio.sleep(self.interval)
            loss = self.check()
            if loss is None:
                continue
            self._rescuing = True
            try:
                await self._handle(loss)
            except Exception:  # a bug here must not take the listener down silently
                log.exception("hooktap: could not handle the loss of %s", self.home)
            finally:
                self._rescuing = False
        await self.on_failure()

    # -- noticing ----------------------------------------------------------------------------

    def check(self) -> _Loss | None:
        """What is wrong with the home now, or None: a few stat calls, no writes."""
        path = self.store.path
        history = _file_id(path) != self.store.file_id
        relay = False
        if (found := self._relay_db()) is not None:
            _, relay_path = found
            assert self._relay_file is not None
            relay = _file_id(relay_path) != self._relay_file[1]
        folders = (self.home, path.parent)
        if history or relay:
            return _Loss(self._what(path, history) + " while listening", history, relay)
        if (gone := _gone(folders, self.home)) is not None:  # a history kept elsewhere
            return _Loss(gone + " while listening", False, False, folder=True)
        for folder in set(folders):
            # access(), not a probe file: no churn in the folder every second. For root it
            # only says no on a read-only file system, which is the case that matters there.
            if not os.access(folder, os.W_OK | os.X_OK):
                what = f"{_name(folder, self.home)} became unwritable while listening"
                return _Loss(what, False, False)
        return None

    def _what(self, history_path: Path, history: bool) -> str:
        if (gone := _gone((self.home, history_path.parent), self.home)) is not None:
            return gone
        if not history:
            return f"the embedded relay's queue {self.home / 'relay' / 'relay.db'} was deleted"
        if history_path.exists():
            return f"{history_path} was replaced by another file"
        return f"{history_path} was deleted"

    def _relay_db(self) -> tuple[InProcessRelay, Path] | None:
        """The embedded relay when this process serves it, and its queue's path. The file id
        is taken the first time a relay is seen (the relay does not keep one)."""
        if self.embedded is None or not self.embedded.owned:
            return None
        relay = self.embedded.relay
        path = relay.queue_path
        if self._relay_file is None or self._relay_file[0] is not relay:
            self._relay_file = (relay, _file_id(path))
        return relay, path

    # -- rescuing ----------------------------------------------------------------------------

    async def _handle(self, loss: _Loss) -> None:
        if not (loss.history or loss.relay or loss.folder):  # unwritable: nothing to recreate
            await self._give_up(loss, "")
            return
        try:
            await self._recover(loss)
        except (OSError, sqlite3.Error, StoreError) as exc:
            await self._give_up(loss, f" and cannot be recreated ({_why(exc)})")

    async def _recover(self, loss: _Loss) -> None:
        """Recreate the folder and put back what was lost in it; raises when it cannot."""
        folders = {self.store.path.parent, self.home}
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{folder} is not writable")
        displaced = ""
        if loss.history:
            displaced = _set_aside(self.store.path)
            await self.call(self.store.move_to)
        if loss.relay:
            self._move_relay(self.home / "relay" / "relay.db")
        kept = self._keep_channel(self.home)
        self.restore_state()
        # A home given up earlier, then made usable again: history takes writes again.
        deliveries, bodies = await self.call(self._accept_writes)
        restored = [_history(deliveries)] if loss.history else []
        restored += ["your channel (the same webhook URL)"] if kept else []
        restored += ["the embedded relay's queue"] if loss.relay else []
        message = f"{loss.what}; recreated it" + (f" with {_and(restored)}" if restored else "")
        if bodies:
            message += (
                f"; {_count(bodies, 'large body was', 'large bodies were')} lost with it "
                "(history keeps the first 64 KiB of each)"
            )
        if displaced:
            message += f"; the file found at {self.store.path} was kept as {displaced}"
        self.announce(HomeLost(str(self.home), message, True, False, deliveries, bodies))

    def _accept_writes(self) -> tuple[int, int]:
        """On the history thread: accept writes again, then count the deliveries and the big
        bodies lost with the folder, for the message."""
        self.store.refuse_writes(None)
        return self.store.count(), self.store.missing_bodies()

    def _move_relay(self, path: Path) -> Path:
        found = self._relay_db()
        assert found is not None
        relay = found[0]
        where = relay.move_queue(path)
        self._relay_file = (relay, _file_id(where))
        return where

    async def _give_up(self, loss: _Loss, why: str) -> None:
        """No home to recreate: stop taking deliveries, save what only this process holds to
        a folder laid out as a HOOKTAP_HOME, and stop the listener with a message naming it."""
        refusal = loss.what + why
        await self.call(self.store.refuse_writes, refusal)
        if loss.history or loss.relay:
            try:
                await self._save_elsewhere(loss)
            except (OSError, sqlite3.Error, StoreError) as exc:
                # Nowhere to put it: keep it in this process, refuse deliveries (the relay
                # keeps them) and try again at the next check.
                if not self._told_unsaved:
                    self._told_unsaved = True
                    message = (
                        f"{refusal}, and your history cannot be saved elsewhere "
                        f"either ({_why(exc)}); new deliveries are refused so the relay keeps "
                        "them. Do not stop this listener: it holds the only copy, and saves it "
                        "as soon as HOOKTAP_HOME (or the temp folder) is writable again"
                    )
                    self.announce(HomeLost(str(self.home), message, False, False))
                return
        deliveries = await self.call(self.store.count)
        saved = self._saved
        if saved is not None:
            what = [_history(deliveries)] if self.store.path.parent == saved else []
            what += ["your channel"] if (saved / "channels.json").exists() else []
            what += ["the embedded relay's queue"] if (saved / "relay").exists() else []
            message = (
                f"{refusal}. Saved {_and(what)} to {saved}: move that folder to {self.home} "
                f"(or set HOOKTAP_HOME={saved}) and run `hooktap listen` again"
            )
        else:
            message = (
                f"{refusal}; {_history(deliveries)} is intact in {self.store.path}: "
                "make its folder writable and run `hooktap listen` again"
            )
        message += (
            "; stopped, new deliveries wait at the relay"
            if self.embedded is None
            else "; stopped (the embedded relay stops with it)"
        )
        self.failure = HomeUnusable(message)
        where = str(saved) if saved else None
        self.announce(HomeLost(str(self.home), message, False, True, deliveries, 0, where))

    async def _save_elsewhere(self, loss: _Loss) -> None:
        """What was lost, into one new temporary folder laid out as a HOOKTAP_HOME (the same
        folder if an earlier attempt got part of the way)."""
        if self._saved is None:
            self._saved = Path(tempfile.mkdtemp(prefix="hooktap-rescue-"))
        saved = self._saved
        if loss.history:
            await self.call(self.store.move_to, saved / "history.db")
        if loss.relay:
            self._move_relay(saved / "relay" / "relay.db")
        self._keep_channel(saved)

    def _keep_channel(self, home: Path) -> bool:
        """Write the channel back into `home`'s channels.json; False when there is none."""
        creds = self.credentials()
        if creds is None:
            return False
        channels.remember(creds, home)
        if len(self.relays) > 1:
            channels.share(creds, self.relays, home)
        return True


def _set_aside(path: Path) -> str:
    """Move a file found where the lost history was (another history, made meanwhile) out of
    the way rather than overwrite it; its new name, or "" when there was none."""
    if not path.exists():
        return ""
    aside = path.with_name(f"{path.name}.displaced-{int(time.time())}")
    os.replace(path, aside)
    return str(aside)


def _file_id(path: Path) -> FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _history(deliveries: int) -> str:
    return f"your history ({_count(deliveries, 'delivery', 'deliveries')})"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _and(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _gone(folders: tuple[Path, ...], home: Path) -> str | None:
    for folder in folders:
        if not folder.exists():
            return f"{_name(folder, home)} was deleted"
        if not folder.is_dir():
            return f"{_name(folder, home)} was replaced by a file"
    return None


def _name(folder: Path, home: Path) -> str:
    return f"HOOKTAP_HOME ({home})" if folder == home else str(folder)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
