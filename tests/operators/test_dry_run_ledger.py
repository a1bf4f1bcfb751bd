"""A dry run reads the ledger and writes nothing: no database file, no table, no rows, the spool left for the real run."""

from __future__ import annotations

import sqlite3

from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.ledger import ReversalLedger, spool
from airflow_provider_loyalty.outcomes import Outcome
from tests.conftest import set_connection
from tests.operators.conftest import succeeded_row
from tests.operators.test_operators import API, context, echo_cancel, sent_ids


def test_a_dry_run_creates_no_duckdb_file(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    path = tmp_path / "not-yet.duckdb"
    set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(path))
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="c", unique_ids=[1, 2], ledger_conn_id="ledger", dry_run=True).execute(context())
    assert (s["planned"], s["skipped"]) == (2, 0)
    assert not path.exists()
    assert requests_mock.call_count == 0


def test_a_dry_run_creates_no_table(xoxoday_conn, monkeypatch, tmp_path) -> None:
    path = tmp_path / "warehouse.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE other (x INTEGER)").connection.commit()
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="c", unique_ids=[1, 2], ledger_conn_id="ledger", dry_run=True).execute(context())
    assert s["planned"] == 2
    tables = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["other"]


def test_a_dry_run_skips_what_is_done_and_leaves_the_spool_to_the_real_run(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path, spool_variables
) -> None:
    path = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    ledger = ReversalLedger("ledger")
    ledger.record("xoxoday", [Outcome.succeeded(PointItem(1))], {"run_id": "earlier"})
    ledger.close()
    run = {"dag_id": "d", "run_id": "r1", "task_id": "t", "map_index": -1, "try_number": 1}
    key = spool.spool_key("ledger", "loyalty_reversal_ledger", run)
    kept = succeeded_row(2, run)
    spool.LedgerSpool(key).add([kept])

    def rows() -> list[tuple]:
        return (
            sqlite3.connect(path).execute("SELECT item_key, status FROM loyalty_reversal_ledger ORDER BY 1").fetchall()
        )

    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="t", unique_ids=[1, 2, 3], ledger_conn_id="ledger", dry_run=True).execute(
        context()
    )
    assert (s["planned"], s["skipped"]) == (2, 1)  # 2's answer waits in the spool: a dry run does not write it
    assert rows() == [("1", "succeeded")]
    assert spool.LedgerSpool(key).pending() != []
    requests_mock.post(API, json=echo_cancel())
    s = CancelPointsOperator(task_id="t", unique_ids=[1, 2, 3], ledger_conn_id="ledger").execute(context())
    assert (s["succeeded"], s["skipped"]) == (1, 2)  # the real run replays 2 first, then sends only 3
    assert sent_ids(requests_mock) == [[3]]
    assert rows() == [("1", "succeeded"), ("2", "succeeded"), ("3", "sending"), ("3", "succeeded")]
    assert spool.LedgerSpool(key).pending() == []
