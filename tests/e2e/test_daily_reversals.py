"""The example daily DAG end to end (DuckDB warehouse + ledger, sandbox), reruns, and resume after failure."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import duckdb
import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_loyalty.hooks._retry import RetryPolicy
from airflow_provider_loyalty.ledger import ReversalLedger
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from tests.conftest import set_connection
from tests.e2e.test_dag_runs import load_dag, xcom

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]


def test_daily_dag_twice_exactly_once(vendor, monkeypatch, tmp_path) -> None:
    from airflow_provider_loyalty.sandbox import write_duckdb
    from airflow_provider_loyalty.sandbox.seed import order_ids

    today = datetime.now(timezone.utc).date()
    warehouse = tmp_path / "warehouse.duckdb"
    write_duckdb(warehouse, vendor.dataset, today)
    set_connection(monkeypatch, "loyalty_warehouse", conn_type="duckdb", host=str(warehouse))
    expected = vendor.dataset.expected()
    dag = load_dag("loyalty_daily_reversals")

    first = dag.test(run_conf={"max_failed_ratio": 0.5})
    assert first.state == "success"
    points, earns = xcom(first, "cancel_points"), xcom(first, "revoke_earns")
    assert (points["requested"], points["succeeded"], points["failed"]) == (
        expected["points"]["rows"],
        expected["points"]["cancelled"],
        expected["points"]["not_found"],
    )
    assert (earns["requested"], earns["succeeded"]) == (expected["earns"]["rows"], expected["earns"]["revoked"])
    assert earns["requests"] == expected["earns"]["min_requests"]  # one customer per request
    stats = vendor.stats()
    assert stats["xoxoday"]["cancelled"] == expected["points"]["cancelled"]
    assert stats["capillary"]["revoked"] == expected["earns"]["revoked"]

    with duckdb.connect(str(warehouse)) as db:
        ledger = dict(
            db.execute("SELECT vendor || ':' || status, COUNT(*) FROM loyalty_reversal_ledger GROUP BY 1").fetchall()
        )
        codes = dict(
            db.execute(
                "SELECT code, COUNT(*) FROM loyalty_reversal_ledger WHERE vendor = 'capillary' "
                "AND status = 'failed' GROUP BY 1"
            ).fetchall()
        )
    assert ledger == {
        "xoxoday:sending": expected["points"]["rows"],  # one intent per item sent, before its request
        "capillary:sending": expected["earns"]["rows"],
        "xoxoday:succeeded": expected["points"]["cancelled"],
        "xoxoday:failed": expected["points"]["not_found"],
        "capillary:succeeded": expected["earns"]["revoked"],
        "capillary:failed": expected["earns"]["rows"] - expected["earns"]["revoked"],
    }
    assert codes == {c: expected["earns"][c] for c in ("729", "730", "731") if expected["earns"][c]}
    # The extraction's order_id rides along as each item's reference (intent and outcome alike)
    point_orders, earn_orders = order_ids(vendor.dataset)
    with duckdb.connect(str(warehouse)) as db:
        references = dict(
            db.execute(
                "SELECT vendor, COUNT(DISTINCT reference) FROM loyalty_reversal_ledger "
                "WHERE reference LIKE 'ORD-%' GROUP BY vendor"
            ).fetchall()
        )
        unreferenced = db.execute("SELECT COUNT(*) FROM loyalty_reversal_ledger WHERE reference IS NULL").fetchone()
    assert references == {"xoxoday": len(set(point_orders)), "capillary": len(set(earn_orders))}
    assert unreferenced == (0,)

    # The second run extracts nothing (done or refused for good) and sends nothing.
    before = vendor.stats()
    second = dag.test(run_conf={"max_failed_ratio": 0.5})
    assert second.state == "success"
    assert xcom(second, "cancel_points")["requested"] == 0 and xcom(second, "revoke_earns")["requested"] == 0
    after = vendor.stats()
    assert after["xoxoday"]["api_requests"] == before["xoxoday"]["api_requests"]
    assert after["capillary"]["api_requests"] == before["capillary"]["api_requests"]
    assert after["xoxoday"]["duplicate_attempts"] == 0 and after["capillary"]["duplicate_attempts"] == 0


def test_dry_run_param_sends_nothing(vendor, monkeypatch, tmp_path) -> None:
    from airflow_provider_loyalty.sandbox import write_duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    write_duckdb(warehouse, vendor.dataset, datetime.now(timezone.utc).date())
    set_connection(monkeypatch, "loyalty_warehouse", conn_type="duckdb", host=str(warehouse))
    run = load_dag("loyalty_daily_reversals").test(run_conf={"dry_run": True})
    assert run.state == "success"
    assert xcom(run, "revoke_earns")["dry_run"] is True
    assert xcom(run, "revoke_earns")["planned"] == vendor.dataset.expected()["earns"]["rows"]
    stats = vendor.stats()
    assert stats["xoxoday"]["requests"] == 0 and stats["capillary"]["requests"] == 0


class FakeTI:
    def __init__(self, try_number: int) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number = "d", "r", "revoke", -1, try_number
        self.pushed: dict = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def test_resume_after_vendor_outage_sends_each_earn_once(vendor, monkeypatch, tmp_path) -> None:
    """Try 1: the vendor goes down after a few requests. Try 2 (vendor healed) sends only the rest."""
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "ledger.sqlite"))
    rows = [(c, p, e) for c, p, e, _ in vendor.dataset.earn_reversals]
    customers = len({c for c, _, _ in rows})

    def outage_after(n: int, stop: threading.Event) -> None:
        while not stop.is_set():
            if vendor.stats()["capillary"]["api_requests"] >= n:
                vendor.config.error_rate = 1.0
                return
            time.sleep(0.001)

    def operator() -> RevokeEarnOperator:
        return RevokeEarnOperator(
            task_id="revoke",
            earns=rows,
            ledger_conn_id="ledger",
            max_failed_ratio=0.5,
            max_concurrency=1,
            max_requests_per_minute=600,
            hook_params={"retry_policy": RetryPolicy(max_attempts=2, backoff_initial=0.01)},
        )

    stop = threading.Event()
    watcher = threading.Thread(target=outage_after, args=(4, stop))
    watcher.start()
    try:
        with pytest.raises(AirflowException, match="transient"):
            operator().execute({"ti": FakeTI(1)})
    finally:
        stop.set()
        watcher.join()
    done_first = {k for k in ReversalLedger("ledger").done_keys("capillary", [f"{c}/{p}/{e}" for c, p, e in rows])}
    assert 0 < len(done_first) < len(rows)

    vendor.config.error_rate = 0.0  # healed
    summary = operator().execute({"ti": FakeTI(2)})
    assert summary["skipped"] == len(done_first)
    attempts = vendor.state.earn_attempts([e for _, _, e in rows])
    assert all(a["attempts"] == 1 for a in attempts.values()), "an earn reached the vendor twice"
    assert vendor.stats()["capillary"]["duplicate_attempts"] == 0
    assert summary["succeeded"] + len(done_first) == vendor.dataset.expected()["earns"]["revoked"]
    assert customers > 4


def test_fanout_dag_mapped_over_shards(vendor, monkeypatch, tmp_path) -> None:
    """The fan-out example: sharded extraction, mapped operators; every item once, summaries add up."""
    from airflow_provider_loyalty.sandbox import write_duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    write_duckdb(warehouse, vendor.dataset, datetime.now(timezone.utc).date())
    for conn_id in ("loyalty_warehouse", "loyalty_ledger"):
        set_connection(monkeypatch, conn_id, conn_type="duckdb", host=str(warehouse))
    expected = vendor.dataset.expected()
    # without a budget store: each task paces alone (limit / slots)
    conf = {"shards": 3, "max_failed_ratio": 0.5, "rate_budget_conn_id": None}
    run = load_dag("loyalty_reversals_fanout").test(run_conf=conf)
    assert run.state == "success"
    totals = xcom(run, "totals")
    assert totals["points"] == {
        "requested": expected["points"]["rows"],
        "succeeded": expected["points"]["cancelled"],
        "failed": expected["points"]["not_found"],
        "skipped": 0,
    }
    assert totals["earns"]["succeeded"] == expected["earns"]["revoked"]
    assert totals["earns"]["requested"] == expected["earns"]["rows"]
    stats = vendor.stats()
    assert stats["capillary"]["duplicate_attempts"] == 0 and stats["xoxoday"]["duplicate_attempts"] == 0
    assert stats["capillary"]["api_requests"] == expected["earns"]["min_requests"]  # customers never split by shards
