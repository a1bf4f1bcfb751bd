"""The DAGs of the cluster test's rate and deferral scenarios (test fixtures, not examples).

``cluster/run.py`` deploys them beside the fan-out example (``cluster/README.md``):

* ``loyalty_cluster_rate``: 16 mapped ``CancelPointsOperator`` tasks (one id per request) on one
  vendor key, run twice over the same uneven shard sizes: once sharing the key's budget in Redis at
  the vendor's limit, once with today's static split (limit / pool slots, each task alone);
* ``loyalty_cluster_defer``: one task meeting a long penalty on its vendor key, which it waits out
  deferred; ``loyalty_cluster_other``: a task of another DAG that takes the one pool slot meanwhile.

Everything a run varies (the ids of each shard, the rate, the budget's connection) is in its conf.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

from airflow.sdk import Param, dag, task

from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

#: the cluster's ledger connection (PostgreSQL)
LEDGER = "loyalty_ledger"
#: pools (their sizes are the cluster's settings)
RATE_POOL = "loyalty_cluster_rate"
SLOT_POOL = "loyalty_cluster_slot"
#: the vendor connections of the scenarios' own sandboxes (each its own vendor key)
RATE_CONN = "loyalty_xoxoday_rate"
DEFER_CONN = "loyalty_xoxoday_defer"
#: requests in flight of the deferring task (``--defer-concurrency``; the operator's default is 8)
DEFER_CONCURRENCY = int(os.environ.get("LOYALTY_CLUSTER_DEFER_CONCURRENCY", "1"))


def _scenario_params() -> dict[str, Param]:
    return {
        "shards": Param([], type="array", description="one list of unique_ids per mapped task"),
        "requests_per_minute": Param(60, type="number", minimum=1),
        "rate_budget_conn_id": Param("", type="string", description="empty: each task paces alone"),
    }


@dag(
    dag_id="loyalty_cluster_rate",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    params=_scenario_params(),
    tags=["loyalty", "cluster-test"],
)
def loyalty_cluster_rate() -> None:
    """Mapped tasks on one vendor key, one id per request."""

    @task
    def shards(params: dict | None = None) -> list[list[int]]:
        return list((params or {})["shards"])

    CancelPointsOperator.partial(
        task_id="cancel_points",
        pool=RATE_POOL,
        xoxoday_conn_id=RATE_CONN,
        ledger_conn_id=LEDGER,
        batch_size=1,
        max_requests_per_minute="{{ params.requests_per_minute }}",
        rate_budget_conn_id="{{ params.rate_budget_conn_id }}",
    ).expand(unique_ids=shards())


@dag(
    dag_id="loyalty_cluster_defer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0},
    params=_scenario_params(),
    tags=["loyalty", "cluster-test"],
)
def loyalty_cluster_defer() -> None:
    """One task whose rate is set above the vendor's limit: the vendor announces a long penalty."""

    @task
    def ids(params: dict | None = None) -> list[int]:
        return [uid for shard in (params or {})["shards"] for uid in shard]

    CancelPointsOperator(
        task_id="cancel_points",
        pool=SLOT_POOL,
        xoxoday_conn_id=DEFER_CONN,
        ledger_conn_id=LEDGER,
        batch_size=1,
        max_concurrency=DEFER_CONCURRENCY,
        max_requests_per_minute="{{ params.requests_per_minute }}",
        rate_budget_conn_id="{{ params.rate_budget_conn_id }}",
        unique_ids=ids(),
    )


@dag(
    dag_id="loyalty_cluster_other",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0},
    tags=["loyalty", "cluster-test"],
)
def loyalty_cluster_other() -> None:
    """Another DAG's work in the same one-slot pool."""

    @task(pool=SLOT_POOL)
    def other_work() -> None:
        time.sleep(3)

    other_work()


loyalty_cluster_rate()
loyalty_cluster_defer()
loyalty_cluster_other()
