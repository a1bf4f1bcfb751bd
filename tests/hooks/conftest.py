"""Hypothesis profiles of the hook tests: small and fast by default, more with HOOKS_HYPOTHESIS=thorough."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No example database: the tests stay read-only on the working tree, and a run is reproducible
# from its printed seed alone.
settings.register_profile(
    "hooks-fast", max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "hooks-thorough", max_examples=5000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

#: the profile the property tests of this directory use (decorate with ``@settings(HOOKS_PROFILE)``)
HOOKS_PROFILE = settings.get_profile(f"hooks-{os.environ.get('HOOKS_HYPOTHESIS', 'fast')}")
