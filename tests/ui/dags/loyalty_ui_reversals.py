"""A reversal run for the Reversals page's browser test: explicit ids in (run conf), outcomes into the ledger."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

LEDGER = "loyalty_warehouse"


@dag(
    dag_id="loyalty_ui_reversals",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"unique_ids": [], "earns": []},
    render_template_as_native_obj=True,  # the ids arrive as lists, not as their rendered text
    tags=["loyalty", "test"],
)
def loyalty_ui_reversals() -> None:
    """Cancel the given points and revoke the given earns; refusals are expected and tolerated."""
    CancelPointsOperator(
        task_id="cancel_points", unique_ids="{{ params.unique_ids }}", ledger_conn_id=LEDGER, max_failed_ratio=1.0
    )
    RevokeEarnOperator(task_id="revoke_earns", earns="{{ params.earns }}", ledger_conn_id=LEDGER, max_failed_ratio=1.0)


loyalty_ui_reversals()
