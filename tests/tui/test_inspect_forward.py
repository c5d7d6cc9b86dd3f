"""`hooktap inspect --forward` names one target for every re-send: a value that is no target
(`=8000`, or a route's `PATTERN=TARGET`) is refused with exit 2 and a reason, never a
traceback, and never read as a route. Run on a real terminal (a pty), since inspect refuses
to start without one."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_terminal import terminal


@pytest.mark.parametrize("value", ["=8000", "customer.*=localhost:8001/hooks", "api..local:8000"])
async def test_inspect_refuses_a_forward_that_is_not_one_target(
    hooktap_home: Path, value: str
) -> None:
    with terminal(["inspect", "--forward", value], hooktap_home) as term:
        assert await term.exit_code() == 2, term.text[-2000:]
        await term.wait_for("is not an IP address or a host name", timeout=5)
        assert "Traceback" not in term.text
