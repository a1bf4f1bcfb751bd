"""Test DAG: a reversal whose vendor windows are longer than its deferral threshold (waited out by the triggerer)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator


@dag(
    dag_id="loyalty_test_rate_defer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"unique_ids": []},
)
def rate_defer() -> None:
    """Cancel one id per request, far above the vendor's limit, deferring windows over 1 s."""
    CancelPointsOperator(
        task_id="cancel",
        unique_ids="{{ params.unique_ids }}",
        batch_size=1,
        max_concurrency=1,
        max_requests_per_minute=6000,
        defer_rate_limit_after=1.0,
        ledger_conn_id="loyalty_ledger",
    )


rate_defer()
