"""A worker SIGKILLed while the vendor holds applied-but-unanswered requests, then two reruns.

Real processes: ``airflow dags test`` in its own process group, killed with SIGKILL while the
sandbox sits on answers it has already applied; a real DuckDB ledger file; the sandbox over loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.ledger import in_doubt_sql
from tests.conftest import set_connection

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture
def slow_vendor(monkeypatch):
    """A sandbox that applies each request, then waits 2 s before answering it."""
    dataset = sb.generate_dataset(seed=11, points=60, earns=80, big_customer_earns=0, customers=16)
    with sb.Sandbox(sb.SandboxConfig(reply_delay_ms=2000), dataset) as server:
        for name, value in sb.connection_env(server.url).items():
            monkeypatch.setenv(name, value)
        server.dataset = dataset  # type: ignore[attr-defined]
        yield server


def dags_test(dag_id: str, conf: dict) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AIRFLOW, "dags", "test", dag_id, "-c", json.dumps(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
        start_new_session=True,  # its own process group: the kill takes the task with it
    )


def ledger_query(path: Path, sql: str) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as db:
        return db.execute(sql).fetchall()


@pytest.mark.parametrize("vendor_name", ["xoxoday", "capillary"])
def test_sigkill_mid_request_then_rerun_reconciles_and_sends_each_item_once(
    slow_vendor, vendor_name, monkeypatch, tmp_path
) -> None:
    ledger = tmp_path / "ledger.duckdb"
    set_connection(monkeypatch, "loyalty_ledger", conn_type="duckdb", host=str(ledger))
    dataset = slow_vendor.dataset
    if vendor_name == "xoxoday":
        ids = [
            uid for (uid, _), o in zip(dataset.point_reversals, dataset.point_outcomes, strict=True) if o == "cancel"
        ]
        conf = {"unique_ids": ids}
        done_key = "cancelled"
    else:
        ids = [
            [c, p, e] for (c, p, e, _), o in zip(dataset.earn_reversals, dataset.earn_outcomes, strict=True) if o == 0
        ]
        conf = {"earns": ids}
        done_key = "revoked"
    dag_id = f"loyalty_test_crash_{vendor_name}"

    # 1. Kill the run while answers the vendor already applied are held back.
    process = dags_test(dag_id, conf)
    deadline = time.monotonic() + 120
    while slow_vendor.stats()[vendor_name][done_key] == 0:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "the run never reached the vendor"
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    applied = slow_vendor.stats()[vendor_name][done_key]
    assert 0 < applied < len(ids)
    in_doubt = ledger_query(ledger, in_doubt_sql())
    assert len(in_doubt) >= applied  # every applied item has an intent and no answer
    assert ledger_query(ledger, "SELECT COUNT(*) FROM loyalty_reversal_ledger WHERE status = 'succeeded'") == [(0,)]

    # 2. Rerun (a new DAG run, try 1): green, nothing failed, the applied items reconciled.
    slow_vendor.config.reply_delay_ms = 0
    rerun = dags_test(dag_id, conf)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-4000:]
    rows = ledger_query(
        ledger,
        "SELECT status, COALESCE(failure_kind, ''), COALESCE(code, ''), COUNT(DISTINCT item_key) "
        "FROM loyalty_reversal_ledger WHERE status <> 'sending' GROUP BY 1, 2, 3",
    )
    assert rows and all(status == "succeeded" for status, *_ in rows), rows
    reconciled = dict(((code, n) for _, _, code, n in rows)).get("already_reversed", 0)
    assert reconciled == applied
    assert ledger_query(ledger, in_doubt_sql()) == []
    stats = slow_vendor.stats()[vendor_name]
    assert stats[done_key] == len(ids)  # each item applied exactly once at the vendor
    if vendor_name == "xoxoday":
        attempts = slow_vendor.state.point_attempts(ids)
        assert {a["cancelled"] for a in attempts.values()} == {1}
    else:
        attempts = slow_vendor.state.earn_attempts([e for _, _, e in ids])
        assert {a["revoked"] for a in attempts.values()} == {1}

    # 3. A third run sends nothing and reports everything skipped.
    before = slow_vendor.stats()[vendor_name]["api_requests"]
    third = dags_test(dag_id, conf)
    output, _ = third.communicate(timeout=300)
    assert third.returncode == 0, output[-4000:]
    assert slow_vendor.stats()[vendor_name]["api_requests"] == before
    assert f"Skipping {len(ids)} " in output
