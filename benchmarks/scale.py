"""Scenario 4: memory and time per item as the rows grow, each size in a fresh process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.harness import Data, SandboxProcess
from benchmarks.measure import invariants, ratio, row, run_child
from benchmarks.sizes import Sizes


def _scale_run(n: int, earns_per_customer: int) -> dict[str, Any]:
    """One RevokeEarnOperator run over ``n`` rows in a fresh process, against a sandbox of its own."""
    data = Data(earns=n, customers=max(1, n // earns_per_customer))
    # The sandbox loads its dataset while the client process starts and builds its rows.
    with SandboxProcess(data, wait=False) as sandbox:
        args = ["scale", "--earns", str(n), "--customers", str(data.customers), "--seed", str(data.seed)]
        run = run_child([*args, "--sandbox-ready-file", str(sandbox.ready_file)], sandbox)
        stats = sandbox.stats("capillary")
    run["sandbox"] = {key: stats.get(key) for key in ("api_requests", "requests_in_penalty", "duplicate_attempts")}
    run["error"] = None
    run["us_per_item"] = ratio(1e6 * run["wall_s"], run["rows"])
    run["cpu_us_per_item"] = ratio(1e6 * run["cpu_s"], run["rows"])
    return run


def _peak_mib(run: dict[str, Any]) -> float:
    """Peak RSS of the operator's run; the process's lifetime peak where the kernel cannot reset it."""
    return run["peak_rss_mib"] if run["peak_rss_mib"] is not None else run["ru_maxrss_mib"]


def scale(sizes: Sizes) -> dict[str, Any]:
    """RevokeEarnOperator over N and 10 N rows, each in a fresh process: peak RSS and time per item.

    The two runs go one after the other (they would compete for the CPU), except at smoke size.
    """
    sizes_n = (sizes.scale_small, sizes.scale_large)
    if sizes.scale_parallel:
        with ThreadPoolExecutor(max_workers=len(sizes_n)) as pool:
            done = list(pool.map(lambda n: _scale_run(n, sizes.scale_earns_per_customer), sizes_n))
    else:
        done = [_scale_run(n, sizes.scale_earns_per_customer) for n in sizes_n]
    runs: dict[str, Any] = {f"{n} rows": run for n, run in zip(sizes_n, done, strict=True)}
    if sizes.scale_dry_run_rows:
        n = sizes.scale_dry_run_rows
        run = run_child(["scale", "--earns", str(n), "--dry-run"])
        runs[f"{n} rows, ~5 earns per customer, dry run"] = run
    small, large = runs[f"{sizes.scale_small} rows"], runs[f"{sizes.scale_large} rows"]
    growth = ratio(large["us_per_item"], small["us_per_item"])
    peak = _peak_mib(large)
    rows_out = [
        row(
            "4 scale",
            f"peak RSS, {sizes.scale_large} earn rows (~{sizes.scale_earns_per_customer} per customer)",
            peak,
            "MiB",
            baseline=large["rss_rows_built_mib"],
            baseline_label="rows built",
            ratio=ratio(peak, large["rss_rows_built_mib"]),
            target="< 1024",
            met=peak < 1024,
        ),
        row(
            "4 scale",
            f"time per item, {sizes.scale_large} vs {sizes.scale_small} rows",
            large["us_per_item"],
            "us/item",
            baseline=small["us_per_item"],
            baseline_label=f"{sizes.scale_small} rows",
            ratio=growth,
            target="ratio <= 1.25 (linear)",
            met=(growth or 1e9) <= 1.25,
        ),
        row(
            "4 scale",
            f"client CPU per item, {sizes.scale_large} vs {sizes.scale_small} rows",
            large["cpu_us_per_item"],
            "us/item",
            baseline=small["cpu_us_per_item"],
            baseline_label=f"{sizes.scale_small} rows",
            ratio=ratio(large["cpu_us_per_item"], small["cpu_us_per_item"]),
        ),
    ]
    dry = [run for name, run in runs.items() if "dry run" in name]
    if dry:
        run = dry[0]
        dry_peak = _peak_mib(run)
        rows_out.append(
            row(
                "4 scale",
                f"peak RSS, {run['rows']} rows, ~5 per customer, dry run",
                dry_peak,
                "MiB",
                baseline=run["rss_rows_built_mib"],
                baseline_label="rows built",
                ratio=ratio(dry_peak, run["rss_rows_built_mib"]),
                target="< 1024",
                met=dry_peak < 1024,
            )
        )
    broken = [msg for name, run in runs.items() if "dry run" not in name for msg in invariants(f"scale {name}", run)]
    config = {"latency_ms": 0, "rate_limit": None, "earns_per_customer": sizes.scale_earns_per_customer}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}
