"""Test DAGs: the operators fed by an XComArg, a Jinja string (native or not), and mapped with expand()."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator


@task
def points_rows(params: dict | None = None) -> list[tuple[int]]:
    """Rows as SQLExecuteQueryOperator pushes them."""
    return [(int(i),) for i in (params or {}).get("unique_ids", [])]


@task
def earn_rows(params: dict | None = None) -> list[tuple[int, str, str]]:
    """(customer_id, promotion_id, earn_id) rows."""
    return [tuple(r) for r in (params or {}).get("earns", [])]  # type: ignore[misc]


@dag(
    dag_id="loyalty_test_xcomarg_and_jinja",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"unique_ids": [], "earns": []},
)
def xcomarg_and_jinja() -> None:
    """Cancel through an XComArg, revoke through a non-native Jinja xcom_pull string."""
    CancelPointsOperator(task_id="cancel", unique_ids=points_rows(), max_failed_ratio=1.0)
    earns = earn_rows()
    revoke = RevokeEarnOperator(
        task_id="revoke", earns="{{ ti.xcom_pull(task_ids='earn_rows') }}", max_failed_ratio=1.0
    )
    earns >> revoke


@dag(
    dag_id="loyalty_test_native_jinja",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    params={"unique_ids": [], "earns": []},
)
def native_jinja() -> None:
    """Jinja xcom_pull rendered as native objects."""
    ids = points_rows()
    cancel = CancelPointsOperator(
        task_id="cancel", unique_ids="{{ ti.xcom_pull(task_ids='points_rows') }}", max_failed_ratio=1.0
    )
    ids >> cancel


@task
def shards(rows: list, n: int = 3) -> list[list]:
    """Split rows into n shards (as a sharded extraction would)."""
    return [rows[i::n] for i in range(n)]


@dag(
    dag_id="loyalty_test_mapped",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"unique_ids": [], "earns": []},
)
def mapped() -> None:
    """Both operators as mapped tasks."""
    CancelPointsOperator.partial(task_id="cancel", max_failed_ratio=1.0, batch_size=7).expand(
        unique_ids=shards(points_rows())
    )
    RevokeEarnOperator.partial(task_id="revoke", max_failed_ratio=1.0).expand(earns=shards(earn_rows()))


xcomarg_and_jinja()
native_jinja()
mapped()
