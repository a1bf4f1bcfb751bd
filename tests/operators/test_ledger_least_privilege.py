"""A ledger a DBA provisioned, written by a role that may not create tables (real PostgreSQL).

Since PostgreSQL 15 a role may not create tables in ``public`` unless granted; many teams give the
Airflow role DML on tables made for it and nothing more. PostgreSQL refuses even
``CREATE TABLE IF NOT EXISTS`` of an existing table to such a role ("permission denied for
schema"), so the ledger and the claim table must be used as they are when they exist.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlparse

import pytest

from airflow_provider_loyalty.coordination import claims
from airflow_provider_loyalty.ledger import create_table_sql
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_operators import API, context, echo_cancel, sent_ids

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
pytestmark = pytest.mark.skipif(not POSTGRES_URI, reason="no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
TABLE = "loyalty_reversal_ledger"


@pytest.fixture
def restricted(monkeypatch):
    """A schema holding the provisioned tables, and a role with DML on them only; its connection ``ledger``."""
    import psycopg2

    name = f"r2dml_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(POSTGRES_URI)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute(f"CREATE SCHEMA {name}")
    cur.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'dml'")
    cur.execute(f"ALTER ROLE {name} SET search_path = {name}")
    cur.execute(f"GRANT USAGE ON SCHEMA {name} TO {name}")  # no CREATE
    cur.execute(f"SET search_path = {name}")
    cur.execute(create_table_sql(TABLE))
    cur.execute(claims.create_table_sql(claims.claims_table(TABLE)))
    cur.execute(f"GRANT SELECT, INSERT, UPDATE ON {TABLE}, {claims.claims_table(TABLE)} TO {name}")
    uri = urlparse(str(POSTGRES_URI))
    set_connection(
        monkeypatch,
        "ledger",
        conn_type="postgres",
        host=uri.hostname,
        port=uri.port or 5432,
        login=name,
        password="dml",
        schema=uri.path.lstrip("/"),
    )

    def query(sql: str) -> list[tuple]:
        cur.execute(sql)
        return cur.fetchall()

    yield query
    cur.execute(f"DROP SCHEMA {name} CASCADE")
    cur.execute(f"DROP ROLE {name}")
    admin.close()


def test_a_role_that_may_not_create_tables_uses_the_provisioned_ledger_and_claims(
    requests_mock, xoxoday_conn, restricted
):
    requests_mock.post(API, json=echo_cancel())
    s = CancelPointsOperator(task_id="t", unique_ids=[1, 2, 3], ledger_conn_id="ledger").execute(context())
    assert sent_ids(requests_mock) == [[1, 2, 3]]
    assert (s["succeeded"], s["failed"], s["claimed_elsewhere"]) == (3, 0, 0)
    rows = restricted(f"SELECT item_key, status FROM {TABLE} ORDER BY item_key, recorded_at")
    assert rows == [
        ("1", "sending"),
        ("1", "succeeded"),
        ("2", "sending"),
        ("2", "succeeded"),
        ("3", "sending"),
        ("3", "succeeded"),
    ]
    claimed = restricted(f"SELECT item_key, epoch, lease_expiry FROM {claims.claims_table(TABLE)} ORDER BY item_key")
    assert claimed == [("1", 1, None), ("2", 1, None), ("3", 1, None)]  # claimed, then released with the outcome


def test_a_missing_claim_table_the_role_may_not_create_is_refused_with_the_statement_to_run(
    requests_mock, xoxoday_conn, restricted
):
    restricted(f"DROP TABLE {claims.claims_table(TABLE)}; SELECT 1")
    requests_mock.post(API, json=echo_cancel())
    operator = CancelPointsOperator(task_id="t", unique_ids=[1, 2, 3], ledger_conn_id="ledger")
    with pytest.raises(Exception, match="CREATE TABLE IF NOT EXISTS loyalty_reversal_ledger_claims") as raised:
        operator.execute(context())
    assert "nothing was sent" in str(raised.value)
    assert sent_ids(requests_mock) == []


def test_a_missing_ledger_table_the_role_may_not_create_is_refused_by_name(requests_mock, xoxoday_conn, restricted):
    restricted(f"DROP TABLE {TABLE}; SELECT 1")
    requests_mock.post(API, json=echo_cancel())
    operator = CancelPointsOperator(task_id="t", unique_ids=[1, 2, 3], ledger_conn_id="ledger")
    with pytest.raises(Exception, match=f"the ledger table {TABLE} is missing and could not be created") as raised:
        operator.execute(context())
    assert "nothing was sent" in str(raised.value)
    assert sent_ids(requests_mock) == []
