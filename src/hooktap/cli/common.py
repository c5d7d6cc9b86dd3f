"""What every command shares: the user-error type and option helpers."""

from __future__ import annotations

import click


class BadInput(click.ClickException):
    """A user error: one clear line on stderr and exit code 2, never a traceback."""

    exit_code = 2
