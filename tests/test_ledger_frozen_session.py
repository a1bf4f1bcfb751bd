"""A process frozen inside a ledger transaction on PostgreSQL does not lock other tasks out of its rows.

A paused VM or a SIGSTOPped worker can stop between two statements of one ledger transaction (a
claim, a fence and its intent). Its row locks would then hold every other task that claims or
takes over those items until the frozen process died. The ledger's session asks the server to end
it after :data:`IDLE_IN_TRANSACTION_SECONDS` idle in a transaction: the locks go, the frozen work
rolls back, and the ledger reconnects when it runs again.
"""

from __future__ import annotations

import os
import uuid

import pytest

from airflow_provider_loyalty.ledger import ReversalLedger, _connection

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")

pytestmark = pytest.mark.postgres


def test_a_session_frozen_in_a_transaction_is_ended_and_its_row_locks_released(monkeypatch) -> None:
    if not POSTGRES_URI:
        pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
    import psycopg2

    monkeypatch.setenv("AIRFLOW_CONN_LEDGER", POSTGRES_URI)
    monkeypatch.setattr(_connection, "IDLE_IN_TRANSACTION_SECONDS", 1)
    table = f"ledger_{uuid.uuid4().hex[:10]}"
    ledger = ReversalLedger("ledger", table, backoff=0.05)
    other = psycopg2.connect(POSTGRES_URI)
    try:
        ledger.ensure_table()
        with other.cursor() as cur:
            cur.execute(
                f"INSERT INTO {table} (vendor, item_key, status, message, recorded_at) "
                "VALUES ('xoxoday', 'k1', 'sending', 'before', now())"
            )
        other.commit()

        def frozen(conn):  # locks the row and never commits: what a process stopped mid-transaction leaves
            cur = conn.cursor()
            cur.execute(f"UPDATE {table} SET message = 'frozen' WHERE item_key = 'k1'")
            cur.close()

        ledger._retrying("freeze", frozen)

        with other.cursor() as cur:
            # bounded, so that the old behaviour fails the test instead of hanging it
            cur.execute("SET statement_timeout = '30s'")
            cur.execute(f"UPDATE {table} SET message = 'other' WHERE item_key = 'k1'")
            assert cur.rowcount == 1
        other.commit()

        # the ledger's own (ended) session is replaced on its next operation
        assert ledger.counts() == []
        # and the frozen transaction rolled back
        with other.cursor() as cur:
            cur.execute(f"SELECT message FROM {table} WHERE item_key = 'k1'")
            assert cur.fetchone() == ("other",)
        other.commit()
    finally:
        ledger.close()
        with other.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        other.commit()
        other.close()
