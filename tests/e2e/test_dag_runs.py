"""Real Airflow runs (dag.test() on a migrated metadata DB) against the sandbox over loopback HTTP."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import run_conf

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]


def load_dag(dag_id: str):
    import os

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def xcom(dag_run, task_id: str, map_index: int = -1):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(
                dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, map_index=map_index, key="return_value"
            )
            .one()
        )
        return XComModel.deserialize_value(row)


def test_xcomarg_and_non_native_jinja(vendor) -> None:
    conf = run_conf(vendor.dataset, points=25, earns=30)
    dr = load_dag("loyalty_test_xcomarg_and_jinja").test(run_conf=conf)
    assert dr.state == "success"
    cancel, revoke = xcom(dr, "cancel"), xcom(dr, "revoke")
    expected = vendor.dataset.expected()
    assert cancel["requested"] == 25 and cancel["succeeded"] + cancel["failed"] == 25
    assert revoke["requested"] == 30 and revoke["succeeded"] + revoke["failed"] == 30
    stats = vendor.stats()
    assert stats["xoxoday"]["cancelled"] == cancel["succeeded"]
    assert stats["capillary"]["revoked"] == revoke["succeeded"]
    assert stats["xoxoday"]["duplicate_attempts"] == 0 and stats["capillary"]["duplicate_attempts"] == 0
    assert expected  # the dataset mixes refusals in: some of them are among the 30
    assert {f["code"] for f in revoke["failures"]} <= {"729", "730", "731"}


def test_native_jinja(vendor) -> None:
    conf = run_conf(vendor.dataset, points=10, earns=0)
    dr = load_dag("loyalty_test_native_jinja").test(run_conf=conf)
    assert dr.state == "success"
    summary = xcom(dr, "cancel")
    assert summary["requested"] == 10
    assert vendor.stats()["xoxoday"]["cancelled"] == summary["succeeded"] > 0


def test_mapped_tasks(vendor) -> None:
    conf = run_conf(vendor.dataset, points=30, earns=40)
    dr = load_dag("loyalty_test_mapped").test(run_conf=conf)
    assert dr.state == "success"
    cancels = [xcom(dr, "cancel", i) for i in range(3)]
    revokes = [xcom(dr, "revoke", i) for i in range(3)]
    assert sum(s["requested"] for s in cancels) == 30
    assert sum(s["requested"] for s in revokes) == 40
    stats = vendor.stats()
    assert stats["xoxoday"]["cancelled"] == sum(s["succeeded"] for s in cancels)
    assert stats["capillary"]["revoked"] == sum(s["succeeded"] for s in revokes)
    # batch_size=7 over 10 ids per shard: 2 requests per mapped task
    assert [s["requests"] for s in cancels] == [2, 2, 2]
