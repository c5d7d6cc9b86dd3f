"""The `hooktap` command: a thin click group over the library.

Each command lives in its own module; this file only wires them together.
"""

from __future__ import annotations

import click

from hooktap import __version__
from hooktap.cli.errors import FileErrorsGroup


@click.group(
    cls=FileErrorsGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="hooktap")
def main() -> None:
    """A local webhook tunnel and inspector for Pivotal's webhooks.

    \b
    Start here (your handler's path; a local test secret until you pass Pivotal's):
      hooktap listen --forward localhost:8000/webhooks/pivotal
      hooktap trigger customer.at_risk        # in another terminal: a signed sample
      hooktap listen --forward localhost:8000/webhooks/pivotal --secret whsec_...
    """


def _register() -> None:
    from hooktap.cli import (
        history_cmd,
        inspect_cmd,
        listen_cmd,
        pivotal_cmd,
        relay_cmd,
        replay_cmd,
    )

    for command in (
        listen_cmd.listen_cmd,
        relay_cmd.relay_cmd,
        history_cmd.deliveries_cmd,
        replay_cmd.replay_cmd,
        inspect_cmd.inspect_cmd,
        pivotal_cmd.trigger_cmd,
        pivotal_cmd.check_cmd,
        pivotal_cmd.events_cmd,
    ):
        main.add_command(command)


_register()
