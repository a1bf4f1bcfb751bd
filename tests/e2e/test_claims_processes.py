"""Claims between real operator processes over the same items, against the sandbox over loopback.

Each attempt is a process of its own (``tests/e2e/claims_task.py``); the ledger is a real
PostgreSQL database, a SQLite file or a DuckDB file. What went over the wire is read from the
sandbox's per-id counters, never from the operators' word.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.coordination.claims import claims_table
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e]

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
TABLE = "loyalty_reversal_ledger"


@pytest.fixture
def slow_vendor():
    """Every request takes 150 ms at the vendor: two attempts started together overlap."""
    dataset = sb.generate_dataset(seed=5, points=400, earns=10, big_customer_earns=0, customers=8)
    with sb.Sandbox(sb.SandboxConfig(latency_ms=150), dataset) as server:
        server.ids = [  # type: ignore[attr-defined]
            uid for (uid, _), o in zip(dataset.point_reversals, dataset.point_outcomes, strict=True) if o == "cancel"
        ]
        yield server


@pytest.fixture
def ledger(request, tmp_path):
    """(environment value of the ledger connection, how to query it) for the backend asked for."""
    backend = request.param
    if backend == "postgres":
        if not POSTGRES_URI:
            pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
        import psycopg2

        schema = f"claims_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(POSTGRES_URI)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE SCHEMA {schema}")
        uri = POSTGRES_URI + ("&" if "?" in POSTGRES_URI else "?") + f"options=-csearch_path%3D{schema}"

        def query(sql: str) -> list[tuple]:
            with psycopg2.connect(POSTGRES_URI, options=f"-csearch_path={schema}") as conn, conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()

        yield backend, uri, query
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
        return
    path = tmp_path / f"ledger.{backend}"
    uri = json.dumps({"conn_type": backend, "host": str(path)})

    def query(sql: str) -> list[tuple]:
        if backend == "sqlite":
            import sqlite3

            with sqlite3.connect(path) as conn:
                return conn.execute(sql).fetchall()
        import duckdb

        with duckdb.connect(str(path), read_only=True) as conn:
            return conn.execute(sql).fetchall()

    yield backend, uri, query


def start_task(vendor, ledger_env: str, spec: dict) -> subprocess.Popen[str]:
    """The task in a process of its own, its output in a file (``process.output``)."""
    env = {**os.environ, **sb.connection_env(vendor.url), "AIRFLOW_CONN_LEDGER": ledger_env}
    output = Path(os.environ.get("TMPDIR", "/tmp")) / f"claims-task-{uuid.uuid4().hex[:8]}.log"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.claims_task", json.dumps(spec)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    process.output = output  # type: ignore[attr-defined]
    return process


def result(process: subprocess.Popen[str], timeout: float = 240) -> tuple[str, object]:
    process.wait(timeout=timeout)
    output = process.output.read_text()  # type: ignore[attr-defined]
    process.output.unlink()  # type: ignore[attr-defined]
    last = [line for line in output.splitlines() if line.startswith(("SUMMARY ", "ERROR "))]
    assert last, output[-3000:]
    kind, _, body = last[-1].partition(" ")
    return kind, (json.loads(body) if kind == "SUMMARY" else body)


@pytest.mark.parametrize("ledger", ["postgres", "sqlite"], indirect=True)
def test_two_live_processes_over_the_same_items_send_each_item_once(slow_vendor, ledger):
    backend, uri, query = ledger
    ids = slow_vendor.ids
    # One attempt walks the items forwards, the other backwards: their claims meet in the middle.
    a = start_task(slow_vendor, uri, {"run_id": "scheduled__a", "ids": ids, "concurrency": 4})
    b = start_task(slow_vendor, uri, {"run_id": "manual__b", "ids": ids[::-1], "concurrency": 4, "map_index": 1})
    (ka, sa), (kb, sb_) = result(a), result(b)
    assert (ka, kb) == ("SUMMARY", "SUMMARY"), (sa, sb_)
    for s in (sa, sb_):
        assert s["failed"] == 0
        assert s["succeeded"] + s["failed"] + s["skipped"] + s["claimed_elsewhere"] == s["requested"] == len(ids)
    assert sa["succeeded"] + sb_["succeeded"] == len(ids)
    attempts = slow_vendor.state.point_attempts(ids)
    assert {a["attempts"] for a in attempts.values()} == {1}  # no item sent twice: 0 by two live attempts
    assert {a["cancelled"] for a in attempts.values()} == {1}
    done = query(f"SELECT item_key, COUNT(*) FROM {TABLE} WHERE status = 'succeeded' GROUP BY item_key")
    assert len(done) == len(ids) and {n for _, n in done} == {1}
    assert query(f"SELECT COUNT(*) FROM {claims_table(TABLE)} WHERE lease_expiry IS NOT NULL") == [(0,)]


@pytest.mark.parametrize("ledger", ["duckdb"], indirect=True)
def test_a_second_process_writing_a_duckdb_ledger_is_refused_by_name(slow_vendor, ledger):
    _, uri, query = ledger
    ids = slow_vendor.ids
    a = start_task(slow_vendor, uri, {"run_id": "scheduled__a", "ids": ids, "concurrency": 1, "batch_size": 2})
    path = json.loads(uri)["host"]
    deadline = time.monotonic() + 60
    while not Path(path).exists():  # the first process holds the file from its first ledger write
        assert a.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    b = start_task(slow_vendor, uri, {"run_id": "manual__b", "ids": ids})
    kind, refusal = result(b)
    assert kind == "ERROR"
    assert path in str(refusal) and "admits one writing process" in str(refusal)
    assert "Could not set lock" not in str(refusal)
    kind, summary = result(a)
    assert kind == "SUMMARY" and summary["succeeded"] == len(ids)  # type: ignore[index]
    attempts = slow_vendor.state.point_attempts(ids)
    assert {a["attempts"] for a in attempts.values()} == {1}


@pytest.mark.parametrize("ledger", ["postgres", "sqlite"], indirect=True)
def test_a_task_frozen_past_its_lease_sends_no_new_request_when_it_wakes(slow_vendor, ledger):
    """``kill -STOP`` a sending task past its lease, let another attempt take its items over and
    finish, then ``kill -CONT`` it: the fence holds. The stale owner writes no new intent and sends
    at most the requests it had already fenced (the residue, measured); every item is applied
    once, the only items sent twice are the stale owner's open intents (in doubt, reconciled)."""
    _, uri, query = ledger
    ids = slow_vendor.ids
    lease = 3.0
    a = start_task(slow_vendor, uri, {"run_id": "scheduled__a", "ids": ids, "batch_size": 5, "lease": lease})
    outcomes_of_a = f"SELECT COUNT(*) FROM {TABLE} WHERE run_id = 'scheduled__a' AND status <> 'sending'"
    deadline = time.monotonic() + 120
    while True:
        assert a.poll() is None, a.output.read_text()[-3000:]  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the first task never got going"
        try:
            if query(outcomes_of_a)[0][0] >= 40:
                break
        except Exception:  # noqa: BLE001, S110 - the table is not there yet
            pass
        time.sleep(0.05)
    os.killpg(a.pid, signal.SIGSTOP)
    intents_at_stop = {
        k for (k,) in query(f"SELECT item_key FROM {TABLE} WHERE run_id = 'scheduled__a' AND status = 'sending'")
    }
    answered_at_stop = {
        k for (k,) in query(f"SELECT item_key FROM {TABLE} WHERE run_id = 'scheduled__a' AND status <> 'sending'")
    }
    open_at_stop = intents_at_stop - answered_at_stop
    time.sleep(lease + 1.5)  # past the frozen task's lease: its claims may be taken over

    b = start_task(slow_vendor, uri, {"run_id": "manual__b", "ids": ids, "batch_size": 5, "lease": lease})
    kind_b, summary_b = result(b)
    assert kind_b == "SUMMARY", summary_b
    requests_before_wake = slow_vendor.stats()["xoxoday"]["api_requests"]

    os.killpg(a.pid, signal.SIGCONT)
    kind_a, summary_a = result(a)
    residue = slow_vendor.stats()["xoxoday"]["api_requests"] - requests_before_wake
    intents_after = {
        k for (k,) in query(f"SELECT item_key FROM {TABLE} WHERE run_id = 'scheduled__a' AND status = 'sending'")
    }
    assert intents_after == intents_at_stop  # woken, the stale owner wrote no new intent...
    assert residue <= 2  # ...and sent at most its 2 fenced requests (max_concurrency of the task)
    assert kind_a == "SUMMARY" and summary_a["claimed_elsewhere"] > 0, summary_a  # type: ignore[index]

    attempts = slow_vendor.state.point_attempts(ids)
    assert {a["cancelled"] for a in attempts.values()} == {1}  # every item applied once
    twice = {str(uid) for uid, a in attempts.items() if a["attempts"] == 2}
    assert max(a["attempts"] for a in attempts.values()) <= 2
    assert twice <= open_at_stop  # only the frozen task's open intents were sent twice (in doubt)
    done = {k for (k,) in query(f"SELECT DISTINCT item_key FROM {TABLE} WHERE status = 'succeeded'")}
    assert done == {str(uid) for uid in ids}  # 0 outcomes lost
    # B reconciled what it resent; nothing the frozen task answered late settles an item as refused
    refused = query(f"SELECT COUNT(*) FROM {TABLE} WHERE failure_kind = 'permanent'")
    assert refused == [(0,)]
    print(  # the measured residue, in the test's output (-s)
        f"\n[claims] frozen past its lease: {len(open_at_stop)} item(s) in doubt at SIGSTOP, {len(twice)} sent twice "
        f"(reconciled), {residue} request(s) sent by the stale owner after SIGCONT, "
        f"{summary_a['claimed_elsewhere']} of its items left to the new owner"  # type: ignore[index]
    )
