"""Two runs over the same items at once: the vendor applies one request and refuses the other as
"already cancelled". The loser records that as reconciled when the ledger shows the other run's
attempt, and as a refusal when nothing does."""

from __future__ import annotations

import sqlite3

import pytest

from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.ledger import ReversalLedger
from airflow_provider_loyalty.outcomes import Outcome
from tests.conftest import set_connection
from tests.operators.test_operators import API, context

OTHER = {"dag_id": "d", "run_id": "manual__other", "task_id": "t", "map_index": -1, "try_number": 1}


def refuse_as_cancelled(before_answer=None):
    def answer(request, ctx):
        ids = [r["unique_id"] for r in request.json()["variables"]["recipients_data"]["recipients"]]
        if before_answer is not None:
            before_answer(ids)
        recipients = [{"unique_id": i, "success": False, "message": "Points already cancelled"} for i in ids]
        return {"data": {"cancelBalance": {"error": True, "message": "", "recipients": recipients}}}

    return answer


@pytest.mark.parametrize("other_run", ["succeeded", "in_flight"])
def test_a_refusal_caused_by_a_concurrent_run_is_reconciled(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path, other_run
):
    path = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))

    def the_other_run_got_there_first(ids: list[int]) -> None:
        other = ReversalLedger("ledger")
        items = [PointItem(i) for i in ids]
        other.record_intent("xoxoday", items, OTHER)
        if other_run == "succeeded":
            other.record("xoxoday", [Outcome.succeeded(i) for i in items], OTHER)
        other.close()

    requests_mock.post(API, json=refuse_as_cancelled(the_other_run_got_there_first))
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="t", unique_ids=[5, 6], ledger_conn_id="ledger").execute(context())
    assert (s["succeeded"], s["reconciled"], s["failed"]) == (2, 2, 0)
    rows = sqlite3.connect(path).execute(
        "SELECT item_key, status, code, message FROM loyalty_reversal_ledger WHERE run_id = 'r1' AND status <> 'sending'"
    )
    recorded = rows.fetchall()
    assert [(k, st, c) for k, st, c, _ in recorded] == [
        ("5", "succeeded", "already_reversed"),
        ("6", "succeeded", "already_reversed"),
    ]
    assert all("concurrent run manual__other" in m for *_, m in recorded)


def test_without_another_runs_attempt_already_cancelled_stays_a_refusal(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path
):
    path = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    requests_mock.post(API, json=refuse_as_cancelled())
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="t", unique_ids=[5], ledger_conn_id="ledger", max_failed_ratio=1.0).execute(
        context()
    )
    assert (s["succeeded"], s["reconciled"], s["failed"]) == (0, 0, 1)
    assert s["failure_codes"] == {"refused": 1}


def test_another_dags_run_of_the_same_name_is_another_run(requests_mock, xoxoday_conn, monkeypatch, tmp_path):
    """Two DAGs on one ledger both run ``scheduled__<date>``: the other DAG's item in flight is another run's."""
    path = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    namesake = {**OTHER, "dag_id": "partner_reversals", "run_id": "r1"}  # this run is dag "d", run "r1"

    def the_other_dag_is_sending(ids: list[int]) -> None:
        other = ReversalLedger("ledger")
        other.record_intent("xoxoday", [PointItem(i) for i in ids], namesake)
        other.close()

    requests_mock.post(API, json=refuse_as_cancelled(the_other_dag_is_sending))
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="t", unique_ids=[5], ledger_conn_id="ledger").execute(context())
    assert (s["succeeded"], s["reconciled"], s["failed"]) == (1, 1, 0)
