"""The page lists the items under a live claim now (owner, since, lease), on every backend."""

from __future__ import annotations

import time

from airflow_provider_loyalty.coordination import claims
from airflow_provider_loyalty.coordination.claims import Owner
from tests.ui.conftest import fake_skipped

RUN = {
    "dag_id": "loyalty_daily_reversals",
    "run_id": "manual__now",
    "task_id": "revoke",
    "map_index": 2,
    "try_number": 1,
}


def _connection(ledger):
    if ledger.backend == "duckdb":
        import duckdb

        return duckdb.connect(str(ledger.path)), "?"
    if ledger.backend == "sqlite":
        import sqlite3

        return sqlite3.connect(str(ledger.path)), "?"
    from airflow_provider_loyalty.ledger import ReversalLedger

    hook = ReversalLedger("ledger").hook
    return hook.get_conn(), hook.placeholder


def test_the_summary_lists_live_claims_only(ledger, make_client, token) -> None:
    table = claims.claims_table(ledger.table)
    conn, p = _connection(ledger)
    now = time.time()
    try:
        conn.cursor().execute(claims.create_table_sql(table))
        owner = Owner(RUN, host="worker-a", pid=4711)
        claims.claim(conn, table, p, "capillary", ["1/P/E-live"], owner, now=now, lease=600)
        claims.claim(conn, table, p, "capillary", ["1/P/E-expired"], owner, now=now - 1200, lease=600)
        claims.claim(conn, table, p, "xoxoday", ["77"], owner, now=now, lease=600)
        claims.release(conn, table, p, "xoxoday", ["77"], owner.token)
        conn.commit()
    finally:
        conn.close()
    try:
        client = make_client(skipped=fake_skipped(ledger.today), token=token)
        summary = client.get("/loyalty/api/summary").json()
        assert [(c["vendor"], c["item_key"], c["owner"], c["epoch"]) for c in summary["claimed"]] == [
            ("capillary", "1/P/E-live", "run manual__now, task revoke[2] try 1 on worker-a (pid 4711)", 1)
        ]
        (live,) = summary["claimed"]
        assert live["lease_until"] > live["since"]
        assert (live["dag_id"], live["run_id"], live["task_id"], live["map_index"]) == (
            "loyalty_daily_reversals",
            "manual__now",
            "revoke",
            2,
        )
        page = client.get("/loyalty/reversals").text
        assert 'id="claimed"' in page and "1/P/E-live" in page and "E-expired" not in page
        assert client.get("/loyalty/api/summary", params={"vendor": "xoxoday"}).json()["claimed"] == []
    finally:
        if ledger.backend == "postgres":
            conn, _ = _connection(ledger)
            conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()
            conn.close()


def test_without_a_claim_table_nothing_is_claimed(ledger, make_client, token) -> None:
    client = make_client(skipped=fake_skipped(ledger.today), token=token)
    assert client.get("/loyalty/api/summary").json()["claimed"] == []
    assert 'id="claimed"' not in client.get("/loyalty/reversals").text
