"""Hypothesis settings for the protocol's property tests.

No example database and no deadline (as for the whole suite, tests/conftest.py), and each
property bounds its own run with max_examples. No explain phase: it traces
every line, and on a thousand-level recursion (the bug the deep-Batch property exists to catch)
that alone outlasts the test timeout before the failing example is printed.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

# Registered, not loaded: loading would change the settings of every other Hypothesis test in
# the session too. The protocol's tests name it as the parent of their own settings.
settings.register_profile(
    "hooktap-protocol",
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)
