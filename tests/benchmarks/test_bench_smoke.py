"""The benchmark runner at smoke size: it runs, writes a well-formed result, and the invariants hold.

Timings are never asserted here (they depend on the machine); only what must be true at any speed:
every item accounted for and succeeded, nothing sent twice, nothing sent inside a rate-limit
penalty window.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCENARIOS = {"rate", "latency", "cpu", "scale", "parse", "auto", "claims", "page"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, str(Path(REPO) / "benchmarks" / "run.py"), "--smoke", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 rate-bound" in done.stdout  # the table was printed
    return json.loads(out.read_text())


def test_result_is_well_formed(result: dict) -> None:
    assert result["meta"]["mode"] == "smoke"
    assert set(result["scenarios"]) == SCENARIOS
    assert result["invariants_broken"] == []
    scenarios_in_table = {row["scenario"].split()[0] for row in result["table"]}
    assert scenarios_in_table == {"1", "2", "3", "4", "5", "6", "7", "8"}
    for row in result["table"]:
        assert set(row) >= {"scenario", "metric", "value", "unit", "baseline", "ratio", "target", "met"}
        assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"]), row
        assert row["met"] in (True, False, None)


def operator_runs(result: dict) -> list[tuple[str, dict]]:
    runs = []
    for name, scenario in result["scenarios"].items():
        for run_name, run in scenario["runs"].items():
            if isinstance(run, dict) and "summary" in run and "naive" not in run_name and "transport" not in run_name:
                runs.append((f"{name}: {run_name}", run))
    return runs


def test_every_operator_run_succeeded_exactly_once(result: dict) -> None:
    runs = operator_runs(result)
    assert len(runs) >= 8
    for name, run in runs:
        summary = run["summary"]
        assert summary["requested"] > 0, name
        assert summary["failed"] == 0, name
        assert summary["succeeded"] == summary["requested"], name
        if "dry run" in name:
            continue
        assert run["sandbox"]["requests_in_penalty"] == 0, name
        assert run["sandbox"]["duplicate_attempts"] == 0, name


def test_baselines_ran_in_the_same_invocation(result: dict) -> None:
    naive = [
        run for scenario in result["scenarios"].values() for name, run in scenario["runs"].items() if "naive" in name
    ]
    assert len(naive) >= 5
    for run in naive:
        assert run["summary"]["failed"] == 0
        assert run["summary"]["succeeded"] == run["summary"]["requested"] > 0
    best = result["scenarios"]["parse"]["runs"]["best_ms"]
    assert best["airflow.sdk"] > 0 and best["operators"] > 0


def test_auto_rate_scenario_reports_every_variant(result: dict) -> None:
    runs = result["scenarios"]["auto"]["runs"]
    assert runs, "no (limit, window) combination ran"
    for combination in runs.values():
        for variant in ("auto, first run", "auto, learned run", "auto, first run, window untold"):
            for vendor in ("capillary", "xoxoday"):
                figures = combination[variant][vendor]
                assert figures["requests"] > 0, (variant, vendor)
                assert 0 <= figures["share"] <= 1.2
                assert figures["in_penalty"] == 0, (variant, vendor)
        for vendor in ("capillary", "xoxoday"):
            assert combination["auto, learned run"][vendor]["pace"]["mode"] == "auto"
