"""A bare DB-API connection per backend (a SQLite file, a DuckDB file, the test PostgreSQL server)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_loyalty.coordination import claims

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
BACKENDS = ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Db:
    """One backend: how to open a connection to it, its placeholder, a fresh claim table."""

    backend: str
    placeholder: str
    table: str
    path: Path | None

    def connect(self) -> Any:
        if self.backend == "sqlite":
            return sqlite3.connect(str(self.path), timeout=30, isolation_level="DEFERRED")
        if self.backend == "duckdb":
            import duckdb

            return duckdb.connect(str(self.path))
        import psycopg2

        return psycopg2.connect(POSTGRES_URI)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    backend = request.param
    table = f"claims_{uuid.uuid4().hex[:10]}"
    if backend == "postgres" and not POSTGRES_URI:
        pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
    path = tmp_path / f"claims.{backend}" if backend != "postgres" else None
    d = Db(backend, "%s" if backend == "postgres" else "?", table, path)
    conn = d.connect()
    conn.cursor().execute(claims.create_table_sql(table))
    conn.commit()
    conn.close()
    yield d
    if backend == "postgres":
        conn = d.connect()
        conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()
