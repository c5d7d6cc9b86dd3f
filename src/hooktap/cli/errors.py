"""One clear line and exit code 2 for a file hooktap cannot use, whichever command met it.

A damaged history, HOOKTAP_HOME that is a file or a relay database SQLite refuses can surface
in any command, at open or at the first query that reaches a bad page. Rather than each command
catching each of them, the `hooktap` group turns them into a user error here, and gives exit
code 2 to a command's own ClickException about one of them (raised `from None`, the original
is still its __context__).
"""

from __future__ import annotations

from typing import Any

import click

from hooktap.cli.common import BadInput
from hooktap.home import UnusableFile
from hooktap.store import StoreError

# A history that cannot be read or written (StoreError, HistoryDamaged among them) and a file
# or folder of hooktap's that cannot be used (home.UnusableFile).
UNUSABLE = (StoreError, UnusableFile)


class FileErrorsGroup(click.Group):
    """The `hooktap` group: its commands' unusable-file errors become BadInput."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if exc.exit_code == 1 and isinstance(_origin(exc), UNUSABLE):
                exc.exit_code = BadInput.exit_code
            raise
        except UNUSABLE as exc:
            raise BadInput(str(exc)) from None


def _origin(exc: BaseException) -> BaseException | None:
    """The exception a command's ClickException was raised while handling, if any."""
    return exc.__cause__ or exc.__context__
