"""Test DAG: the approval gate wired by hand, with the reversal's own extraction after the approval.

The plan and the reversal each extract (the reversal right before sending), so rows that reach the
warehouse while the run waits for a person reach the reversal task's input, and the receipt must
keep them out.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import dag, task

from airflow_provider_loyalty.ledger import ensure_ledger, not_done_predicate, points_key_sql
from airflow_provider_loyalty.operators.approval import ApprovalGate
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

WAREHOUSE = "loyalty_warehouse"
LEDGER_TABLE = "loyalty_reversal_ledger"
GATE = ApprovalGate(threshold=10, max_items=1000, group_id="gate")
SQL = f"""
SELECT unique_id FROM loyalty_points_reversals r
WHERE {not_done_predicate("xoxoday", points_key_sql("r.unique_id"), LEDGER_TABLE)}
ORDER BY unique_id
"""


@dag(dag_id="loyalty_test_approval_gate", schedule=None, start_date=datetime(2026, 1, 1), params=GATE.params())
def approval_gate() -> None:
    """extract → plan (dry run) → gate → extract again → cancel: the few lines a DAG author writes."""
    ledger = task(ensure_ledger, task_id="prepare_ledger")(WAREHOUSE, LEDGER_TABLE)
    planned = SQLExecuteQueryOperator(task_id="extract_for_plan", conn_id=WAREHOUSE, sql=SQL)
    plan = CancelPointsOperator(
        task_id="plan",
        unique_ids=planned.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        dry_run=True,
        approval=GATE.receipt("plan"),
    )
    fresh = SQLExecuteQueryOperator(
        task_id="extract", conn_id=WAREHOUSE, sql=SQL, trigger_rule="none_failed_min_one_success"
    )
    cancel = CancelPointsOperator(
        task_id="cancel",
        unique_ids=fresh.output,
        ledger_conn_id=WAREHOUSE,
        ledger_table=LEDGER_TABLE,
        max_failed_ratio=1.0,
        max_items="{{ params.max_items }}",
        approval=GATE.receipt("plan"),
        trigger_rule="none_failed_min_one_success",
    )
    ledger >> planned
    GATE.tasks([plan]) >> fresh >> cancel


approval_gate()
