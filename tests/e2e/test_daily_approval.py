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
from urllib.parse import quote

import duckdb
import pytest

from tests.conftest import set_connection
from tests.e2e.test_dag_runs import load_dag, xcom

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

DAG_ID = "loyalty_daily_reversals"
APPROVE = "approval.approve"
LEDGER_URI = "loyalty://loyalty_warehouse/loyalty_reversal_ledger"


def _warehouse(vendor, monkeypatch, tmp_path) -> str:
    from airflow_provider_loyalty.sandbox import write_duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    write_duckdb(warehouse, vendor.dataset, datetime.now(timezone.utc).date())
    set_connection(monkeypatch, "loyalty_warehouse", conn_type="duckdb", host=str(warehouse))
    return str(warehouse)


class Approver(threading.Thread):
    """Waits for ``approve`` of a new run of the DAG to park, looks around, then answers ``choice``.

    ``choice`` ``None`` answers nobody: the response timeout passes and Airflow's scheduler sweep
    applies the default. ``meanwhile`` runs while the task waits, before the answer.
    Whatever goes wrong here, the parked task is failed so that ``dag.test()`` ends (it would wait
    for a response forever) and the error is raised in the test.
    """

    def __init__(
        self,
        vendor: Any,
        choice: str | None,
        timeout: float = 240.0,
        *,
        dag_id: str = DAG_ID,
        task_id: str = APPROVE,
        user: str = "approver",
        meanwhile: Any = None,
    ) -> None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        super().__init__(daemon=True)
        self.vendor, self.choice, self.timeout = vendor, choice, timeout
        self.dag_id, self.task_id, self.user, self.meanwhile = dag_id, task_id, user, meanwhile
        with create_session() as session:  # runs of earlier tests are not this one
            self.earlier = {r.id for r in session.query(DagRun.id).filter(DagRun.dag_id == dag_id)}
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
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.task_id == self.task_id,
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
                        TaskInstance.dag_id == self.dag_id, TaskInstance.run_id == run_id
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
            if self.meanwhile is not None:
                self.meanwhile()
            if self.choice is None:
                self.time_out(found[0])
            else:
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

    def time_out(self, ti_id: Any) -> None:
        """Let the response deadline pass, then run the scheduler's own timeout sweep (it applies the default)."""
        from datetime import timedelta

        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            session.query(TaskInstance).filter(TaskInstance.id == ti_id).update(
                {TaskInstance.trigger_timeout: datetime.now(timezone.utc) - timedelta(seconds=1)},
                synchronize_session=False,
            )
        SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()

    def answer(self, run_id: str) -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.utils.session import create_session

        with create_session() as session:
            update_hitl_detail(
                dag_id=self.dag_id,
                dag_run_id=run_id,
                task_id=self.task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[self.choice], params_input={}),
                user=SimpleAuthManagerUser(username=self.user, role="admin"),
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


def _rerun(dag: Any, run: Any, task_ids: list[str], *, ignore_dependencies: bool = False) -> dict[str, Any]:
    """Clear ``task_ids`` of a finished run (as the UI's Clear does, downstream not included) and run
    what becomes runnable, the way ``dag.test()`` runs tasks; return the final task states.

    ``ignore_dependencies`` runs the cleared tasks whatever their upstream says (as ``airflow tasks
    test`` or a hand-edited state would): the reversal task itself must then refuse.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == run.dag_id,
                TaskInstance.run_id == run.run_id,
                TaskInstance.task_id.in_(task_ids),
            )
            .all()
        )
        assert len(tis) == len(task_ids)
        clear_task_instances(tis, session, dag_run_state=DagRunState.RUNNING)
        if ignore_dependencies:
            for ti in tis:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
                session.commit()
                _run_task(ti=ti, task=dag.task_dict[ti.task_id])
                session.commit()
    for _ in range(20):  # a few scheduling rounds: nothing here loops
        with create_session() as session:
            dr = session.query(DagRun).filter(DagRun.dag_id == run.dag_id, DagRun.run_id == run.run_id).one()
            if dr.state != DagRunState.RUNNING:
                break
            from airflow.serialization.serialized_objects import DagSerialization

            dr.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
            schedulable, _ = dr.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            scheduled = [ti for ti in dr.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED]
            if not scheduled and not schedulable:
                dr.update_state(session=session)
                session.commit()
                break
            for ti in scheduled:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id])
            session.commit()
    with create_session() as session:
        rows = session.query(TaskInstance.task_id, TaskInstance.state).filter(
            TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id
        )
        return {task_id: state for task_id, state in rows}


def _xcom_key(run: Any, task_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key).one()
        return XComModel.deserialize_value(row)


def _ledger(warehouse: str, columns: str = "vendor, item_key, status, code") -> list[tuple]:
    with duckdb.connect(warehouse) as db:
        return db.execute(f"SELECT {columns} FROM loyalty_reversal_ledger ORDER BY vendor, item_key, status").fetchall()


def test_above_threshold_waits_for_approval_then_sends_what_was_approved(vendor, monkeypatch, tmp_path) -> None:
    warehouse = _warehouse(vendor, monkeypatch, tmp_path)
    expected = vendor.dataset.expected()
    points_total, earns_total = expected["points"]["rows"], expected["earns"]["rows"]
    threshold = points_total - 1  # the Xoxoday plan is above it
    approver = Approver(vendor, "Approve", user="dana")
    run = _run_with(approver, load_dag(DAG_ID), {"approval_threshold": threshold, "max_failed_ratio": 0.5})

    # While the run waited: the dry runs had counted, nothing had reached either vendor (not even a token).
    seen = approver.seen
    assert seen["options"] == ["Approve", "Reject"]
    assert seen["states"]["plan_points"] == "success" and seen["states"]["plan_earns"] == "success"
    assert seen["states"]["approval.within_threshold"] == "skipped"
    assert seen["states"]["cancel_points"] is None and seen["states"]["revoke_earns"] is None
    assert seen["vendor_stats"]["xoxoday"]["requests"] == 0 and seen["vendor_stats"]["capillary"]["requests"] == 0
    plan, plan_earns = xcom(run, "plan_points"), xcom(run, "plan_earns")
    body = seen["body"]
    # The approver sees counts and the digests: a short table, a few items, a link to each full plan.
    assert f"| plan_points (xoxoday) | **{points_total}** unique_ids |" in body
    assert f"| plan_earns (capillary) | **{earns_total}** earns |" in body
    assert plan["digest"][:16] in body and plan_earns["digest"][:16] in body
    assert f"than **{threshold}** items" in body
    first_id = min(uid for uid, _ in vendor.dataset.point_reversals)  # the extraction orders by unique_id
    assert f"plan_points: {first_id}, " in body
    assert f"/runs/{quote(run.run_id, safe='')}/tasks/plan_points/xcom)" in body
    assert "`" not in body  # the form shows inline code as blocks
    assert sum(line.startswith("|") for line in body.splitlines()) == 4  # header, rule, two plans

    # Approved: the reversal tasks ran, bounded by what the dry runs planned.
    assert run.state == "success"
    points, earns = xcom(run, "cancel_points"), xcom(run, "revoke_earns")
    assert plan["dry_run"] is True and plan["planned"] == points_total
    assert points["succeeded"] == expected["points"]["cancelled"] and points["requested"] == points_total
    assert earns["succeeded"] == expected["earns"]["revoked"]
    assert points["not_approved"] == 0
    receipt = points["approval"]
    assert receipt["basis"] == "approved" and receipt["approved_by_name"] == "dana"
    assert receipt["digest"] == plan["digest"] and receipt["planned"] == points_total
    assert earns["approval"]["digest"] == plan_earns["digest"]
    assert vendor.stats()["xoxoday"]["cancelled"] == expected["points"]["cancelled"]
    ti = run.get_task_instance("cancel_points")
    assert ti.state == "success"
    assert _ledger_counts(warehouse)["succeeded"] == expected["points"]["cancelled"] + expected["earns"]["revoked"]
    # The ledger asset was updated by both reversal tasks (a reconciliation DAG can be scheduled on it).
    assert _asset_events(run.run_id) == {"cancel_points", "revoke_earns"}
    # The receipt is part of the record: every row (intents and outcomes) names the approver, the time, the digest.
    receipts = _ledger(warehouse, "vendor, approved_by_id, approved_by_name, approved_at, approval_digest")
    assert len(receipts) == 2 * (points_total + earns_total)  # an intent and an outcome per item
    by_vendor = {"xoxoday": plan["digest"], "capillary": plan_earns["digest"]}
    answered = {row[3] for row in receipts}
    assert len(answered) == 1 and None not in answered
    assert {(v, i, n, d) for v, i, n, _, d in receipts} == {(v, "dana", "dana", d) for v, d in by_vendor.items()}


def test_rejected_run_sends_nothing_even_after_clearing_the_reversal_tasks(vendor, monkeypatch, tmp_path) -> None:
    warehouse = _warehouse(vendor, monkeypatch, tmp_path)
    approver = Approver(vendor, "Reject")
    dag = load_dag(DAG_ID)
    run = _run_with(approver, dag, {"approval_threshold": 1})

    assert approver.seen["states"]["cancel_points"] is None
    assert run.state == "success"  # a rejection is a decision, not a failure; `approve` records it
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["approval.approve"] == "success"
    assert states["cancel_points"] == "skipped" and states["revoke_earns"] == "skipped"
    assert states["report"] == "success" and states["all_reversed"] == "skipped"

    # Someone clears the reversal tasks (only them): Airflow skips them again (the approval skipped them).
    after = _rerun(dag, run, ["cancel_points", "revoke_earns"])
    assert after["cancel_points"] == "skipped" and after["revoke_earns"] == "skipped"
    # Run anyway, whatever the upstream says: the tasks read the Reject themselves and send nothing.
    forced = _rerun(dag, run, ["cancel_points", "revoke_earns"], ignore_dependencies=True)
    assert forced["cancel_points"] == "skipped" and forced["revoke_earns"] == "skipped"
    stats = vendor.stats()
    assert stats["xoxoday"]["requests"] == 0 and stats["capillary"]["requests"] == 0
    assert _ledger_counts(warehouse) == {}  # not even an intent
    assert _asset_events(run.run_id) == set()


def test_timed_out_approval_sends_nothing_even_after_clearing(vendor, monkeypatch, tmp_path) -> None:
    """Nobody answers: the scheduler's timeout sweep applies the default (Reject, no person)."""
    warehouse = _warehouse(vendor, monkeypatch, tmp_path)
    approver = Approver(vendor, None)
    dag = load_dag(DAG_ID)
    run = _run_with(approver, dag, {"approval_threshold": 1})
    answer = _xcom_key(run, "approval.approve", "answer")
    assert answer["chosen_options"] == ["Reject"] and answer["responded_by_user"] is None
    after = _rerun(dag, run, ["cancel_points", "revoke_earns"], ignore_dependencies=True)
    assert after["cancel_points"] == "skipped" and after["revoke_earns"] == "skipped"
    assert vendor.stats()["xoxoday"]["requests"] == 0 and vendor.stats()["capillary"]["requests"] == 0
    assert _ledger_counts(warehouse) == {}


def test_items_added_after_the_plan_are_refused_named_and_not_sent(vendor, monkeypatch, tmp_path) -> None:
    """The gate wired by hand (tests/e2e/dags/loyalty_test_approval.py): the reversal extracts again after
    the approval, and finds rows that reached the warehouse while the run waited."""
    warehouse = _warehouse(vendor, monkeypatch, tmp_path)
    expected = vendor.dataset.expected()["points"]
    late = [9_000_000_001, 9_000_000_002, 9_000_000_003]

    def warehouse_grows() -> None:
        with duckdb.connect(warehouse) as db:
            db.executemany(
                "INSERT INTO loyalty_points_reversals (unique_id, reason, reversal_date) VALUES (?, 'late', current_date)",
                [[uid] for uid in late],
            )

    dag_id = "loyalty_test_approval_gate"
    approver = Approver(
        vendor, "Approve", dag_id=dag_id, task_id="gate.approve", user="erin", meanwhile=warehouse_grows
    )
    run = _run_with(approver, load_dag(dag_id), {})

    assert run.state == "success"
    plan, sent = xcom(run, "plan"), xcom(run, "cancel")
    assert plan["planned"] == expected["rows"]
    assert sent["requested"] == expected["rows"] + len(late)
    assert sent["not_approved"] == len(late)
    named = [f for f in sent["failures"] if f["code"] == "not_approved"]
    assert sorted(f["unique_id"] for f in named) == late
    assert sent["succeeded"] == expected["cancelled"]
    assert sent["approval"]["approved_by_name"] == "erin" and sent["approval"]["digest"] == plan["digest"]
    # Over the wire: the approved items only (the sandbox does not know the late ids at all).
    assert vendor.stats()["xoxoday"]["cancelled"] == expected["cancelled"]
    assert vendor.stats()["xoxoday"]["items_received"] == plan["planned"]
    rows = _ledger(warehouse)
    refused = [r for r in rows if r[3] == "not_approved"]
    receipts = {r[1:] for r in _ledger(warehouse, "vendor, approved_by_name, approval_digest")}
    assert receipts == {("erin", plan["digest"])}
    assert [r[1] for r in refused] == [str(uid) for uid in late] and {r[2] for r in refused} == {"failed"}
    assert not [r for r in rows if r[1] in {str(uid) for uid in late} and r[2] != "failed"]  # no intent either
    # Not settled: the next run plans them again (the extraction's anti-join leaves them in).
    with duckdb.connect(warehouse) as db:
        again = db.execute(load_dag(dag_id).task_dict["extract"].sql).fetchall()
    assert sorted(r[0] for r in again) == late


def test_a_conf_above_the_caps_is_refused(vendor, monkeypatch, tmp_path) -> None:
    """The broken-join trigger: caps raised by conf over 400,000 planned items. Airflow refuses the run."""
    from airflow.sdk.exceptions import ParamValidationError

    _warehouse(vendor, monkeypatch, tmp_path)
    dag = load_dag(DAG_ID)
    for conf, value, cap in (
        ({"approval_threshold": 10**12}, 10**12, 5000),
        ({"max_items": 10**12}, 10**12, 50000),
        ({"approval_threshold": 5001, "max_items": 10}, 5001, 5000),
    ):
        with pytest.raises(ParamValidationError) as caught:
            dag.test(run_conf=conf)
        assert f"{value} is greater than the maximum of {cap}" in str(caught.value)
    assert vendor.stats()["xoxoday"]["requests"] == 0 and vendor.stats()["capillary"]["requests"] == 0
    # Lowering is allowed: a run with a smaller threshold asks a person (see the tests above).


def test_dry_run_param_never_asks_for_approval(vendor, monkeypatch, tmp_path) -> None:
    """A dry run sends nothing, so it does not stop for a person even above the threshold."""
    _warehouse(vendor, monkeypatch, tmp_path)
    run = load_dag(DAG_ID).test(run_conf={"dry_run": True, "approval_threshold": 1})
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["approval.approve"] == "skipped" and states["approval.within_threshold"] == "success"
    assert xcom(run, "cancel_points")["dry_run"] is True
    assert vendor.stats()["xoxoday"]["requests"] == 0 and vendor.stats()["capillary"]["requests"] == 0


def test_under_threshold_goes_through_with_a_receipt(vendor, monkeypatch, tmp_path) -> None:
    warehouse = _warehouse(vendor, monkeypatch, tmp_path)
    expected = vendor.dataset.expected()
    run = load_dag(DAG_ID).test(run_conf={"max_failed_ratio": 0.5})  # 60 and 80 items, threshold 5000
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["approval.approve"] == "skipped"
    points = xcom(run, "cancel_points")
    assert points["approval"]["basis"] == "under_threshold" and points["approval"]["approved_by_id"] is None
    assert points["approval"]["digest"] == xcom(run, "plan_points")["digest"]
    assert vendor.stats()["xoxoday"]["cancelled"] == expected["points"]["cancelled"]
    # Under the threshold: the digest of what was counted, and no approver (nobody was asked).
    receipts = set(
        _ledger(warehouse, "vendor, approved_by_id, approved_by_name, approved_at, approval_digest, approval_planned")
    )
    assert receipts == {
        ("xoxoday", None, None, None, xcom(run, "plan_points")["digest"], expected["points"]["rows"]),
        ("capillary", None, None, None, xcom(run, "plan_earns")["digest"], expected["earns"]["rows"]),
    }


def test_reversal_tasks_declare_the_ledger_asset() -> None:
    """Only the tasks that write outcomes produce the ledger asset (not the dry runs), in both example DAGs."""
    import os

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    for dag_id in (DAG_ID, "loyalty_reversals_fanout"):
        tasks = bag.dags[dag_id].tasks
        producers = {t.task_id for t in tasks if any(getattr(o, "uri", None) == LEDGER_URI for o in t.outlets)}
        assert producers == {"cancel_points", "revoke_earns"}, dag_id
