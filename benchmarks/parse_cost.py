"""Scenario 5: import and DAG-file parse times in fresh interpreters."""

from __future__ import annotations

from typing import Any

from benchmarks.measure import ratio, row, run_child
from benchmarks.sizes import Sizes


def parse_cost(sizes: Sizes) -> dict[str, Any]:
    """Import and DAG-file parse times in fresh interpreters (best of ``parse_runs``)."""
    samples = [run_child(["parse"]) for _ in range(sizes.parse_runs)]
    best = {key: min(sample[key] for sample in samples) * 1000 for key in samples[0]}
    rows_out = [
        row(
            "5 parse",
            "import both operators on top of airflow.sdk",
            best["operators"],
            "ms",
            baseline=best["airflow.sdk"],
            baseline_label="airflow.sdk import",
            ratio=ratio(best["operators"], best["airflow.sdk"]),
            target="< 150 added",
            met=best["operators"] < 150,
        )
    ]
    for key in sorted(best):
        if key.endswith(": DagBag"):
            name = key.removesuffix(": DagBag")
            rows_out.append(
                row(
                    "5 parse",
                    f"{name}: DagBag parse (exec alone {best[name + ': exec']:.0f} ms)",
                    best[key],
                    "ms",
                    baseline=best["common.sql operator"],
                    baseline_label="common.sql import",
                )
            )
    config = {"runs": sizes.parse_runs, "statistic": "min"}
    return {"config": config, "runs": {"best_ms": best, "samples_s": samples}, "rows": rows_out, "broken": []}
