"""`make cluster-test`: the fan-out example DAG on a real CeleryExecutor deployment, on loopback only.

What it starts (every process a child of this script, torn down by PID whatever happens):

* PostgreSQL (a throwaway cluster of its own: ``initdb`` in the work dir, own port) holding the
  Airflow metadata database, the Celery result backend, and the ``loyalty`` database with the
  warehouse tables and the reversal ledger;
* Redis (own port, no persistence) as the Celery broker;
* the vendor sandbox (both vendors' APIs) with a rate limit enforced over short windows;
* ``airflow api-server``, ``scheduler``, ``dag-processor`` and two ``airflow celery worker``
  (``worker-a`` and ``worker-b``, 2 slots each).

Then two runs of ``loyalty_reversals_fanout``:

1. a clean run over a day of reversals, in which the sandbox expires Xoxoday's access tokens as
   each ``cancel_points`` try starts, so the rotating token pair must pass from worker to worker
   (through the Airflow Variable the hook keeps it in);
2. a run over the next day's reversals in which one worker (its whole process tree) is SIGKILLed
   while its mapped Capillary task is sending; the scheduler notices the missing heartbeats and the
   task is retried on the other worker.

Every verdict comes from the sandbox's counters and the ledger, not from Airflow's word: exactly
once per item at the vendor, an outcome in the ledger for every extracted item, the pools bounding
parallel tasks (from task instance start/end times, killed tries included), no request inside a
rate-limit window, mapped tasks on both workers, the killed tasks retried elsewhere. Items whose
answer the killed task never recorded ("in doubt") are counted and checked to be applied once.

This script parses the options and wires the two runs; the modules of ``cluster/`` do the work
(see ``cluster/__init__.py``). Usage: ``python cluster/run.py [--keep] [--no-kill]``. Logs stay in
the work dir on failure.
"""


# Printing is this script's report; the package is importable only once the path is set up.
# ruff: noqa: T201, E402

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python cluster/run.py``: import ``cluster`` from the repository root
    _HERE = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
        sys.path.pop(0)  # our modules (config, report...) must not shadow top-level modules of others
    sys.path.insert(0, str(_HERE.parent))

from cluster.chaos import Killer, TokenChurn
from cluster.checks import Check, run1_checks, run2_checks, token_checks
from cluster.config import DAG_ID, RUN_IDS, SCENARIOS, Failed, Settings, say
from cluster.dataset import RunData, create_warehouse, load_day, overlap_day, split_dataset
from cluster.facts import RunFacts, attempts_of, collect, collect_tokens, run_state
from cluster.overlap import overlap_checks, run_overlap
from cluster.report import notes, print_failure_context, print_report
from cluster.scenarios import Deferral, run_rate, start_sandboxes, wait_parsed
from cluster.services import (
    Cluster,
    airflow_env,
    preflight,
    start_airflow,
    start_postgres,
    start_redis,
    start_sandbox,
)
from cluster.stack import Stack, become_subreaper, free_port


# ========================================================================================= one run
def trigger(cluster: Cluster, settings: Settings, run_id: str, *, dated: bool = True) -> None:
    """Trigger a run with the test's params (the CLI, as a user would), dated now unless ``dated`` is false."""
    logical = ["--logical-date", datetime.now(timezone.utc).replace(microsecond=0).isoformat()] if dated else []
    cluster.airflow(
        "dags", "trigger", DAG_ID, "--run-id", run_id, *logical, "--conf", json.dumps(settings.dag_conf()),
    )  # fmt: skip


def wait_for_run(cluster: Cluster, run_id: str, timeout: float, on_tick: Callable[[], None] | None = None) -> str:
    """Poll the run until it ends; ``on_tick`` is called on every poll while it runs."""
    deadline = time.monotonic() + timeout
    while True:
        state = run_state(cluster, run_id)
        if state in ("success", "failed"):
            return state
        # read on every poll: the deferral scenario replaces the triggerer while run 1 goes on
        for service in [s for s in cluster.stack.services if s.name not in cluster.workers]:
            if not service.running():
                raise Failed(f"{service.name} exited (code {service.popen.returncode}) during {run_id}")
        if time.monotonic() > deadline:
            raise Failed(f"{run_id} still {state} after {timeout:.0f} s")
        if on_tick is not None:
            on_tick()
        time.sleep(0.5)


def execute_run(
    cluster: Cluster, settings: Settings, run_id: str, run: RunData, on_tick: Callable[[], None]
) -> RunFacts:
    """Load the day, reset the sandbox's counters, trigger, wait (calling ``on_tick``), collect."""
    load_day(cluster, run)
    cluster.sandbox("/_sandbox/reset-stats", "POST", {})
    say(f"{run_id}: {len(run.points)} point and {len(run.earns)} earn reversals added; triggering")
    started = time.monotonic()
    trigger(cluster, settings, run_id)
    state = wait_for_run(cluster, run_id, settings.run_timeout, on_tick)
    seconds = time.monotonic() - started
    say(f"{run_id}: {state} in {seconds:.0f} s (from trigger)")
    return collect(cluster, run_id, run, state, seconds)


# ===================================================================================== the two runs
def deploy(cluster: Cluster, settings: Settings, bindir: Path, scenarios: set[str]) -> tuple[RunData, RunData]:
    """Start every service and create the warehouse; return the data of run 1 and run 2."""
    access, refresh = f"cluster-access-{secrets.token_hex(8)}", f"cluster-refresh-{secrets.token_hex(8)}"
    start_postgres(cluster, bindir)
    start_redis(cluster)
    start_sandbox(cluster, settings, access, refresh)
    scenario_conns = start_sandboxes(cluster, settings, scenarios)
    cluster.api_port = free_port()
    cluster.env = {**airflow_env(cluster, settings, access, refresh), **scenario_conns}
    say(
        f"PostgreSQL :{cluster.pg_port}, Redis :{cluster.redis_port}, sandbox {cluster.sandbox_url}, "
        f"api-server :{cluster.api_port}"
    )
    today = datetime.now(timezone.utc).date()
    first, second, known = split_dataset(settings, today)
    counts = cluster.sandbox("/_sandbox/counts")
    if {key: counts[key] for key in known} != known:
        raise Failed(f"the sandbox's dataset differs from ours: it knows {counts}, we expect {known}")
    create_warehouse(cluster)
    start_airflow(cluster, settings)
    return first, second


def run_both(
    cluster: Cluster,
    settings: Settings,
    first: RunData,
    second: RunData,
    *,
    kill: bool,
    checks: list[Check],
    timings: dict[str, float],
    overlap: bool = True,
    beside: Deferral | None = None,
) -> list[str]:
    """Run 1 (tokens expiring), run 2 (a worker killed) unless ``kill`` is false, run 3 unless ``overlap`` is.

    Run 3: two runs over the same items at once, a worker killed (:mod:`cluster.overlap`). The
    deferral scenario ``beside`` (if any) runs beside run 1, which leaves a worker slot free.

    Appends to ``checks`` and ``timings`` as it goes (a failure half-way still reports run 1);
    returns the report's notes.
    """
    churn = TokenChurn(cluster, RUN_IDS[0])
    if beside is not None:
        beside.start()
    facts1 = execute_run(cluster, settings, RUN_IDS[0], first, churn.tick if beside is None else both(churn, beside))
    timings["run 1"] = facts1.seconds
    extra: list[str] = []
    if beside is not None:
        beside.wait(settings.run_timeout)
        c0, extra = beside.finish(timings)
        checks += c0
    c1, numbers1 = run1_checks(facts1, first, settings)
    checks += c1 + token_checks(facts1.run_id, collect_tokens(cluster, facts1, churn.expired))
    bursts = list(numbers1.get("handoff_bursts", []))
    reconciled = 0
    if kill:
        killer = Killer(cluster, RUN_IDS[1], second.earns_per_shard(settings.shards), settings.kill_window)
        facts2 = execute_run(cluster, settings, RUN_IDS[1], second, killer.tick)
        timings["run 2 (worker killed)"] = facts2.seconds
        c2, numbers2 = run2_checks(facts2, second, attempts_of(cluster, first), killer.kill, settings)
        checks += c2
        bursts += numbers2.get("handoff_bursts", [])
        reconciled = int(numbers2.get("reconciled", 0))
    if overlap:
        third = overlap_day(settings, datetime.now(timezone.utc).date())
        facts3, kill3 = run_overlap(cluster, settings, third, trigger, wait_for_run)
        timings["run 3 (two runs at once, a worker killed)"] = facts3.seconds
        checks += overlap_checks(facts3, third, kill3)
    return extra + notes(bursts, reconciled)


def both(churn: TokenChurn, beside: Deferral) -> Callable[[], None]:
    """Run 1's tick: its token expiries, and the deferral scenario beside it."""

    def tick() -> None:
        churn.tick()
        beside.tick()

    return tick


def run_scenarios(
    cluster: Cluster, settings: Settings, first: RunData, second: RunData, args: argparse.Namespace,
    checks: list[Check], timings: dict[str, float],
) -> list[str]:  # fmt: skip
    """The scenarios ``--only`` selects (all by default): rate, then runs 1-3 with the deferral beside run 1."""
    scenarios = set(args.only or SCENARIOS)
    report_notes: list[str] = []
    if scenarios & {"rate", "defer"}:
        wait_parsed(cluster)
    if "rate" in scenarios:
        c, n = run_rate(cluster, settings, timings)
        checks += c
        report_notes += n
    deferral = Deferral(cluster, settings) if "defer" in scenarios else None
    if "runs" in scenarios:
        report_notes += run_both(
            cluster, settings, first, second, kill=not args.no_kill, checks=checks, timings=timings,
            overlap=not (args.no_kill or args.no_overlap), beside=deferral,
        )  # fmt: skip
    elif deferral is not None:
        deferral.start()
        deferral.wait(settings.run_timeout)
        c, n = deferral.finish(timings)
        checks += c
        report_notes += n
    return report_notes


# ============================================================================================== main
def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Settings]:
    """The command line, and the settings it changes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data) even on success")
    parser.add_argument("--no-kill", action="store_true", help="run 1 only (no killed-worker run)")
    parser.add_argument(
        "--no-overlap", action="store_true", help="skip run 3 (two runs over the same items at once, a worker killed)"
    )
    parser.add_argument("--workdir", type=Path, help="parent of the work dir (default: the system temp dir)")
    defaults = Settings()
    parser.add_argument(
        "--headroom",
        type=float,
        default=defaults.headroom,
        help=f"DAG rate params as a share of the vendor limit (default {defaults.headroom})",
    )
    parser.add_argument(
        "--max-failed-ratio",
        type=float,
        default=defaults.max_failed_ratio,
        help="the DAG's max_failed_ratio param (default: the DAG's own)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"dataset seed (default {defaults.seed})")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only these scenarios (repeatable): rate (shared budget vs static split), defer (a long "
        "penalty waited out deferred, the triggerer restarted), runs (runs 1-3 of the fan-out DAG); default all",
    )
    parser.add_argument(
        "--no-rate-budget",
        action="store_true",
        help="each mapped task paces alone at limit / pool slots (no shared budget in Redis)",
    )
    parser.add_argument(
        "--defer-concurrency",
        type=int,
        default=defaults.defer_concurrency,
        help=f"requests in flight of the deferral scenario's task (default {defaults.defer_concurrency})",
    )
    args = parser.parse_args(argv)
    return args, replace(
        defaults,
        headroom=args.headroom,
        max_failed_ratio=args.max_failed_ratio,
        seed=args.seed,
        rate_budget=not args.no_rate_budget,
        defer_concurrency=args.defer_concurrency,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Bring the deployment up, run the two DAG runs, assert, tear down; return the exit status."""
    args, settings = parse_args(argv)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    become_subreaper()
    timings: dict[str, float] = {}
    checks: list[Check] = []
    report_notes: list[str] = []
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="loyalty-cluster-", dir=args.workdir))
    work.chmod(0o711)  # PostgreSQL runs as its own user below it
    cluster: Cluster | None = None
    ok = False
    try:
        bindir = preflight()
        cluster = Cluster(work=work, stack=Stack(work / "logs"))
        cluster.stack.logs.mkdir()
        say(f"work dir {work}")
        first, second = deploy(cluster, settings, bindir, set(args.only or SCENARIOS))
        timings["start-up"] = time.monotonic() - started
        say(f"deployment up in {timings['start-up']:.0f} s: {', '.join(s.name for s in cluster.stack.services)}")
        report_notes = run_scenarios(cluster, settings, first, second, args, checks, timings)
        timings["total"] = time.monotonic() - started
        ok = print_report(checks, timings, report_notes)
    except (Failed, RuntimeError) as exc:
        print(f"\n[cluster] FAILED before the assertions: {exc}", flush=True)
        if checks:
            print_report(checks, timings, report_notes)
    except Exception:
        print("\n[cluster] FAILED with an unexpected error:", flush=True)
        traceback.print_exc()
    except KeyboardInterrupt as exc:
        print(f"\n[cluster] interrupted ({str(exc) or 'Ctrl-C'}); tearing down", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        if not ok:
            print_failure_context(cluster, RUN_IDS)
        if cluster is not None:
            say("tearing down (every process by PID)")
            cluster.stack.stop_all()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[cluster] logs and data kept in {work}", flush=True)
        say(f"finished in {time.monotonic() - started:.0f} s: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
