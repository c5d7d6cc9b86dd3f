"""Entry points for the CLI: the inspector with a live listener, or over stored history alone.

The listener runs as a worker inside Textual's own asyncio loop (not a thread, not a second
loop), so its events reach the app without locks and quitting can stop it cleanly.
"""

from __future__ import annotations

from hooktap.aio import new_loop
from hooktap.filters import Filter
from hooktap.listen.listener import Listener
from hooktap.store import Store
from hooktap.tui.app import HooktapApp


def run_listen_tui(listener: Listener, store: Store) -> None:
    """Run `hooktap listen`'s inspector until the user quits; re-raise why the listener failed
    to start (a busy port, a refused token) once the screen is back to normal."""
    app = HooktapApp(store, listener, handle_signals=True)
    _run(app)
    if app.ended_by is not None and app.return_code in (1, 2):
        raise app.ended_by


def run_inspect_tui(
    store: Store,
    *,
    secret: str | None = None,
    replay_target: str | None = None,
    utc: bool = False,
    initial_filter: Filter | None = None,
) -> None:
    """`hooktap inspect`: the stored history, with no listener of its own."""
    app = HooktapApp(
        store,
        secret=secret,
        replay_target=replay_target,
        utc=utc,
        initial_filter=initial_filter,
        handle_signals=True,
    )
    _run(app)
    if app.ended_by is not None and app.return_code == 2:
        raise app.ended_by  # history that could not be read: one line, exit 2


def _run(app: HooktapApp) -> None:
    """The app on a loop of our own choosing (uvloop where it exists), closed afterwards."""
    loop = new_loop()
    try:
        app.run(loop=loop)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
