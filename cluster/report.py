"""The cluster test's report: the checks with their figures, notes, timings, and on failure the logs' tails."""

# Printing is this module's job.
# ruff: noqa: T201

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cluster.config import DAG_ID
from cluster.facts import task_tries

if TYPE_CHECKING:
    from cluster.checks import Check
    from cluster.services import Cluster


def notes(handoff_bursts: Sequence[str], reconciled: int) -> list[str]:
    """The report's notes: items reconciled after the kill, and rate-limited answers at a pool-slot handoff."""
    out = []
    if reconciled:
        out.append(
            f"{reconciled} item(s) the killed try had sent without hearing back were resent by "
            "the retry and reconciled (the vendor answered 'already reversed'; status succeeded, "
            "code already_reversed)."
        )
    if handoff_bursts:
        out.append(
            f"rate-limited at a pool-slot handoff ({', '.join(handoff_bursts)}): a task's first request waits one "
            "pacing interval from the task's start, not from the last request of the task that held the slot "
            "before. Nothing was sent into the penalty window. Known gap (cluster/README.md)."
        )
    return out


def print_report(checks: list[Check], timings: dict[str, float], notes: list[str]) -> bool:
    """Print the checks and timings; return whether all passed."""
    ok = all(c.ok for c in checks)
    print()
    print("=" * 100)
    print("Cluster test: loyalty_reversals_fanout on CeleryExecutor (2 workers x 2 slots), PostgreSQL, Redis")
    print("=" * 100)
    for c in checks:
        print(f"  [{'PASS' if c.ok else 'FAIL'}] {c.name}")
        print(f"         {c.detail}")
    if notes:
        print()
        for note in notes:
            print(f"  note: {note}")
    print()
    print("  timings: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))
    print(f"\n  RESULT: {'PASS' if ok else 'FAIL'} ({sum(1 for c in checks if c.ok)}/{len(checks)} checks passed)")
    print("=" * 100, flush=True)
    return ok


def print_failure_context(cluster: Cluster | None, run_ids: Sequence[str]) -> None:
    """Tails of the service logs and of failed task logs."""
    if cluster is None:
        return
    for service in cluster.stack.services:
        print(f"\n----- {service.name} (pid {service.pid}) {service.log} -----")
        print(service.tail(25))
    logs = cluster.work / "airflow" / "logs"
    for run_id in run_ids:
        try:
            failed = [
                t
                for t in task_tries(cluster, run_id)
                if t.state in ("failed", "up_for_retry", "upstream_failed") and t.try_number
            ]
        except Exception:  # the database may be gone
            failed = []
        for t in failed:
            for path in logs.glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id={t.task_id}/**/attempt={t.try_number}.log"):
                print(f"\n----- task log {path} -----")
                print("\n".join(path.read_text(errors="replace").splitlines()[-30:]))
