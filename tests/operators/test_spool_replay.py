"""A spool replay cut short (the worker killed after the ledger commit, before the spool was removed) is not doubled."""

from __future__ import annotations

import sqlite3

from airflow_provider_loyalty.ledger import ReversalLedger, spool
from tests.conftest import set_connection
from tests.operators.conftest import succeeded_row
from tests.operators.test_operators import API, context, echo_cancel, sent_ids


def test_a_replayed_spool_already_in_the_ledger_is_not_written_twice(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path, spool_variables
) -> None:
    path = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    run = {"dag_id": "d", "run_id": "r1", "task_id": "t", "map_index": -1, "try_number": 1}
    kept = [succeeded_row(n, run) for n in (1, 2)]
    key = spool.spool_key("ledger", "loyalty_reversal_ledger", run)
    spool.LedgerSpool(key).add(kept)
    # the killed try's replay had committed item 1's row (and another try's row for 2) before it died
    ledger = ReversalLedger("ledger")
    ledger.insert([kept[0], kept[1]._replace(try_number=2)])
    ledger.close()
    requests_mock.post(API, json=echo_cancel())
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="t", unique_ids=[1, 2, 3], ledger_conn_id="ledger").execute(context())
    assert (s["succeeded"], s["skipped"]) == (1, 2) and sent_ids(requests_mock) == [[3]]
    rows = sqlite3.connect(path).execute(
        "SELECT item_key, try_number, COUNT(*) FROM loyalty_reversal_ledger WHERE status = 'succeeded' "
        "GROUP BY item_key, try_number ORDER BY 1, 2"
    )
    # 1 once (already there); 2 from try 2 and from try 1's spool; 3 sent now
    assert rows.fetchall() == [("1", 1, 1), ("2", 1, 1), ("2", 2, 1), ("3", 1, 1)]
    assert spool.LedgerSpool(key).pending() == []


def test_a_spool_kept_by_an_earlier_release_is_read(spool_variables) -> None:
    """Rows kept as value lists (the layout before rows were kept by column name) are read into full rows."""
    import json

    from airflow_provider_loyalty.ledger import columns

    run = {"dag_id": "d", "run_id": "r1", "task_id": "t", "map_index": -1, "try_number": 1}
    row = succeeded_row(7, run)
    key = spool.spool_key("ledger", "loyalty_reversal_ledger", run)
    names = columns()
    earlier = row.values(names)[: names.index("recorded_at")]  # the columns of that release end with recorded_at
    spool_variables[key] = json.dumps([[*earlier, row.recorded_at.isoformat()]])
    assert spool.LedgerSpool(key).pending() == [row]
    spool.LedgerSpool(key).add([row])  # written back by column name, read the same
    assert spool.LedgerSpool(key).pending() == [row, row]
    assert isinstance(json.loads(spool_variables[key])[1], dict)
