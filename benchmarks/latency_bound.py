"""Scenario 2: both operators at default concurrency against a fixed latency and no limit."""

from __future__ import annotations

from typing import Any

from benchmarks import naive
from benchmarks.harness import Data, SandboxProcess, earn_rows, point_ids, split_customers
from benchmarks.measure import (
    Row,
    capillary_operator,
    invariants,
    ratio,
    row,
    run_naive,
    run_operator,
    sandbox_credentials,
    xoxoday_operator,
)
from benchmarks.sizes import Sizes

#: The operators' default number of requests in flight.
DEFAULT_CONCURRENCY = 8


def latency_bound(sizes: Sizes) -> dict[str, Any]:
    """Both operators at default concurrency against a fixed latency and no limit; and the naive loops."""
    k = sizes.latency_naive_rows
    data = Data(
        points=sizes.latency_ids + k, earns=5 * (sizes.latency_customers + k), customers=sizes.latency_customers + k
    )
    token, till, password = sandbox_credentials()
    runs: dict[str, Any] = {}
    ideal_rps = DEFAULT_CONCURRENCY / (sizes.latency_ms / 1000.0)
    with SandboxProcess(data, ["--latency-ms", str(sizes.latency_ms)]) as sandbox, sandbox.connected():
        dataset = data.generate()
        ids = point_ids(dataset)
        earns, rest = split_customers(earn_rows(dataset), sizes.latency_customers)
        runs["capillary operator"] = run_operator(capillary_operator(earns), sandbox, "capillary")
        runs["xoxoday operator"] = run_operator(xoxoday_operator(ids[k:]), sandbox, "xoxoday")
        runs["capillary naive loop"] = run_naive(naive.revoke_earns, sandbox, "capillary", till, password, rest[:k])
        runs["xoxoday naive loop"] = run_naive(naive.cancel_points, sandbox, "xoxoday", token, ids[:k])
    rows_out: list[Row] = []
    for vendor, unit in (("capillary", "earns/s"), ("xoxoday", "ids/s")):
        ours, base = runs[f"{vendor} operator"], runs[f"{vendor} naive loop"]
        rps = ratio(ours["summary"].get("requests"), ours["wall_s"])
        ours["requests_per_s"] = rps
        ours["items_per_s"] = ratio(ours["summary"].get("succeeded"), ours["wall_s"])
        base["items_per_s"] = ratio(base["summary"]["succeeded"], base["wall_s"])
        per_request = ratio(ours["summary"].get("succeeded"), ours["summary"].get("requests"))
        rows_out.append(
            row(
                "2 latency-bound",
                f"{vendor}: requests/s vs ideal {DEFAULT_CONCURRENCY}/{sizes.latency_ms:g} ms",
                rps,
                "req/s",
                baseline=ideal_rps,
                baseline_label="ideal",
                ratio=ratio(rps, ideal_rps),
                target=">= 0.8",
                met=(ratio(rps, ideal_rps) or 0) >= 0.8,
            )
        )
        rows_out.append(
            row(
                "2 latency-bound",
                f"{vendor}: items/s vs naive loop ({per_request or 0:.0f} per request)",
                ours["items_per_s"],
                unit,
                baseline=base["items_per_s"],
                baseline_label="naive loop",
                ratio=ratio(ours["items_per_s"], base["items_per_s"]),
                target="> 20x" if vendor == "xoxoday" else "",
                met=(ratio(ours["items_per_s"], base["items_per_s"]) or 0) > 20 if vendor == "xoxoday" else None,
            )
        )
    broken = [msg for name in ("capillary operator", "xoxoday operator") for msg in invariants(name, runs[name])]
    config = {"latency_ms": sizes.latency_ms, "concurrency": DEFAULT_CONCURRENCY, "dataset": data}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}
