"""The daily example DAG's approval: dry runs count, above the threshold a person approves (or not).

``dag.test()`` keeps a run alive while a Human-in-the-loop task waits in ``awaiting_input``, until a
response recorded from outside resumes it. A responder thread plays the person: it waits for the
``approve`` task to park, checks that nothing reached the vendors yet, and answers through the same
Core API handler the Required Actions page calls (``PATCH .../hitlDetails``), on the shared metadata DB.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

import duckdb
import pytest

from tests.conftest import set_connection
from tests.e2e.test_dag_runs import load_dag, xcom

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

DAG_ID = "loyalty_daily_reversals"
LEDGER_URI = "loyalty://loyalty_warehouse/loyalty_reversal_ledger"


def _warehouse(vendor, monkeypatch, tmp_path) -> str:
    from airflow_provider_loyalty.sandbox import write_duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    write_duckdb(warehouse, vendor.dataset, datetime.now(timezone.utc).date())
    set_connection(monkeypatch, "loyalty_warehouse", conn_type="duckdb", host=str(warehouse))
    return str(warehouse)


class Approver(threading.Thread):
    """Waits for ``approve`` of a new run of the DAG to park, looks around, then answers ``choice``.

    Whatever goes wrong here, the parked task is failed so that ``dag.test()`` ends (it would wait
    for a response forever) and the error is raised in the test.
    """

    def __init__(self, vendor: Any, choice: str, timeout: float = 240.0) -> None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        super().__init__(daemon=True)
        self.vendor, self.choice, self.timeout = vendor, choice, timeout
        with create_session() as session:  # runs of earlier tests are not this one
            self.earlier = {r.id for r in session.query(DagRun.id).filter(DagRun.dag_id == DAG_ID)}
        self.seen: dict[str, Any] = {}
        self.error: BaseException | None = None

    def parked(self) -> tuple[Any, str] | None:
        """``(ti_id, run_id)`` of this run's ``approve`` once it awaits input."""
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            rows = (
                session.query(TaskInstance.id, TaskInstance.run_id, DagRun.id)
                .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
                .filter(
                    TaskInstance.dag_id == DAG_ID,
                    TaskInstance.task_id == "approve",
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                )
                .all()
            )
        return next(((ti_id, run_id) for ti_id, run_id, dr in rows if dr not in self.earlier), None)

    def look(self, ti_id: Any, run_id: str) -> None:
        """What the person sees, and what the vendors had received, while the run waits."""
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            detail = session.query(HITLDetail).filter(HITLDetail.ti_id == ti_id).one()
            self.seen = {
                "subject": detail.subject,
                "body": detail.body,
                "options": list(detail.options),
                "vendor_stats": self.vendor.stats(),
                "states": {
                    task_id: state
                    for task_id, state in session.query(TaskInstance.task_id, TaskInstance.state).filter(
                        TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id
                    )
                },
            }

    def run(self) -> None:
        found: tuple[Any, str] | None = None
        deadline = time.monotonic() + self.timeout
        try:
            while found is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("the approve task never reached awaiting_input")
                try:
                    found = self.parked()
                except Exception:  # the metadata DB is busy with the run itself: ask again
                    if time.monotonic() > deadline:
                        raise
                if found is None:
                    time.sleep(0.5)
            self.look(*found)
            self.answer(found[1])
        except BaseException as exc:
            self.error = exc
            try:
                self.give_up()
            except BaseException as also:  # noqa: BLE001 - the first error is the one to report
                exc.add_note(f"and the parked task could not be failed: {also!r}")

    def give_up(self) -> None:
        """Fail this run's parked ``approve`` task so that ``dag.test()`` returns."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        found = self.parked()
        if found is not None:
            with create_session() as session:
                session.query(TaskInstance).filter(TaskInstance.id == found[0]).update(
                    {TaskInstance.state: TaskInstanceState.FAILED}, synchronize_session=False
                )

    def answer(self, run_id: str) -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.utils.session import create_session

        with create_session() as session:
            update_hitl_detail(
                dag_id=DAG_ID,
                dag_run_id=run_id,
                task_id="approve",
                update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[self.choice], params_input={}),
                user=SimpleAuthManagerUser(username="approver", role="admin"),
                session=session,
                map_index=-1,
            )


def _run_with(approver: Approver, dag: Any, conf: dict) -> Any:
    approver.start()
    try:
        return dag.test(run_conf=conf)
    finally:
        approver.join(timeout=5)
        if approver.error is not None:
            raise approver.error


def _ledger_counts(warehouse: str) -> dict[str, int]:
    with duckdb.connect(warehouse) as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM loyalty_reversal_ledger GROUP BY 1").fetchall())


def _asset_events(run_id: str) -> set[str]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent.source_task_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(
                AssetModel.uri == LEDGER_URI, AssetEvent.source_dag_id == DAG_ID, AssetEvent.source_run_id == run_id
            )
            .all()
        )
    return {r[0] for r in rows}


def test_above_threshold_waits_for_approval_then_sends_what_was_approved(vendor, monkeypatch, tmp_path) -> None:
    warehouse = _warehouse(vendor, monkeypatch, tmp_path)
    expected = vendor.dataset.expected()
    points_total, earns_total = expected["points"]["rows"], expected["earns"]["rows"]
    threshold = points_total - 1  # the Xoxoday plan is above it
    approver = Approver(vendor, "Approve")
    run = _run_with(approver, load_dag(DAG_ID), {"approval_threshold": threshold, "max_failed_ratio": 0.5})

    # While the run waited: the dry runs had counted, nothing had reached either vendor (not even a token).
    seen = approver.seen
    assert seen["options"] == ["Approve", "Reject"]
    assert seen["states"]["plan_points"] == "success" and seen["states"]["plan_earns"] == "success"
    assert seen["states"]["within_threshold"] == "skipped"
    assert seen["states"]["cancel_points"] is None and seen["states"]["revoke_earns"] is None
    assert seen["vendor_stats"]["xoxoday"]["requests"] == 0 and seen["vendor_stats"]["capillary"]["requests"] == 0
    body = seen["body"]
    assert f"| Xoxoday cancelPoints | **{points_total}** |" in body
    assert f"| Capillary revokeEarn | **{earns_total}** |" in body
    first_id = min(uid for uid, _ in vendor.dataset.point_reversals)  # the extraction orders by unique_id
    assert f"| {first_id} |" in body
    assert f"than **{threshold}** items" in body

    # Approved: the reversal tasks ran, bounded by what the dry runs counted.
    assert run.state == "success"
    plan, points, earns = xcom(run, "plan_points"), xcom(run, "cancel_points"), xcom(run, "revoke_earns")
    assert plan["dry_run"] is True and plan["planned"] == points_total
    assert points["succeeded"] == expected["points"]["cancelled"] and points["requested"] == points_total
    assert earns["succeeded"] == expected["earns"]["revoked"]
    assert vendor.stats()["xoxoday"]["cancelled"] == expected["points"]["cancelled"]
    ti = run.get_task_instance("cancel_points")
    assert ti.state == "success"
    assert _ledger_counts(warehouse)["succeeded"] == expected["points"]["cancelled"] + expected["earns"]["revoked"]
    # The ledger asset was updated by both reversal tasks (a reconciliation DAG can be scheduled on it).
    assert _asset_events(run.run_id) == {"cancel_points", "revoke_earns"}


def test_rejected_run_sends_nothing(vendor, monkeypatch, tmp_path) -> None:
    warehouse = _warehouse(vendor, monkeypatch, tmp_path)
    approver = Approver(vendor, "Reject")
    run = _run_with(approver, load_dag(DAG_ID), {"approval_threshold": 1})

    assert approver.seen["states"]["cancel_points"] is None
    assert run.state == "success"  # a rejection is a decision, not a failure; `approve` records it
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["approve"] == "success"
    assert states["cancel_points"] == "skipped" and states["revoke_earns"] == "skipped"
    assert states["report"] == "success" and states["all_reversed"] == "skipped"
    stats = vendor.stats()
    assert stats["xoxoday"]["requests"] == 0 and stats["capillary"]["requests"] == 0
    assert _ledger_counts(warehouse) == {}  # not even an intent
    assert _asset_events(run.run_id) == set()


def test_dry_run_param_never_asks_for_approval(vendor, monkeypatch, tmp_path) -> None:
    """A dry run sends nothing, so it does not stop for a person even above the threshold."""
    _warehouse(vendor, monkeypatch, tmp_path)
    run = load_dag(DAG_ID).test(run_conf={"dry_run": True, "approval_threshold": 1})
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["approve"] == "skipped" and states["within_threshold"] == "success"
    assert xcom(run, "cancel_points")["dry_run"] is True
    assert vendor.stats()["xoxoday"]["requests"] == 0 and vendor.stats()["capillary"]["requests"] == 0


def test_approval_route_and_body() -> None:
    """The branch callable: above the threshold at either vendor, a person approves; a dry run never waits."""
    from airflow_provider_loyalty.example_dags import loyalty_daily_reversals as daily

    small = {"planned": 5, "requests": 1, "requested": 6, "skipped": 1, "sample": [{"unique_id": 11}]}
    big = {"planned": 6, "requests": 2, "requested": 6, "skipped": 0, "max_items_exceeded": True, "sample": []}
    assert daily.approval_route(small, small, threshold=5) == "within_threshold"  # at the threshold: no
    assert daily.approval_route(small, big, threshold=5) == "approve"
    assert daily.approval_route(big, None, threshold=5) == "approve"
    assert daily.approval_route(big, big, threshold=5, dry_run=True) == "within_threshold"
    assert (
        daily.approval_route(None, {"requested": 0, "dry_run": True}, threshold=0) == "within_threshold"
    )  # empty input
    body = daily.approval_body(small, big, 5)
    assert "| Xoxoday cancelPoints | **5** | 1 | 1 | 6 | no |" in body
    assert "| Capillary revokeEarn | **6** | 2 | 0 | 6 | yes: the task will refuse |" in body
    assert "first 1 of 5 unique_ids" in body and "| 11 |" in body
    assert "Capillary revokeEarn**: first" not in body  # no sample, no table


def test_reversal_tasks_declare_the_ledger_asset() -> None:
    """Only the tasks that write outcomes produce the ledger asset (not the dry runs), in both example DAGs."""
    import os

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    for dag_id in (DAG_ID, "loyalty_reversals_fanout"):
        tasks = bag.dags[dag_id].tasks
        producers = {t.task_id for t in tasks if any(getattr(o, "uri", None) == LEDGER_URI for o in t.outlets)}
        assert producers == {"cancel_points", "revoke_earns"}, dag_id
