"""Hypothesis settings for the protocol's property tests.

No example database: a failure is reproduced from the printed example, not from a file one
machine kept. Hypothesis's other caches (its constants and Unicode tables) go to the temp
folder, not `.hypothesis/` in the repository. No deadline: the shared test machine's timing
varies, and each property bounds its own run with max_examples. No explain phase: it traces
every line, and on a thousand-level recursion (the bug the deep-Batch property exists to catch)
that alone outlasts the test timeout before the failing example is printed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.configuration import set_hypothesis_home_dir

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "hooktap-hypothesis")

# Registered, not loaded: loading would change the settings of every other Hypothesis test in
# the session too. The protocol's tests name it as the parent of their own settings.
settings.register_profile(
    "hooktap-protocol",
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)
