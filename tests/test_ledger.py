"""The ledger on real databases: DuckDB and SQLite files, and PostgreSQL when a server is configured."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from airflow_provider_loyalty.ledger import (
    ReversalLedger,
    check_table_name,
    earn_key_sql,
    not_done_predicate,
    points_key_sql,
)
from airflow_provider_loyalty.operators._reversal import ItemResult
from tests.conftest import set_connection

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
BACKENDS = ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


def test_postgres_is_configured_where_required() -> None:
    if os.environ.get("LOYALTY_REQUIRE_POSTGRES") and not POSTGRES_URI:
        pytest.fail("LOYALTY_REQUIRE_POSTGRES is set but LOYALTY_TEST_POSTGRES_URI is not")


@pytest.fixture(params=BACKENDS)
def ledger_conn(request, monkeypatch, tmp_path) -> tuple[str, str]:
    """Return (conn_id, table) of an empty ledger on the backend."""
    backend = request.param
    table = f"ledger_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    elif backend == "duckdb":
        set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(tmp_path / "l.duckdb"))
    else:
        if not POSTGRES_URI:
            pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
        monkeypatch.setenv("AIRFLOW_CONN_LEDGER", POSTGRES_URI)
    yield "ledger", table
    if backend == "postgres":
        ledger = ReversalLedger("ledger", table)
        conn = ledger.hook.get_conn()
        conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()


def results(keys: range, ok: bool = True, vendor_field: str = "unique_id") -> list[ItemResult]:
    return [
        ItemResult(str(k), {vendor_field: k}, ok, None if ok else "rejected", "" if ok else "no", False) for k in keys
    ]


def run(n: int = 1) -> dict:
    return {"dag_id": "dag", "run_id": f"run{n}", "task_id": "cancel", "map_index": -1, "try_number": n}


def test_record_and_look_up_in_chunks(ledger_conn) -> None:
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    ledger.record("xoxoday", results(range(1, 1201)), run())
    ledger.record("xoxoday", results(range(1201, 1301), ok=False), run())
    ledger.record("capillary", results(range(1, 11)), run())
    candidates = [str(k) for k in range(1, 1400)]
    done = ledger.done_keys("xoxoday", iter(candidates))
    assert done == {str(k) for k in range(1, 1201)}
    assert ledger.counts() == [
        ("capillary", "succeeded", None, 10),
        ("xoxoday", "failed", "permanent", 100),
        ("xoxoday", "succeeded", None, 1200),
    ]
    ledger.close()
    # a second ledger object (another task) sees the same, and creating the table again is harmless
    again = ReversalLedger(conn_id, table)
    again.ensure_table()
    assert again.done_keys("xoxoday", ["5", "1250", "99999"]) == {"5"}
    again.close()


def test_extraction_anti_join(ledger_conn) -> None:
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    ledger.record("xoxoday", results(range(1, 3)), run())
    ledger.record("xoxoday", results(range(3, 4), ok=False), run())  # refused for good
    ledger.record("xoxoday", [ItemResult("4", {"unique_id": 4}, False, "http_503", "", True)], run())  # transient
    ledger.record(
        "capillary", [ItemResult("7/p1/e1", {"customer_id": 7, "promotion_id": "p1", "earn_id": "e1"}, True)], run()
    )
    conn = ledger.hook.get_conn()
    cursor = conn.cursor()
    src_p, src_e = f"{table}_points", f"{table}_earns"
    cursor.execute(f"CREATE TABLE {src_p} (unique_id BIGINT)")
    cursor.execute(f"INSERT INTO {src_p} VALUES (1), (2), (3), (4), (5)")
    cursor.execute(f"CREATE TABLE {src_e} (customer_id BIGINT, promotion_id VARCHAR(30), earn_id VARCHAR(30))")
    cursor.execute(f"INSERT INTO {src_e} VALUES (7, 'p1', 'e1'), (7, 'p1', 'e2')")
    conn.commit()
    cursor.execute(
        f"SELECT unique_id FROM {src_p} s WHERE "
        f"{not_done_predicate('xoxoday', points_key_sql('s.unique_id'), table)} ORDER BY 1"
    )
    assert [r[0] for r in cursor.fetchall()] == [4, 5]
    predicate = not_done_predicate("xoxoday", points_key_sql("s.unique_id"), table, skip_permanent_failures=False)
    cursor.execute(f"SELECT unique_id FROM {src_p} s WHERE {predicate} ORDER BY 1")
    assert [r[0] for r in cursor.fetchall()] == [3, 4, 5]
    cursor.execute(
        f"SELECT earn_id FROM {src_e} s WHERE "
        f"{not_done_predicate('capillary', earn_key_sql('s.customer_id', 's.promotion_id', 's.earn_id'), table)}"
    )
    assert [r[0] for r in cursor.fetchall()] == ["e2"]
    for t in (src_p, src_e):
        cursor.execute(f"DROP TABLE {t}")
    conn.commit()
    conn.close()
    ledger.close()


def test_concurrent_writers(ledger_conn) -> None:
    """Several tasks (here threads, each with its own ledger and connection) append to one table."""
    conn_id, table = ledger_conn
    ReversalLedger(conn_id, table).ensure_table()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        ledger = ReversalLedger(conn_id, table)
        try:
            for batch in range(5):
                start = n * 1000 + batch * 100
                ledger.record("xoxoday", results(range(start, start + 100)), run(n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            ledger.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ReversalLedger(conn_id, table).counts() == [("xoxoday", "succeeded", None, 2000)]


@pytest.mark.parametrize("name", ["ledger; DROP TABLE x", "a b", "", "1abc", "a.b.c.d"])
def test_table_names_are_identifiers(name) -> None:
    with pytest.raises(ValueError, match="identifier"):
        check_table_name(name)


def test_non_sql_connection_is_refused(monkeypatch, xoxoday_conn) -> None:
    with pytest.raises(TypeError, match="not a SQL DbApiHook"):
        ReversalLedger("xoxoday_default").ensure_table()
