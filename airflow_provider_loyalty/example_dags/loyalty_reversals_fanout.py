"""Loyalty reversals at volume: sharded extraction, mapped operators, one Airflow pool per vendor.

Each shard of the extraction becomes one mapped task (``.partial().expand()``) that any worker of a
Celery or Kubernetes executor can run. The pools ``loyalty_xoxoday`` and ``loyalty_capillary``
bound how many of those tasks talk to a vendor at once. The tasks of a vendor key share one rate
budget, kept in the connection ``loyalty_rate_budget`` (the ``rate_budget_conn_id`` param): a
``redis`` connection where Celery runs (the broker's server, another db), or a ``postgres`` one
(the ledger's server database). Set the ``*_requests_per_minute`` params to the vendor's limit:
the tasks send at it together, a slot freed by a short shard goes to the others, and a rate-limit
answer to one pauses them all. Without that store, set ``rate_budget_conn_id`` to null: each task
then paces alone at an equal share (limit / pool slots), and capacity is lost when shards are
uneven. Earns are sharded by customer, so a customer's earns stay in one task (Capillary takes one
customer per request).

The ledger lives in the warehouse (the extraction anti-joins it), which must then be a database
several workers can write at once (PostgreSQL, Snowflake...); the demo's DuckDB file works only
while tasks run one at a time (``airflow dags test``).

Create the pools once: ``airflow pools set loyalty_capillary 4 "Capillary reversals"`` (and
``loyalty_xoxoday``), and keep the ``*_pool_slots`` params equal to their sizes. Create the budget's
connection once, e.g. ``airflow connections add loyalty_rate_budget --conn-uri redis://redis:6379/1``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_loyalty.ledger import (
    earn_key_sql,
    ensure_ledger,
    not_done_predicate,
    points_key_sql,
)
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

WAREHOUSE = "loyalty_warehouse"
# The extraction anti-joins the ledger, so the ledger lives in the warehouse (a database that several
# workers can write at once: PostgreSQL, Snowflake...).
LEDGER = WAREHOUSE
LEDGER_TABLE = "loyalty_reversal_ledger"
#: The same ledger asset as the daily DAG's: updated by each successful mapped reversal task.
LEDGER_ASSET = Asset(f"loyalty://{LEDGER}/{LEDGER_TABLE}")

POINTS_SHARD_SQL = (
    "SELECT r.unique_id, r.order_id AS reference FROM loyalty_points_reversals r "
    "WHERE r.reversal_date <= '{ds}' AND r.unique_id % {shards} = {shard} AND "
    + not_done_predicate("xoxoday", points_key_sql("r.unique_id"), LEDGER_TABLE)
    + " ORDER BY r.unique_id"
)
EARNS_SHARD_SQL = (
    "SELECT r.customer_id, r.promotion_id, r.earn_id, r.order_id AS reference FROM loyalty_earn_reversals r "
    "WHERE r.reversal_date <= '{ds}' AND r.customer_id % {shards} = {shard} AND "
    + not_done_predicate("capillary", earn_key_sql("r.customer_id", "r.promotion_id", "r.earn_id"), LEDGER_TABLE)
    + " ORDER BY r.customer_id, r.promotion_id, r.earn_id"
)


@dag(
    dag_id="loyalty_reversals_fanout",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # A backfill or a manual re-trigger may run beside the daily run: every item is claimed before it
    # is sent, so overlapping runs never both send one (docs/ledger.md, "Claims"); the pools bound the
    # vendor's rate across runs.
    max_active_runs=2,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=30)},
    params={
        "shards": Param(4, type="integer", minimum=1, maximum=1024, description="Extraction shards = mapped tasks."),
        "dry_run": Param(False, type="boolean"),
        "max_failed_ratio": Param(0.1, type="number", minimum=0, maximum=1),
        "capillary_requests_per_minute": Param(1000, type="integer", minimum=1),
        "capillary_pool_slots": Param(4, type="integer", minimum=1),
        "xoxoday_requests_per_minute": Param(600, type="integer", minimum=1),
        "xoxoday_pool_slots": Param(2, type="integer", minimum=1),
        "rate_budget_conn_id": Param(
            "loyalty_rate_budget",
            type=["null", "string"],
            description=(
                "A redis or postgres connection: the tasks of a vendor key share one rate budget. "
                "Null: each task paces alone at the limit / pool slots."
            ),
        ),
    },
    tags=["loyalty", "example"],
    doc_md=__doc__,
)
def loyalty_reversals_fanout() -> None:
    """Shard, fan out per vendor under a pool, summarise."""
    prepare_ledger = task(ensure_ledger, task_id="prepare_ledger")(LEDGER, LEDGER_TABLE)

    @task
    def shard_queries(
        template: str, params: dict | None = None, ds: str | None = None, dag_run: Any = None
    ) -> list[str]:
        """One extraction query per shard, up to the run's day: its logical date's, or the day it runs.

        A run triggered without a logical date (Airflow 3's manual runs may have none) has no ``ds``.
        """
        shards = int((params or {}).get("shards", 4))
        day = ds or dag_run.run_after.date().isoformat()
        return [template.format(ds=day, shards=shards, shard=shard) for shard in range(shards)]

    extract_points = SQLExecuteQueryOperator.partial(task_id="extract_points", conn_id=WAREHOUSE).expand(
        sql=shard_queries.override(task_id="points_shards")(POINTS_SHARD_SQL)
    )
    extract_earns = SQLExecuteQueryOperator.partial(task_id="extract_earns", conn_id=WAREHOUSE).expand(
        sql=shard_queries.override(task_id="earns_shards")(EARNS_SHARD_SQL)
    )

    cancel_points = CancelPointsOperator.partial(
        task_id="cancel_points",
        pool="loyalty_xoxoday",
        ledger_conn_id=LEDGER,
        ledger_table=LEDGER_TABLE,
        outlets=[LEDGER_ASSET],
        dry_run="{{ params.dry_run }}",
        max_failed_ratio="{{ params.max_failed_ratio }}",
        # The key's whole limit with a shared budget; a share of it (limit / slots) without one.
        max_requests_per_minute=(
            "{{ params.xoxoday_requests_per_minute if params.rate_budget_conn_id"
            " else params.xoxoday_requests_per_minute / params.xoxoday_pool_slots }}"
        ),
        rate_budget_conn_id="{{ params.rate_budget_conn_id or '' }}",
    ).expand(unique_ids=extract_points.output)
    revoke_earns = RevokeEarnOperator.partial(
        task_id="revoke_earns",
        pool="loyalty_capillary",
        ledger_conn_id=LEDGER,
        ledger_table=LEDGER_TABLE,
        outlets=[LEDGER_ASSET],
        dry_run="{{ params.dry_run }}",
        max_failed_ratio="{{ params.max_failed_ratio }}",
        max_requests_per_minute=(
            "{{ params.capillary_requests_per_minute if params.rate_budget_conn_id"
            " else params.capillary_requests_per_minute / params.capillary_pool_slots }}"
        ),
        rate_budget_conn_id="{{ params.rate_budget_conn_id or '' }}",
    ).expand(earns=extract_earns.output)

    @task(trigger_rule="all_done")
    def totals(points: list[dict], earns: list[dict]) -> dict:
        """Add up the mapped tasks' summaries."""
        keys = ("requested", "succeeded", "failed", "skipped")
        return {
            name: {k: sum(int(s.get(k, 0)) for s in summaries if s) for k in keys}
            for name, summaries in (("points", points), ("earns", earns))
        }

    @task
    def all_reversed() -> None:
        """Fail the run when a vendor task failed (``totals`` runs whatever happened upstream)."""

    prepare_ledger >> [extract_points, extract_earns]
    totals(cancel_points.output, revoke_earns.output)
    [cancel_points, revoke_earns] >> all_reversed()


loyalty_reversals_fanout()
