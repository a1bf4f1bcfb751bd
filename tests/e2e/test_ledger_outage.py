"""The ledger's PostgreSQL server stops mid-run: nothing answered is lost, nothing is sent twice.

A real PostgreSQL server of the test's own (stopped with an immediate shutdown while requests are in
flight, then started again), the sandbox over loopback HTTP, the operator's answered outcomes kept in
an Airflow Variable of the real metadata DB in between.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.operators.test_operators import FakeTI
from tests.pg_server import PostgresServer, bindir

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture
def postgres():
    binaries = bindir()
    if binaries is None:
        if os.environ.get("LOYALTY_REQUIRE_POSTGRES"):
            pytest.fail("LOYALTY_REQUIRE_POSTGRES is set but the PostgreSQL server binaries are missing")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = PostgresServer(binaries)
    server.start()
    yield server
    server.remove()


def test_postgres_ledger_stopped_mid_run(postgres, monkeypatch) -> None:
    import psycopg2

    import airflow_provider_loyalty.ledger._connection as store

    monkeypatch.setattr(store, "BACKOFF_SECONDS", 0.2)
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER", postgres.uri)
    dataset = sb.generate_dataset(seed=5, points=80, earns=0, big_customer_earns=0, customers=1)
    ids = [uid for (uid, _), o in zip(dataset.point_reversals, dataset.point_outcomes, strict=True) if o == "cancel"]
    with sb.Sandbox(sb.SandboxConfig(latency_ms=150), dataset) as vendor:
        for name, value in sb.connection_env(vendor.url).items():
            monkeypatch.setenv(name, value)

        def operator() -> CancelPointsOperator:
            return CancelPointsOperator(
                task_id="cancel_outage", unique_ids=ids, batch_size=4, max_concurrency=2, ledger_conn_id="ledger"
            )

        def stop_when_half_done() -> None:
            while vendor.stats()["xoxoday"]["cancelled"] < len(ids) // 3:
                time.sleep(0.01)
            postgres.stop()

        watcher = threading.Thread(target=stop_when_half_done)
        watcher.start()
        try:
            with pytest.raises(AirflowException, match="kept in Variable") as first:
                operator().execute({"ti": FakeTI("outage-run", 1)})
        finally:
            watcher.join(timeout=120)
        assert not isinstance(first.value, AirflowFailException)  # Airflow retries it
        applied_in_try_1 = vendor.stats()["xoxoday"]["cancelled"]
        assert 0 < applied_in_try_1 < len(ids)

        postgres.start()
        summary = operator().execute({"ti": FakeTI("outage-run", 2)})
        assert summary["failed"] == 0
        assert summary["skipped"] + summary["succeeded"] == len(ids)

        attempts = vendor.state.point_attempts(ids)
        assert {a["attempts"] for a in attempts.values()} == {1}, "an id reached the vendor twice"
        assert {a["cancelled"] for a in attempts.values()} == {1}

    with psycopg2.connect(postgres.uri) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT item_key, COUNT(*) FROM loyalty_reversal_ledger WHERE status = 'succeeded' GROUP BY item_key"
        )
        done = dict(cursor.fetchall())
    assert sorted(done) == sorted(str(i) for i in ids)  # every applied item has a done record...
    assert set(done.values()) == {1}  # ...exactly one
