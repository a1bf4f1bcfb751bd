"""Scenario 1: revokeEarn against a sandbox limit of R/min enforced over short sliding windows."""

from __future__ import annotations

import math
from typing import Any

from benchmarks import naive
from benchmarks.harness import Data, SandboxProcess, earn_rows
from benchmarks.measure import (
    capillary_operator,
    invariants,
    ratio,
    row,
    run_naive,
    run_operator,
    sandbox_credentials,
)
from benchmarks.sizes import Sizes

#: Client rate as a share of the vendor's limit in the "with margin" run of scenario 1.
RATE_MARGIN = 0.98


def rate_bound(sizes: Sizes) -> dict[str, Any]:
    """revokeEarn against a sandbox limit of R/min enforced over short sliding windows.

    Every client gets a fresh sandbox: a vendor's window must not still hold the previous client's
    requests. The operator runs twice over the same rows, once with its rate set to the vendor's
    limit and once a little under it; the naive loop pauses ``60/R`` after each row.
    """
    rpm, n = sizes.rate_rpm, sizes.rate_requests
    data = Data(earns=5 * n, customers=n)
    options = ["--capillary-rpm", str(rpm), "--rate-window-seconds", str(sizes.rate_window_s)]
    options += ["--latency-ms", str(sizes.rate_latency_ms)]
    _, till, password = sandbox_credentials()
    rows = earn_rows(data.generate())
    limit = math.ceil(rpm * sizes.rate_window_s / 60 - 1e-9)
    runs: dict[str, Any] = {}
    for name, client_rpm in (
        ("operator, client rate = vendor limit", float(rpm)),
        (f"operator, client rate = {RATE_MARGIN:g} x vendor limit", rpm * RATE_MARGIN),
    ):
        with SandboxProcess(data, options) as sandbox, sandbox.connected():
            operator = capillary_operator(rows, max_requests_per_minute=client_rpm)
            run = run_operator(operator, sandbox, "capillary")
            run["rate_limited_answers"] = _rate_limited_answers(sandbox.request_log("capillary"), limit)
        run["client_rpm"] = client_rpm
        run["ideal_s"] = run["summary"].get("requests", 0) * 60.0 / rpm
        run["efficiency"] = ratio(run["ideal_s"], run["wall_s"])
        runs[name] = run
    with SandboxProcess(data, options) as sandbox:
        naive_rows = rows[: sizes.rate_naive_rows]
        run = run_naive(naive.revoke_earns, sandbox, "capillary", till, password, naive_rows, 60.0 / rpm)
    run["ideal_s"] = run["summary"]["requests"] * 60.0 / rpm
    run["efficiency"] = ratio(run["ideal_s"], run["wall_s"])
    runs["naive loop, pause 60/R between rows"] = run
    at, margin, base = runs.values()
    label = f"R={rpm}/min over {sizes.rate_window_s:g} s windows"
    items = {name: ratio(r["summary"].get("succeeded"), r["wall_s"]) for name, r in runs.items()}
    naive_items = items["naive loop, pause 60/R between rows"]
    rows_out = [
        row(
            "1 rate-bound",
            f"efficiency (N/R) / actual, client at R ({label})",
            at["efficiency"],
            "",
            baseline=base["efficiency"],
            baseline_label="naive loop",
            target=">= 0.95",
            met=(at["efficiency"] or 0) >= 0.95,
        ),
        row(
            "1 rate-bound",
            f"efficiency, client at {RATE_MARGIN:g} R",
            margin["efficiency"],
            "",
            target=">= 0.95",
            met=(margin["efficiency"] or 0) >= 0.95,
        ),
    ]
    for name, run in (("client at R", at), (f"client at {RATE_MARGIN:g} R", margin)):
        box = run["sandbox"]
        rows_out.append(
            row(
                "1 rate-bound",
                f"{name}: 429s / sent in penalty / failed (max {box['max_requests_in_window']} in a window"
                f" of {box['rate_limit']})",
                box["rate_limited"],
                f"/ {box['requests_in_penalty']} / {run['summary'].get('failed')}",
                target="0 in penalty, 0 failed",
                met=not box["requests_in_penalty"] and not run["summary"].get("failed"),
            )
        )
    rows_out.append(
        row(
            "1 rate-bound",
            "earns/s, client at R, vs naive loop",
            items["operator, client rate = vendor limit"],
            "earns/s",
            baseline=naive_items,
            baseline_label="naive loop",
            ratio=ratio(items["operator, client rate = vendor limit"], naive_items),
        )
    )
    broken = [msg for name, run in list(runs.items())[:2] for msg in invariants(f"rate-bound {name}", run)]
    config = {"rpm": rpm, "window_s": sizes.rate_window_s, "latency_ms": sizes.rate_latency_ms, "dataset": data}
    return {"config": config, "runs": runs, "rows": rows_out, "broken": broken}


def _rate_limited_answers(log: list[dict[str, Any]], limit: int) -> list[dict[str, float]]:
    """For each 429: when it came, and over how long the ``limit`` accepted requests before it and it arrived.

    A span shorter than the window is why the vendor refused: ``limit + 1`` requests in one window.
    """
    calls = [(entry["monotonic"], entry["status"]) for entry in log if entry["endpoint"] == "revoke_earn"]
    accepted: list[float] = []
    out = []
    for arrived, status in calls:
        if status != 429:
            accepted.append(arrived)
        elif len(accepted) >= limit:
            out.append(
                {
                    "at_s": round(arrived - calls[0][0], 4),
                    "span_of_limit_plus_1_arrivals_s": round(arrived - accepted[-limit], 4),
                }
            )
    return out
