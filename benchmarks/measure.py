"""What every scenario shares: the operators as benchmarked, one measured run, its invariants, a table row.

The operators run in this process (the sandbox is in another one, so this process's CPU time is
the client's alone) except where a clean process is the point (:func:`run_child`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.harness import (
    ROOT,
    Data,
    FakeTI,
    SandboxProcess,
    earn_rows,
    log_file,
    point_ids,
    quiet,
    timed,
    wait_for_url,
)

if TYPE_CHECKING:
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

Row = dict[str, Any]


def row(
    scenario: str,
    metric: str,
    value: float | None,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str = "",
    ratio: float | None = None,
    target: str = "",
    met: bool | None = None,
) -> Row:
    """One line of the results table."""
    return {
        "scenario": scenario,
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_label": baseline_label,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def capillary_operator(earns: Sequence[tuple[int, str, str]], **options: Any) -> RevokeEarnOperator:
    """``RevokeEarnOperator`` over ``earns`` with its defaults, unpaced unless ``options`` set a rate."""
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator

    options.setdefault("max_requests_per_minute", None)
    return RevokeEarnOperator(task_id="revoke_earns", earns=earns, **options)


def xoxoday_operator(unique_ids: Sequence[int], **options: Any) -> CancelPointsOperator:
    """``CancelPointsOperator`` over ``unique_ids`` with its defaults."""
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    return CancelPointsOperator(task_id="cancel_points", unique_ids=unique_ids, **options)


def sandbox_credentials() -> tuple[str, str, str]:
    """Xoxoday's access token, Capillary's till and password, as the naive loops take them."""
    from airflow_provider_loyalty import sandbox

    return sandbox.XOXODAY_ACCESS_TOKEN, sandbox.CAPILLARY_TILL, sandbox.CAPILLARY_PASSWORD


def run_operator(operator: Any, sandbox: SandboxProcess, vendor: str) -> dict[str, Any]:
    """Execute ``operator`` against ``sandbox``; return time, CPU, its summary and the sandbox's counters.

    The summary is what the task would push to XCom; ``error`` is set when ``execute`` raised.
    """
    sandbox.reset_stats()
    error = None
    summary: dict[str, Any] = {}
    server_cpu = sandbox.cpu_seconds()
    with quiet(), timed() as spent:
        try:
            summary = operator.execute({"ti": FakeTI()})
        except Exception as exc:  # recorded, and reported as a broken invariant
            error = f"{type(exc).__name__}: {exc}"
    server_cpu = difference(sandbox.cpu_seconds(), server_cpu)
    stats = sandbox.stats(vendor)
    failures = summary.pop("failures", [])
    return {
        "wall_s": spent.wall,
        "cpu_s": spent.cpu,
        "sandbox_cpu_s": server_cpu,
        "summary": summary,
        "first_failures": failures[:3],
        "error": error,
        "sandbox": {
            key: stats.get(key)
            for key in (
                "api_requests",
                "by_status",
                "rate_limited",
                "requests_in_penalty",
                "duplicate_attempts",
                "max_requests_in_window",
                "rate_limit",
                "items_received",
            )
        },
    }


def run_naive(function: Callable[..., dict[str, int]], sandbox: SandboxProcess, vendor: str, *args: Any) -> dict:
    """Run a baseline loop from :mod:`benchmarks.naive`; same shape of result as :func:`run_operator`."""
    sandbox.reset_stats()
    server_cpu = sandbox.cpu_seconds()
    with timed() as spent:
        counts = function(sandbox.url, *args)
    server_cpu = difference(sandbox.cpu_seconds(), server_cpu)
    stats = sandbox.stats(vendor)
    return {
        "wall_s": spent.wall,
        "cpu_s": spent.cpu,
        "sandbox_cpu_s": server_cpu,
        "summary": counts,
        "sandbox": {key: stats.get(key) for key in ("api_requests", "rate_limited", "requests_in_penalty")},
    }


def run_child(args: list[str], sandbox: SandboxProcess | None = None) -> dict[str, Any]:
    """Run ``python -m benchmarks.child ARGS`` and return what it wrote to ``--out``.

    With ``sandbox`` (started with ``wait=False``), the child waits for it; the sandbox's CPU time
    from the moment it serves until the child ends is added as ``sandbox_cpu_s``.
    """
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
        out = Path(tmp) / "out.json"
        with open(log_file("client.log"), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.child", *args, "--out", str(out)], cwd=ROOT, stdout=log, stderr=log
            )
        server_cpu = None
        if sandbox is not None:
            try:
                sandbox.url = wait_for_url(sandbox.ready_file, sandbox.process)
            except RuntimeError:
                process.kill()
                process.wait()
                raise
            server_cpu = sandbox.cpu_seconds()
        returncode = process.wait()
        if returncode != 0 or not out.exists():
            raise RuntimeError(f"benchmarks.child {' '.join(args)} failed ({returncode}); see {log_file('client.log')}")
        result: dict[str, Any] = json.loads(out.read_text())
        if sandbox is not None:
            result["sandbox_cpu_s"] = difference(sandbox.cpu_seconds(), server_cpu)
        return result


def invariants(name: str, run: dict[str, Any]) -> list[str]:
    """What must hold for every operator run, whatever the timings: broken ones, as messages."""
    summary, box = run["summary"], run["sandbox"]
    broken = []
    if run.get("error"):
        broken.append(f"{name}: execute raised {run['error']}")
    if not summary:
        return broken
    if summary.get("failed"):
        broken.append(f"{name}: {summary['failed']} item(s) failed, e.g. {run.get('first_failures')}")
    if summary.get("succeeded") != summary.get("requested"):
        broken.append(f"{name}: succeeded {summary.get('succeeded')} != requested {summary.get('requested')}")
    if box.get("requests_in_penalty"):
        broken.append(f"{name}: {box['requests_in_penalty']} request(s) sent inside a rate-limit penalty window")
    if box.get("duplicate_attempts"):
        broken.append(f"{name}: {box['duplicate_attempts']} item(s) sent twice")
    return broken


def warm_up() -> dict[str, Any]:
    """One tiny run of each operator, so that no scenario pays first-use costs.

    The first run in a process imports what the hooks import lazily (pydantic models, the token
    store's Variable access) and builds sessions; a task pays that once per process, whatever
    its size, so it would only blur per-request figures.
    """
    data = Data(points=10, earns=10, customers=2)
    with SandboxProcess(data) as sandbox, sandbox.connected():
        dataset = data.generate()
        runs = {
            "xoxoday": run_operator(xoxoday_operator(point_ids(dataset)), sandbox, "xoxoday"),
            "capillary": run_operator(capillary_operator(earn_rows(dataset)), sandbox, "capillary"),
        }
    return {"seconds": {name: round(run["wall_s"], 3) for name, run in runs.items()}}
