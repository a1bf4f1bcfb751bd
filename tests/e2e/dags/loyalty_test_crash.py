"""Test DAGs for crash recovery: one vendor each, a ledger on the ``loyalty_ledger`` connection."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

COMMON = {"ledger_conn_id": "loyalty_ledger", "max_concurrency": 4, "max_requests_per_minute": None}


@dag(dag_id="loyalty_test_crash_xoxoday", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def crash_xoxoday() -> None:
    """Cancel the ids of the run's conf, 5 per request."""
    CancelPointsOperator(task_id="cancel", unique_ids="{{ dag_run.conf['unique_ids'] }}", batch_size=5, **COMMON)


@dag(dag_id="loyalty_test_crash_capillary", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def crash_capillary() -> None:
    """Revoke the earns of the run's conf (one customer per request)."""
    RevokeEarnOperator(task_id="revoke", earns="{{ dag_run.conf['earns'] }}", **COMMON)


crash_xoxoday()
crash_capillary()
