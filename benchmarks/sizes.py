"""How big each scenario runs: ``full`` is ``make bench``, ``quick`` and ``smoke`` shrink it.

One table for every scenario, so that a mode is chosen once and each scenario reads its part.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AutoSizes:
    """Limits, windows and run length of scenario 6."""

    limits: tuple[int, ...]
    windows: tuple[float, ...]
    seconds: float
    xoxoday_penalty: float
    latency_ms: float = 20.0


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs in one mode."""

    # 1. rate-bound
    rate_rpm: int
    rate_window_s: float
    rate_requests: int
    rate_latency_ms: float
    rate_naive_rows: int
    # 2. latency-bound
    latency_ms: float
    latency_customers: int
    latency_ids: int
    latency_naive_rows: int
    # 3. client overhead
    cpu_ids: int
    cpu_customers: int
    cpu_dense_earns: int
    cpu_naive_rows: int
    cpu_floor_requests: int
    # 4. scale
    scale_small: int
    scale_large: int
    scale_earns_per_customer: int
    scale_dry_run_rows: int
    scale_parallel: bool
    # 5. parse
    parse_runs: int
    # profile (``--profile``)
    profile_customers: int
    profile_ids: int
    # 6. auto rate
    auto: AutoSizes
    # 7. claims: alternated runs per side (claims on / off)
    claims_reps: int = 2
    # 8. page: a ledger of days x per_day items (two rows each), each answer timed page_reps times
    page_days: int = 100
    page_per_day: int = 5000
    page_reps: int = 3


SIZES = {
    "full": Sizes(
        rate_rpm=600,
        rate_window_s=10.0,
        rate_requests=250,
        rate_latency_ms=50.0,
        rate_naive_rows=40,
        latency_ms=50.0,
        latency_customers=800,
        latency_ids=200_000,
        latency_naive_rows=100,
        cpu_ids=100_000,
        cpu_customers=20_000,
        cpu_dense_earns=100_000,
        cpu_naive_rows=2000,
        cpu_floor_requests=2000,
        scale_small=100_000,
        scale_large=1_000_000,
        scale_earns_per_customer=50,
        scale_dry_run_rows=1_000_000,
        scale_parallel=False,
        parse_runs=5,
        profile_customers=4000,
        profile_ids=100_000,
        auto=AutoSizes(limits=(100, 600, 1000), windows=(60.0, 10.0), seconds=180.0, xoxoday_penalty=60.0),
    ),
    "quick": Sizes(
        rate_rpm=600,
        rate_window_s=5.0,
        rate_requests=100,
        rate_latency_ms=50.0,
        rate_naive_rows=15,
        latency_ms=50.0,
        latency_customers=300,
        latency_ids=100_000,
        latency_naive_rows=40,
        cpu_ids=20_000,
        cpu_customers=4000,
        cpu_dense_earns=20_000,
        cpu_naive_rows=500,
        cpu_floor_requests=500,
        scale_small=10_000,
        scale_large=100_000,
        scale_earns_per_customer=50,
        scale_dry_run_rows=0,
        scale_parallel=False,
        parse_runs=3,
        profile_customers=2000,
        profile_ids=50_000,
        auto=AutoSizes(limits=(600,), windows=(10.0,), seconds=60.0, xoxoday_penalty=5.0),
        page_days=20,
        page_per_day=2500,
    ),
    "smoke": Sizes(
        rate_rpm=6000,
        rate_window_s=1.0,
        rate_requests=20,
        rate_latency_ms=5.0,
        rate_naive_rows=5,
        latency_ms=5.0,
        latency_customers=30,
        latency_ids=2000,
        latency_naive_rows=5,
        cpu_ids=2000,
        cpu_customers=200,
        cpu_dense_earns=2000,
        cpu_naive_rows=50,
        cpu_floor_requests=50,
        scale_small=1000,
        scale_large=5000,
        scale_earns_per_customer=50,
        scale_dry_run_rows=0,
        scale_parallel=True,
        parse_runs=1,
        profile_customers=200,
        profile_ids=2000,
        auto=AutoSizes(limits=(3000,), windows=(1.0,), seconds=3.0, xoxoday_penalty=1.0, latency_ms=2.0),
        claims_reps=1,
        page_days=3,
        page_per_day=50,
        page_reps=1,
    ),
}
