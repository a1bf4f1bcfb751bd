"""``max_failed_ratio`` judges a DAG run over all its tries: one population for numerator and denominator.

Before, a later try left the items earlier tries had reversed out of the denominator while their
refusals stayed in the numerator: a run at 10 % over its items failed its last try at 25 %.
The real operator, a real SQLite ledger, the vendor's answers over requests_mock.
"""

from __future__ import annotations

import sqlite3

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_operators import API, context, echo_cancel, sent_ids

IDS = list(range(1, 21))


def cancel(try_number: int, run_id: str = "day1") -> dict:
    return CancelPointsOperator(
        task_id="t", unique_ids=IDS, batch_size=20, ledger_conn_id="ledger", max_failed_ratio=0.1
    ).execute(context(run_id, try_number))


def test_the_ratio_counts_every_try_of_the_run(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    # try 1: 1 and 2 refused for good, 3..10 cancelled, 11..20 not mentioned in the answer (in doubt)
    requests_mock.post(API, json=echo_cancel(fail={1, 2}, omit=set(range(11, 21))))
    with pytest.raises(AirflowException) as first:
        cancel(1)
    assert not isinstance(first.value, AirflowFailException)  # transient: Airflow retries
    assert "12 of 20 unique_ids failed" in str(first.value)
    # try 2: 11..14 cancelled, 15..20 again not mentioned
    requests_mock.post(API, json=echo_cancel(omit=set(range(15, 21))))
    with pytest.raises(AirflowException) as second:
        cancel(2)
    assert "8 of 20 unique_ids failed" in str(second.value)  # was "8 of 12": the 8 done by try 1 left out
    # try 3: the rest cancelled. 2 refused of the run's 20 items: 10 %, within max_failed_ratio=0.1
    # (the old code judged 2 of 8 = 25 % and failed the task for good: "retrying cannot help")
    requests_mock.post(API, json=echo_cancel())
    summary = cancel(3)
    assert (summary["succeeded"], summary["failed"], summary["skipped"], summary["done_earlier_try"]) == (6, 2, 12, 12)
    assert summary["failed_earlier"] == 0
    assert sent_ids(requests_mock) == [IDS, list(range(11, 21)), list(range(15, 21))]
    states = sqlite3.connect(db).execute(
        "SELECT try_number, status, COUNT(*) FROM loyalty_reversal_ledger WHERE status <> 'sending' "
        "GROUP BY try_number, status ORDER BY 1, 2"
    )
    assert states.fetchall() == [
        (1, "failed", 12),
        (1, "succeeded", 8),
        (2, "failed", 6),
        (2, "succeeded", 4),
        (3, "succeeded", 6),
    ]


def test_the_next_run_judges_only_its_own_items(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    """What earlier DAG runs settled is in neither side of the ratio (refusals reported apart)."""
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "ledger.sqlite"))
    requests_mock.post(API, json=echo_cancel(fail={1, 2}))
    with pytest.raises(AirflowFailException, match="2 of 20 unique_ids failed"):
        CancelPointsOperator(task_id="t", unique_ids=IDS, ledger_conn_id="ledger").execute(context("day1", 1))
    requests_mock.post(API, json=echo_cancel(fail={21}))
    with pytest.raises(AirflowFailException, match="1 of 2 unique_ids failed") as day2:
        CancelPointsOperator(task_id="t", unique_ids=[*IDS, 21, 22], ledger_conn_id="ledger").execute(
            context("day2", 1)
        )
    assert "2 refused in earlier runs" in str(day2.value)
