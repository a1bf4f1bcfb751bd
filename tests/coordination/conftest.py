"""A bare DB-API connection per backend (a SQLite file, a DuckDB file, the test PostgreSQL server)."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
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


def must_run() -> bool:
    """In CI (or when asked) a missing server fails the test instead of skipping it."""
    return bool(os.environ.get("CI") or os.environ.get("LOYALTY_REQUIRE_POSTGRES"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if must_run():
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(10)
