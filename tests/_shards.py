"""Which test files a shard of the suite runs (``LOYALTY_TEST_SHARD=k/n``, see ``scripts/run_tests.py``).

Whole files go to one shard, so a module's fixtures, its sandbox and its Airflow runs stay in one
process. Files are dealt out longest first, each to the shard with the least work so far: the
estimate is a few seconds per test that runs Airflow (``e2e``) or a browser, well under one for the
rest, and the measured time of the few files that dwarf their test count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Seconds of the files that dwarf their test count, measured on CI's 2 cores (2026-12-08); a file
#: named here weighs this much, any other its estimate from its tests.
FIXED_SECONDS: Mapping[str, float] = {
    "tests/test_install.py": 300.0,  # fresh venvs of three Airflow versions, when enabled
    "tests/e2e/test_claims_processes.py": 85.0,  # task processes frozen, killed and raced
    "tests/e2e/test_crash_recovery.py": 66.0,  # `airflow dags test` SIGKILLed mid-request
    "tests/ui/test_browser.py": 60.0,  # an api-server start and Chromium
    "tests/test_item_state.py": 50.0,  # a hypothesis property on three databases
    "tests/ui/test_fab.py": 45.0,  # a FAB api-server start
    "tests/benchmarks/test_bench_smoke.py": 40.0,  # one quick `make bench` in its fixture
    "tests/operators/test_auto_rate_windows.py": 37.0,  # real vendor windows over loopback
    "tests/e2e/test_readme_dag.py": 35.0,
    "tests/operators/test_rate_limits.py": 32.0,
    "tests/coordination/test_budget_operators.py": 29.0,
    "tests/e2e/test_daily_approval.py": 25.0,
    "tests/coordination/test_rate_defer.py": 23.0,
    "tests/coordination/test_budget_fanout.py": 18.0,
    "tests/e2e/test_daily_reversals.py": 18.0,
}
E2E_SECONDS = 4.0
OTHER_SECONDS = 0.3


def parse(value: str | None) -> tuple[int, int] | None:
    """``"k/n"`` (1 <= k <= n) as ``(k, n)``; ``None`` when unset. Anything else is refused by name."""
    if not value:
        return None
    try:
        k, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise ValueError(f"LOYALTY_TEST_SHARD={value!r}: expected k/n, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise ValueError(f"LOYALTY_TEST_SHARD={value!r}: k must be between 1 and n")
    return k, n


def assign(weights: Mapping[str, float], shards: int) -> dict[str, int]:
    """Each file's shard (1..``shards``): longest first onto the least loaded shard; ties by name."""
    load = [0.0] * shards
    placed: dict[str, int] = {}
    for name in sorted(weights, key=lambda file: (-weights[file], file)):
        shard = min(range(shards), key=lambda i: (load[i], i))
        load[shard] += weights[name]
        placed[name] = shard + 1
    return placed


def item_seconds(heavy: bool) -> float:
    return E2E_SECONDS if heavy else OTHER_SECONDS


def file_weights(items: list[tuple[str, bool]]) -> dict[str, float]:
    """Estimated seconds per file from ``(file, runs Airflow or a browser)`` per collected test."""
    weights: dict[str, float] = {}
    for name, heavy in items:
        weights[name] = weights.get(name, 0.0) + item_seconds(heavy)
    return {name: FIXED_SECONDS.get(name, estimate) for name, estimate in weights.items()}


def current() -> tuple[int, int] | None:
    return parse(os.environ.get("LOYALTY_TEST_SHARD"))
