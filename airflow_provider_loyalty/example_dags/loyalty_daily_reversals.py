"""Daily loyalty reversals: extract what must be undone, cancel points at Xoxoday, revoke earns at Capillary.

Connections: ``loyalty_warehouse`` (any common-sql database; DuckDB in the demo), ``xoxoday_default``,
``capillary_default``. The ledger lives in the warehouse: the extraction anti-joins it, so a rerun
does not even extract what is done (or refused for good), and the operators skip and record per item.

A DuckDB file admits one writing process at a time: with the demo's DuckDB warehouse under a
scheduler whose executor runs tasks in parallel, set ``max_active_tasks=1`` (``airflow dags test``
runs them one by one anyway). Server databases (PostgreSQL, Snowflake...) need nothing.

Approval (``airflow_provider_loyalty.operators.approval``): a dry run of each vendor task (same
operator, same extraction, same ledger, right before) plans what would be sent and records the exact
set (its keys in XCom, a digest in its summary). When a plan is above ``approval_threshold``, the run
waits at ``approval.approve`` (Airflow's Required Actions) showing counts, digests and a link to each
plan. The reversal tasks send only items of the approved plans: an item that reached the warehouse
after the plan is recorded as ``not_approved`` and left for the next run. Reject, or no answer in 20
hours, sends nothing, also if someone clears a reversal task afterwards. Below the threshold the run
goes straight through. Every ledger row carries the receipt: approver, time, digest.

The caps (``GATE``: threshold 5000, ``max_items`` 50000) are set here: a trigger conf may lower
``approval_threshold`` or ``max_items`` for one run, and a conf above a cap is refused.

The reversal tasks declare the ledger as an Airflow Asset (``LEDGER_ASSET``): a reconciliation DAG
can be scheduled on it (``schedule=[LEDGER_ASSET]``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_loyalty.ledger import (
    earn_key_sql,
    ensure_ledger,
    not_done_predicate,
    points_key_sql,
)
from airflow_provider_loyalty.operators.approval import ApprovalGate
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

log = logging.getLogger(__name__)

WAREHOUSE = "loyalty_warehouse"
LEDGER_TABLE = "loyalty_reversal_ledger"
#: Updated by every successful reversal task: schedule a reconciliation DAG on it.
LEDGER_ASSET = Asset(f"loyalty://{WAREHOUSE}/{LEDGER_TABLE}")
#: The approval policy: its numbers are caps a trigger conf may lower, never raise.
GATE = ApprovalGate(threshold=5000, max_items=50000)

# The second (earns: fourth) column is the business reference (the order) the ledger and the
# Reversals page keep beside each item: search the page by order id. It never names the item.
POINTS_SQL = f"""
SELECT r.unique_id, r.order_id AS reference
FROM loyalty_points_reversals r
WHERE r.reversal_date <= '{{{{ ds }}}}'
  AND {not_done_predicate("xoxoday", points_key_sql("r.unique_id"), LEDGER_TABLE)}
ORDER BY r.unique_id
"""

EARNS_SQL = f"""
SELECT r.customer_id, r.promotion_id, r.earn_id, r.order_id AS reference
FROM loyalty_earn_reversals r
WHERE r.reversal_date <= '{{{{ ds }}}}'
  AND {not_done_predicate("capillary", earn_key_sql("r.customer_id", "r.promotion_id", "r.earn_id"), LEDGER_TABLE)}
ORDER BY r.customer_id, r.promotion_id, r.earn_id
"""


@dag(
    dag_id="loyalty_daily_reversals",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "dry_run": Param(False, type="boolean", description="Plan and log only; no vendor call."),
        "max_failed_ratio": Param(
            0.1,
            type="number",
            minimum=0,
            maximum=1,
            description="Share of vendor refusals (already redeemed, invalid ids...) tolerated before a task fails.",
        ),
        "capillary_requests_per_minute": Param(
            1000, type="integer", minimum=1, description="Capillary's limit for this API key (brand-specific)."
        ),
        "xoxoday_requests_per_minute": Param(
            None, type=["null", "integer"], description="Xoxoday request rate; empty for no limit."
        ),
        **GATE.params(),  # approval_threshold, max_items: bounded by the caps above
    },
    tags=["loyalty", "example"],
    doc_md=__doc__,
)
def loyalty_daily_reversals() -> None:
    """Extract pending reversals, undo them at both vendors, report the day."""
    prepare_ledger = task(ensure_ledger, task_id="prepare_ledger")(WAREHOUSE, LEDGER_TABLE)
    extract_points = SQLExecuteQueryOperator(task_id="extract_points", conn_id=WAREHOUSE, sql=POINTS_SQL)
    extract_earns = SQLExecuteQueryOperator(task_id="extract_earns", conn_id=WAREHOUSE, sql=EARNS_SQL)

    # The dry runs read the same extraction and ledger right before the real tasks: what they plan
    # is what a person approves, and all the real tasks may send.
    plan_points = CancelPointsOperator(
        task_id="plan_points",
        unique_ids=extract_points.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run=True,
        max_items="{{ params.max_items }}",
        approval=GATE.receipt("plan_points"),
    )
    plan_earns = RevokeEarnOperator(
        task_id="plan_earns",
        earns=extract_earns.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run=True,
        max_items="{{ params.max_items }}",
        approval=GATE.receipt("plan_earns"),
    )
    approval = GATE.tasks([plan_points, plan_earns])

    # After ``approve`` (approved) or ``within_threshold``, whichever ran; a rejection skips them, and
    # each checks the receipt itself (a cleared task re-reads the answer).
    cancel_points = CancelPointsOperator(
        task_id="cancel_points",
        unique_ids=extract_points.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run="{{ params.dry_run }}",
        max_failed_ratio="{{ params.max_failed_ratio }}",
        max_requests_per_minute="{{ params.xoxoday_requests_per_minute }}",
        max_items="{{ params.max_items }}",
        approval=GATE.receipt("plan_points"),
        trigger_rule="none_failed_min_one_success",
        outlets=[LEDGER_ASSET],
    )
    revoke_earns = RevokeEarnOperator(
        task_id="revoke_earns",
        earns=extract_earns.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run="{{ params.dry_run }}",
        max_failed_ratio="{{ params.max_failed_ratio }}",
        max_requests_per_minute="{{ params.capillary_requests_per_minute }}",
        max_items="{{ params.max_items }}",
        approval=GATE.receipt("plan_earns"),
        trigger_rule="none_failed_min_one_success",
        outlets=[LEDGER_ASSET],
    )

    @task(trigger_rule="all_done")
    def report(points: dict | None, earns: dict | None) -> dict:
        """Log the day's outcome in one place; the ledger holds every item."""
        day = {"points": points or {}, "earns": earns or {}}
        for name, summary in day.items():
            if not summary:
                log.warning("%s: no summary (not approved, or the task failed before sending)", name)
                continue
            log.info(
                "%s: requested=%s succeeded=%s failed=%s skipped=%s dry_run=%s",
                name,
                summary["requested"],
                summary["succeeded"],
                summary["failed"],
                summary["skipped"],
                summary["dry_run"],
            )
            receipt = summary.get("approval") or {}
            if receipt:  # who allowed the send (see docs/approval.md), and what was kept out
                by = receipt.get("approved_by_name") or "nobody: under the approval threshold"
                log.info(
                    "  sent under %s (plan of %s, digest %s); not approved: %s",
                    by,
                    receipt.get("planned"),
                    str(receipt.get("digest"))[:16],
                    summary.get("not_approved", 0),
                )
            for failure in summary.get("failures", [])[:10]:
                log.info("  failed: %s", failure)
        return {name: {k: v for k, v in s.items() if k != "failures"} for name, s in day.items()}

    @task
    def all_reversed() -> None:
        """Fail the run when a vendor task failed (``report`` runs whatever happened upstream)."""

    prepare_ledger >> [extract_points, extract_earns]
    approval >> [cancel_points, revoke_earns]
    report(cancel_points.output, revoke_earns.output)
    [cancel_points, revoke_earns] >> all_reversed()


loyalty_daily_reversals()
