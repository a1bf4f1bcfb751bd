"""A reversal run for the Reversals page's browser test: explicit ids in (run conf), outcomes into the ledger.

The run goes through the approval gate (threshold 10): the test approves it as ``admin`` through the
api-server's HITL endpoint, and the page shows the receipt.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from airflow_provider_loyalty.operators.approval import ApprovalGate
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

LEDGER = "loyalty_warehouse"
GATE = ApprovalGate(threshold=10, max_items=100_000)


@dag(
    dag_id="loyalty_ui_reversals",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"unique_ids": [], "earns": [], **GATE.params()},
    render_template_as_native_obj=True,  # the ids arrive as lists, not as their rendered text
    tags=["loyalty", "test"],
)
def loyalty_ui_reversals() -> None:
    """Plan, approve, then cancel the given points and revoke the given earns; refusals are expected and tolerated."""
    points, earns = "{{ params.unique_ids }}", "{{ params.earns }}"
    plans = [
        CancelPointsOperator(
            task_id="plan_points",
            unique_ids=points,
            ledger_conn_id=LEDGER,
            dry_run=True,
            approval=GATE.receipt("plan_points"),
        ),
        RevokeEarnOperator(
            task_id="plan_earns", earns=earns, ledger_conn_id=LEDGER, dry_run=True, approval=GATE.receipt("plan_earns")
        ),
    ]
    GATE.tasks(plans) >> [
        CancelPointsOperator(
            task_id="cancel_points",
            unique_ids=points,
            ledger_conn_id=LEDGER,
            max_failed_ratio=1.0,
            approval=GATE.receipt("plan_points"),
            trigger_rule="none_failed_min_one_success",
        ),
        RevokeEarnOperator(
            task_id="revoke_earns",
            earns=earns,
            ledger_conn_id=LEDGER,
            max_failed_ratio=1.0,
            approval=GATE.receipt("plan_earns"),
            trigger_rule="none_failed_min_one_success",
        ),
    ]


loyalty_ui_reversals()
