"""Names, sizes, limits and timeouts of the cluster test, and its progress line.

One place for what every other module agrees on: the DAG and its tasks, the workers' names, the
pools, the ledger table, and :class:`Settings` (what the command line can change).
"""

# Printing progress is this test's output.
# ruff: noqa: T201

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER = Path(__file__).resolve().parent
ROOT = CLUSTER.parent

DAG_ID = "loyalty_reversals_fanout"
#: the redis connection (the broker's server, its own db) holding the vendor keys' shared budgets.
RATE_BUDGET_CONN_ID = "loyalty_rate_budget"
WORKERS = ("worker-a", "worker-b")
LEDGER_TABLE = "loyalty_reversal_ledger"
POOLS = {"xoxoday": "loyalty_xoxoday", "capillary": "loyalty_capillary"}
VENDOR_TASKS = {"xoxoday": "cancel_points", "capillary": "revoke_earns"}
RUN_IDS = ("cluster_run_1", "cluster_run_2")
#: The scenarios' DAGs (cluster/dags) and pools; the pools' sizes are settings.
RATE_DAG_ID, DEFER_DAG_ID, OTHER_DAG_ID = "loyalty_cluster_rate", "loyalty_cluster_defer", "loyalty_cluster_other"
SCENARIO_POOLS = {"rate": "loyalty_cluster_rate", "slot": "loyalty_cluster_slot"}
SCENARIOS = ("rate", "defer", "runs")


@dataclass(frozen=True)
class Settings:
    """Sizes, limits and timeouts of the test (sized for a 2-core machine shared with other jobs)."""

    seed: int = 7
    points_per_run: int = 4000
    earns_per_run: int = 3000
    customers: int = 700
    big_customer_earns: int = 400
    #: refusals the vendors will answer (redeemed earns, unknown ids, POS promotions): ~4% of items,
    #: within the DAG's default max_failed_ratio of 0.1 even for a retried task (see ``max_failed_ratio``).
    redeemed_share: float = 0.02
    invalid_share: float = 0.01
    pos_share: float = 0.01
    shards: int = 4
    #: the vendors' limits, as the sandbox enforces them (per minute, over ``rate_window`` seconds).
    capillary_rpm: int = 1200
    xoxoday_rpm: int = 60
    rate_window: float = 5.0
    #: the DAG's rate params are this share of the vendor's limit (see the README: pacing jitter).
    headroom: float = 0.9
    #: the mapped tasks of a vendor key share one rate budget in the cluster's Redis (the DAG's
    #: ``rate_budget_conn_id`` param); ``False``: each task takes limit / pool slots, as before.
    rate_budget: bool = True
    capillary_slots: int = 2
    xoxoday_slots: int = 1
    worker_concurrency: int = 2
    latency_ms: float = 150.0
    #: ``None``: the DAG's default (0.1). The retry of a killed task judges only what it still sends,
    #: and the items in doubt come back as refusals ("invalid earn id"): with the sandbox's default
    #: 8% refusals a retry late in a shard can cross 0.1, hence the lower shares above.
    max_failed_ratio: float | None = None
    #: seconds without a heartbeat before the scheduler fails a task (Airflow's default is 300).
    heartbeat_timeout: int = 30
    #: kill when the victim's Capillary task has recorded this share of its shard (mid-run).
    kill_window: tuple[float, float] = (0.1, 0.5)
    #: per DAG run; a normal run takes 60-110 s.
    run_timeout: float = 420.0
    #: seconds a task may stay queued before the scheduler requeues it (Airflow's default is 600).
    queued_timeout: int = 90
    #: the rate scenario (cluster/scenarios.py): one vendor key of its own sandbox, limited to
    #: ``rate_rpm`` over ``rate_scenario_window`` s with a ``scenario_penalty`` s penalty once exceeded;
    #: uneven shards of one id per request through a pool of ``rate_slots`` (= every worker slot).
    rate_rpm: int = 300
    rate_scenario_window: float = 10.0
    scenario_penalty: float = 60.0
    rate_headroom: float = 0.97
    rate_slots: int = 4
    #: A task's start-up (queue, worker, prepare) takes 3-8 s here, so a task needs ~10 s of work or
    #: the four slots can all be starting at once, an idle gap the whole-run rate counts.
    rate_shards: tuple[int, ...] = (18, 60, 9, 14, 10, 15, 21, 8, 12, 16, 24, 9, 14, 20, 15, 12)
    #: the deferral scenario: a vendor key allowing 5 requests per 5 s, a task set at twice that
    #: (it meets the penalty after 5 ids and waits it out deferred), a pool of one slot.
    defer_rpm: int = 60
    defer_window: float = 5.0
    defer_task_rpm: int = 120
    defer_items: int = 10
    #: requests in flight of the deferring task. With more than one, the threads waiting for a rate
    #: slot sleep through the whole vendor window before the task defers (cluster/README.md, known gaps).
    defer_concurrency: int = 8  # the operator's default max_concurrency
    #: seconds without a heartbeat before a triggerer's triggers go to another (Airflow's default 30).
    triggerer_health_check: int = 10
    #: run 3 (issue 24's size): its own day of reversals, which both of its runs extract...
    overlap_points: int = 12000
    overlap_earns: int = 8000
    #: ...each mapped over its own shard count (different, so the two runs' shards overlap)...
    overlap_shards: tuple[int, int] = (8, 6)
    #: ...and the vendors' limits and latency the sandbox enforces while it runs (raised from the
    #: above so that 20,000 items take about as long as runs 1 and 2; restored after it).
    overlap_capillary_rpm: int = 3000
    overlap_xoxoday_rpm: int = 120
    overlap_latency_ms: float = 50.0

    def dataset_sizes(self) -> tuple[int, int]:
        """Point transactions and earns in the sandbox's dataset: runs 1 and 2's days, then run 3's."""
        return 2 * self.points_per_run + self.overlap_points, 2 * self.earns_per_run + self.overlap_earns

    def dag_conf(self) -> dict[str, Any]:
        """The run's params: rates = headroom x vendor limit, pool slots = the pools' sizes."""
        conf: dict[str, Any] = {
            "shards": self.shards,
            "capillary_requests_per_minute": int(self.capillary_rpm * self.headroom),
            "capillary_pool_slots": self.capillary_slots,
            "xoxoday_requests_per_minute": int(self.xoxoday_rpm * self.headroom),
            "xoxoday_pool_slots": self.xoxoday_slots,
        }
        if self.max_failed_ratio is not None:
            conf["max_failed_ratio"] = self.max_failed_ratio
        # the DAG's default is the budget in the connection loyalty_rate_budget; null: each task alone
        conf["rate_budget_conn_id"] = RATE_BUDGET_CONN_ID if self.rate_budget else None
        return conf


def say(message: str) -> None:
    """Print a progress line."""
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Failed(Exception):
    """The deployment or a run did not get as far as the assertions."""


def dataset_args(settings: Settings) -> list[str]:
    """The sandbox's dataset options (the orchestrator generates the same dataset to know the rows)."""
    return [
        "--seed",
        str(settings.seed),
        "--points",
        str(settings.dataset_sizes()[0]),
        "--earns",
        str(settings.dataset_sizes()[1]),
        "--customers",
        str(settings.customers),
        "--big-customer-earns",
        str(settings.big_customer_earns),
        "--redeemed-share",
        str(settings.redeemed_share),
        "--invalid-share",
        str(settings.invalid_share),
        "--pos-share",
        str(settings.pos_share),
    ]
