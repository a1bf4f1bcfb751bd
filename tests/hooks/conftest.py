"""Hypothesis profiles of the hook tests: small and fast by default, more with HOOKS_HYPOTHESIS=thorough."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from airflow_provider_loyalty.outcomes import FailureKind, Outcome

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


def verdict(outcome: Outcome) -> str:
    """An outcome read the vendor's way: ``revoked`` (done), ``failed`` (refused) or ``unknown`` (unclear)."""
    if outcome.ok:
        return "revoked"
    return "unknown" if outcome.kind is FailureKind.TRANSIENT else "failed"


def success(outcome: Outcome) -> bool | None:
    """Xoxoday's reading: ``True`` cancelled, ``False`` refused, ``None`` unclear."""
    return {"revoked": True, "failed": False, "unknown": None}[verdict(outcome)]
