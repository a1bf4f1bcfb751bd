"""Claims between hosts whose clocks disagree, over a real PostgreSQL ledger.

A lease is a point in time written by one host and compared by another. Measured on each
worker's own clock, a host ten minutes ahead reads every live claim as expired and takes it over
(two live attempts then both send), and a host ten minutes behind cannot take over a dead
owner's claim for ten minutes. Measured on the database server's clock, neither happens.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from urllib.parse import urlparse

import pytest

from airflow_provider_loyalty.coordination import claims
from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.ledger import ReversalLedger
from airflow_provider_loyalty.operators._run_claims import RunClaims
from tests.conftest import set_connection

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
pytestmark = pytest.mark.skipif(not POSTGRES_URI, reason="no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
SKEW = 600.0  # ten minutes: far beyond any lease


@pytest.fixture
def table(monkeypatch):
    import psycopg2

    uri = urlparse(str(POSTGRES_URI))
    set_connection(
        monkeypatch,
        "ledger",
        conn_type="postgres",
        host=uri.hostname,
        port=uri.port or 5432,
        login=uri.username,
        password=uri.password,
        schema=uri.path.lstrip("/"),
    )
    name = f"skew_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg2.connect(POSTGRES_URI) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {claims.claims_table(name)}")
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def attempt(table: str, run_id: str, *, skew: float, lease: float = 60.0) -> tuple[RunClaims, ReversalLedger]:
    ledger = ReversalLedger("ledger", table=table)
    run = {"dag_id": "d", "run_id": run_id, "task_id": "cancel_points", "map_index": -1, "try_number": 1}
    log = logging.getLogger("test")
    return RunClaims(ledger, vendor="xoxoday", run=run, lease=lease, log=log, clock=lambda: time.time() + skew), ledger


ITEMS = [PointItem(uid) for uid in range(1000, 1020)]


@pytest.mark.parametrize("skew", [SKEW, -SKEW])
def test_a_host_whose_clock_is_off_never_takes_over_a_live_claim(table, skew):
    first, first_ledger = attempt(table, "scheduled__a", skew=0.0)
    other, other_ledger = attempt(table, "manual__b", skew=skew)
    try:
        assert len(first.claim(ITEMS)) == len(ITEMS)
        got = other.claim(ITEMS)
        assert got == []  # the live claim is left to its owner, whatever the other host's clock says
        assert set(other.elsewhere) == {i.key for i in ITEMS} and other.taken_over == {}
    finally:
        for run_claims, ledger in ((first, first_ledger), (other, other_ledger)):
            run_claims.finish()
            ledger.close()


def test_a_host_whose_clock_is_behind_takes_over_a_dead_owners_claim_once_its_lease_ran_out(table):
    import psycopg2

    ReversalLedger("ledger", table=table).ensure_table()
    dead = claims.Owner(
        {"dag_id": "d", "run_id": "scheduled__a", "task_id": "t", "map_index": -1, "try_number": 1}, host="gone"
    )
    with psycopg2.connect(POSTGRES_URI) as conn:
        conn.cursor().execute(claims.create_table_sql(claims.claims_table(table)))
        mine = claims.claim(
            conn, claims.claims_table(table), "%s", "xoxoday", [i.key for i in ITEMS], dead, now=time.time(), lease=1.0
        ).mine
    assert len(mine) == len(ITEMS)
    time.sleep(1.5)  # the dead owner's lease has run out on every clock but a skewed one

    late, ledger = attempt(table, "manual__b", skew=-SKEW)
    try:
        assert len(late.claim(ITEMS)) == len(ITEMS)
        assert set(late.taken_over) == {i.key for i in ITEMS}  # as in doubt: its owner never settled them
    finally:
        late.finish()
        ledger.close()
