"""``python -m airflow_provider_loyalty.sandbox seed --conn-id ID`` fills any common-sql warehouse with the dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import pytest

from airflow_provider_loyalty.sandbox import generate_dataset
from airflow_provider_loyalty.sandbox.seed import EARNS_TABLE, POINTS_TABLE, order_ids

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
SIZES = {"seed": 5, "points": 40, "earns": 60, "big_customer_earns": 0, "customers": 6}
DAY = "2026-12-06"


def seed_cli(conn: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_CONN_SEEDED"] = conn
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "airflow_provider_loyalty.sandbox", "seed", "--conn-id", "seeded"]
    command += ["--seed", "5", "--points", "40", "--earns", "60", "--big-customer-earns", "0", "--customers", "6"]
    command += ["--reversal-date", DAY, *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def expected() -> tuple[list[tuple], list[tuple]]:
    dataset = generate_dataset(**SIZES, reversal_date=DAY)
    point_orders, earn_orders = order_ids(dataset)
    points = [
        (uid, reason, DAY, order) for (uid, reason), order in zip(dataset.point_reversals, point_orders, strict=True)
    ]
    earns = [(*row, DAY, order) for row, order in zip(dataset.earn_reversals, earn_orders, strict=True)]
    return sorted(points), sorted(earns)


def read(connect, placeholder_free_sql: str) -> list[tuple]:
    conn = connect()
    try:
        cursor = conn.cursor()
        cursor.execute(placeholder_free_sql)
        return sorted(tuple(str(v) if isinstance(v, date) else v for v in row) for row in cursor.fetchall())
    finally:
        conn.close()


POINTS_SQL = f"SELECT unique_id, reason, reversal_date, order_id FROM {POINTS_TABLE}"
EARNS_SQL = f"SELECT customer_id, promotion_id, earn_id, reason, reversal_date, order_id FROM {EARNS_TABLE}"


def check(connect) -> None:
    points, earns = expected()
    assert read(connect, POINTS_SQL) == points
    assert read(connect, EARNS_SQL) == earns
    assert points[0][3].startswith("ORD-") and len({e[5] for e in earns}) == 20  # three earns to an order


def test_seed_into_sqlite_twice_replaces_the_tables(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "warehouse.sqlite"
    conn = json.dumps({"conn_type": "sqlite", "host": str(path)})
    for _ in range(2):  # a second seed replaces, never doubles
        result = seed_cli(conn)
        assert result.returncode == 0, result.stderr
    assert f"{POINTS_TABLE}=40, {EARNS_TABLE}=60" in result.stdout
    check(lambda: sqlite3.connect(path))


def test_seed_into_duckdb(tmp_path) -> None:
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    result = seed_cli(json.dumps({"conn_type": "duckdb", "host": str(path)}))
    assert result.returncode == 0, result.stderr
    check(lambda: duckdb.connect(str(path), read_only=True))


@pytest.mark.postgres
def test_seed_into_postgres() -> None:
    if not POSTGRES_URI:
        pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
    import psycopg2

    schema = f"seed_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(POSTGRES_URI)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    try:
        # the tables land in the connection's search_path: this schema first
        uri = f"{POSTGRES_URI}?options=-csearch_path%3D{schema}"
        result = seed_cli(uri)
        assert result.returncode == 0, result.stderr

        def connect():
            conn = psycopg2.connect(POSTGRES_URI)
            conn.cursor().execute(f"SET search_path TO {schema}")
            return conn

        check(connect)
    finally:
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_seed_refuses_a_connection_that_is_no_sql_database() -> None:
    result = seed_cli(json.dumps({"conn_type": "http", "host": "https://example.test"}))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: connection 'seeded': ") and "Traceback" not in result.stderr
