"""Daily loyalty reversals: extract what must be undone, cancel points at Xoxoday, revoke earns at Capillary.

Connections: ``loyalty_warehouse`` (any common-sql database; DuckDB in the demo), ``xoxoday_default``,
``capillary_default``. The ledger lives in the warehouse: the extraction anti-joins it, so a rerun
does not even extract what is done (or refused for good), and the operators skip and record per item.

A DuckDB file admits one writing process at a time: with the demo's DuckDB warehouse under a
scheduler whose executor runs tasks in parallel, set ``max_active_tasks=1`` (``airflow dags test``
runs them one by one anyway). Server databases (PostgreSQL, Snowflake...) need nothing.

Approval: a dry run of each vendor task (same operator, same extraction, same ledger, right before)
counts what would be sent. When a vendor's count is above the ``approval_threshold`` param, the run
pauses at ``approve`` (Airflow's Required Actions) with the counts and a sample; the reversal tasks
run only once a person approves, and send at most what the dry run counted (their ``max_items`` is
the smaller of that count and the ``max_items`` param). Below the threshold ``approve`` is skipped
and the run goes straight through.

The reversal tasks declare the ledger as an Airflow Asset (``LEDGER_ASSET``): a reconciliation DAG
can be scheduled on it (``schedule=[LEDGER_ASSET]``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_loyalty.ledger import (
    earn_key_sql,
    ensure_ledger,
    not_done_predicate,
    points_key_sql,
)
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

log = logging.getLogger(__name__)

WAREHOUSE = "loyalty_warehouse"
LEDGER_TABLE = "loyalty_reversal_ledger"
#: Updated by every successful reversal task: schedule a reconciliation DAG on it.
LEDGER_ASSET = Asset(f"loyalty://{WAREHOUSE}/{LEDGER_TABLE}")
#: Items per vendor shown to the approver.
APPROVAL_SAMPLE = 10
VENDORS = (("points", "Xoxoday cancelPoints", "unique_ids"), ("earns", "Capillary revokeEarn", "earns"))

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


def planned(plan: dict | None) -> int:
    """Items a dry-run summary would send (0 when its input was empty)."""
    return int((plan or {}).get("planned", 0))


def approval_route(points: dict | None, earns: dict | None, threshold: int, dry_run: bool = False) -> str:
    """``approve`` when a vendor's dry run would send more than ``threshold`` items, else ``within_threshold``."""
    if not dry_run and max(planned(points), planned(earns)) > int(threshold):
        return "approve"
    return "within_threshold"


def approval_body(points: dict | None, earns: dict | None, threshold: int) -> str:
    """What the approver reads: counts per vendor from the dry runs, and a sample of the items."""
    plans = {"points": points or {}, "earns": earns or {}}
    lines = [
        f"A vendor task would send more than **{threshold}** items (`approval_threshold`). "
        "Reversals cannot be undone at the vendor.",
        "",
        "| vendor | items to send | requests | skipped (done per ledger) | input rows | above max_items |",
        "|---|---|---|---|---|---|",
    ]
    for key, vendor, _ in VENDORS:
        plan = plans[key]
        lines.append(
            f"| {vendor} | **{planned(plan)}** | {plan.get('requests', 0)} | {plan.get('skipped', 0)} "
            f"| {plan.get('requested', 0)} | {'yes: the task will refuse' if plan.get('max_items_exceeded') else 'no'} |"
        )
    lines += [
        "",
        "**Approve**: the reversal tasks send these items, never more (their `max_items` is set to the counts "
        "above). **Reject**: nothing is sent; the items stay pending for the next run.",
    ]
    for key, vendor, what in VENDORS:
        sample = plans[key].get("sample") or []
        if not sample:
            continue
        columns = list(sample[0])
        lines += [
            "",
            f"**{vendor}**: first {min(len(sample), APPROVAL_SAMPLE)} of {planned(plans[key])} {what}",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
        ]
        lines += ["| " + " | ".join(str(item.get(c, "")) for c in columns) + " |" for item in sample[:APPROVAL_SAMPLE]]
    return "\n".join(lines)


def approved_limit(plan_task: str) -> str:
    """``max_items`` of a reversal task: the ``max_items`` param, and no more than its dry run counted."""
    return f"{{{{ [params.max_items, ((ti.xcom_pull(task_ids='{plan_task}') or {{}}).get('planned', 0))] | min }}}}"


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
        "approval_threshold": Param(
            5000,
            type="integer",
            minimum=0,
            description="Above this many items to send at one vendor, a person approves the run first.",
        ),
        "max_items": Param(
            50000,
            type="integer",
            minimum=0,
            description="A vendor task refuses to send more items than this, approved or not (a broken extraction).",
        ),
    },
    tags=["loyalty", "example"],
    doc_md=__doc__,
)
def loyalty_daily_reversals() -> None:
    """Extract pending reversals, undo them at both vendors, report the day."""
    prepare_ledger = task(ensure_ledger, task_id="prepare_ledger")(WAREHOUSE, LEDGER_TABLE)
    extract_points = SQLExecuteQueryOperator(task_id="extract_points", conn_id=WAREHOUSE, sql=POINTS_SQL)
    extract_earns = SQLExecuteQueryOperator(task_id="extract_earns", conn_id=WAREHOUSE, sql=EARNS_SQL)

    # The dry runs read the same extraction and ledger right before the real tasks: their counts are
    # what the approver sees and what the real tasks may send at most.
    plan_points = CancelPointsOperator(
        task_id="plan_points",
        unique_ids=extract_points.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run=True,
        max_items="{{ params.max_items }}",
    )
    plan_earns = RevokeEarnOperator(
        task_id="plan_earns",
        earns=extract_earns.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run=True,
        max_items="{{ params.max_items }}",
    )

    @task.branch
    def approval_needed(points: dict | None, earns: dict | None, params: dict | None = None, ti=None) -> str:
        """Route to ``approve`` above the threshold; the approver's text goes to XCom ``approval_body``."""
        threshold = int((params or {})["approval_threshold"])
        ti.xcom_push(key="approval_body", value=approval_body(points, earns, threshold))
        route = approval_route(points, earns, threshold, dry_run=bool((params or {}).get("dry_run")))
        log.info("Planned: %d unique_ids, %d earns; %s", planned(points), planned(earns), route)
        return route

    approve = ApprovalOperator(
        task_id="approve",
        subject="Loyalty reversals of {{ ds }}: approve sending them to the vendors?",
        body="{{ ti.xcom_pull(task_ids='approval_needed', key='approval_body') }}",
        defaults="Reject",  # unanswered for a day: nothing is sent, and the next day's run can start
        response_timeout=timedelta(hours=20),
    )
    within_threshold = EmptyOperator(task_id="within_threshold")

    # After ``approve`` (approved) or ``within_threshold``, whichever ran; a rejection skips them.
    cancel_points = CancelPointsOperator(
        task_id="cancel_points",
        unique_ids=extract_points.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run="{{ params.dry_run }}",
        max_failed_ratio="{{ params.max_failed_ratio }}",
        max_requests_per_minute="{{ params.xoxoday_requests_per_minute }}",
        max_items=approved_limit("plan_points"),
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
        max_items=approved_limit("plan_earns"),
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
            for failure in summary.get("failures", [])[:10]:
                log.info("  failed: %s", failure)
        return {name: {k: v for k, v in s.items() if k != "failures"} for name, s in day.items()}

    @task
    def all_reversed() -> None:
        """Fail the run when a vendor task failed (``report`` runs whatever happened upstream)."""

    prepare_ledger >> [extract_points, extract_earns]
    approval_needed(plan_points.output, plan_earns.output) >> [approve, within_threshold]
    [approve, within_threshold] >> cancel_points
    [approve, within_threshold] >> revoke_earns
    report(cancel_points.output, revoke_earns.output)
    [cancel_points, revoke_earns] >> all_reversed()


loyalty_daily_reversals()
