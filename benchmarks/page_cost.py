"""Scenario 8 (``--scenario page``): how long the Reversals page takes to answer on a big ledger.

A ledger of ``days`` x ``per_day`` items (an intent and an outcome row each, 4 % refused: 1,000,000
rows at full size, a team's daily run after about three months) in a DuckDB file, and in the
PostgreSQL database of ``LOYALTY_BENCH_POSTGRES_URI`` when set. Each of the page's answers — the
30-day summary, the listing, a search by order-id prefix, by id, the refused items — is timed
through :class:`~airflow_provider_loyalty.ui.reader.LedgerReader` in an open read-only session (the
session's opening and the page's turn at a DuckDB file are left out), against the baseline of one
full scan of the same table in the same session (``SELECT vendor, status, COUNT(*) ... GROUP BY``).
Each figure is the median of its repetitions; the first of them reads a cold file.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.measure import ratio, row
from benchmarks.sizes import Sizes

TABLE = "loyalty_reversal_ledger"
CONN_ID = "bench_page_ledger"
#: The reader's "now": the generated history ends on this day.
NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
#: Within this, at full size, the page answers "in about a second".
TARGET_S = 1.0


def _generate_sql(days: int, per_day: int) -> str:
    """Each item: an intent then its outcome; one in 25 refused for good (the probe of the issue)."""
    base = (
        "SELECT 'xoxoday' AS vendor, 'x:' || (d * {n} + i) AS item_key, d * {n} + i AS unique_id, {status}, "
        "'loyalty_daily_reversals' AS dag_id, "
        "'scheduled__' || strftime(DATE '2026-12-07' - (d::INT), '%Y-%m-%d') || 'T00:00:00+00:00' AS run_id, "
        "'cancel_points' AS task_id, -1 AS map_index, 1 AS try_number, "
        "(TIMESTAMP '2026-12-07 01:00:00' - to_days(d::INT)) + to_microseconds(i * 1000 + {offset}) AS recorded_at, "
        "'ORD-' || (d * {n} + i) AS reference FROM range({days}) t(d), range({n}) u(i)"
    )
    outcome = base.format(
        n=per_day, days=days, offset="s.o",
        status="s.status, s.kind AS failure_kind, s.code, s.msg AS message",
    ) + (
        ", (VALUES ('sending', NULL, NULL, NULL, 0), ('succeeded', NULL, NULL, NULL, 1)) s(status, kind, code, msg, o) "
        "WHERE NOT (i % 25 = 0 AND s.status = 'succeeded')"
    )  # fmt: skip
    refused = base.format(
        n=per_day, days=days, offset="1",
        status="'failed' AS status, 'permanent' AS failure_kind, 'refused' AS code, "
        "'Transaction not found' AS message",
    ) + " WHERE i % 25 = 0"  # fmt: skip
    columns = "vendor, item_key, unique_id, status, failure_kind, code, message, dag_id, run_id, task_id, "
    columns += "map_index, try_number, recorded_at, reference"
    return f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM ({outcome} UNION ALL {refused})"


def _duckdb_ledger(path: Path, days: int, per_day: int) -> str:
    import duckdb

    from airflow_provider_loyalty.ledger import create_index_sql, create_table_sql

    conn = duckdb.connect(str(path))
    try:
        conn.execute(create_table_sql(TABLE))
        conn.execute(_generate_sql(days, per_day))
        conn.execute(create_index_sql(TABLE))
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    return json.dumps({"conn_type": "duckdb", "host": str(path)})


def _postgres_ledger(uri: str, duckdb_path: Path, csv_path: Path) -> str:
    """The same rows in a fresh schema of the bench database (copied from the DuckDB file)."""
    import duckdb
    import psycopg2

    from airflow_provider_loyalty.ledger import create_index_sql, create_table_sql

    source = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        names = [d[0] for d in source.execute(f"SELECT * FROM {TABLE} LIMIT 0").description]
        source.execute(f"COPY (SELECT * FROM {TABLE}) TO '{csv_path}' (HEADER false)")
    finally:
        source.close()
    schema = "bench_page"
    with psycopg2.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema}")
        cur.execute(create_table_sql(TABLE))
        with csv_path.open() as rows:
            cur.copy_expert(f"COPY {TABLE} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv)", rows)
        cur.execute(create_index_sql(TABLE))
    conn.close()
    conn = psycopg2.connect(uri)
    try:
        conn.autocommit = True  # VACUUM runs outside a transaction
        with conn.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {schema}.{TABLE}")  # what autovacuum does to a table after a load
    finally:
        conn.close()
    return uri + ("&" if "?" in uri else "?") + f"options=-csearch_path%3D{schema}"


def _measure(conn: str, queries: dict[str, Callable[..., Any]], reps: int) -> dict[str, list[float]]:
    from airflow_provider_loyalty.ui.reader import LedgerReader
    from airflow_provider_loyalty.ui.settings import LedgerSettings

    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = conn
    reader = LedgerReader(LedgerSettings(conn_id=CONN_ID, table=TABLE), now=lambda: NOW)
    scan = f"SELECT vendor, status, COUNT(*) FROM {TABLE} GROUP BY vendor, status"
    times: dict[str, list[float]] = {name: [] for name in ["full scan", *queries]}
    try:
        for _ in range(reps):
            for name in times:
                with reader.session() as session:
                    started = time.perf_counter()
                    if name == "full scan":
                        session.fetch(scan)
                    else:
                        queries[name](reader, session)
                    times[name].append(time.perf_counter() - started)
    finally:
        os.environ.pop(f"AIRFLOW_CONN_{CONN_ID.upper()}", None)
    return times


def page_cost(sizes: Sizes) -> dict[str, Any]:
    """The page's answers on a ``page_days`` x ``page_per_day``-item ledger, each against one full scan."""
    days, per_day, reps = sizes.page_days, sizes.page_per_day, sizes.page_reps
    some_id = str((days // 2) * per_day + per_day // 2 + 1)  # an item of the middle day, not refused
    queries: dict[str, Callable[..., Any]] = {
        "summary, 30 days": lambda r, s: r.summary(days=30, session=s),
        "listing, 30 days": lambda r, s: r.items(session=s),
        f"search ORD-{some_id[:-1]} (prefix)": lambda r, s: r.items(query=f"ORD-{some_id[:-1]}", session=s),
        f"search {some_id} (an id)": lambda r, s: r.items(query=some_id, session=s),
        "refused items, 30 days": lambda r, s: r.items(status="refused", session=s),
    }
    rows_total = days * per_day * 2
    backends: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-page-") as tmp:
        path = Path(tmp) / "ledger.duckdb"
        backends["DuckDB"] = _measure(_duckdb_ledger(path, days, per_day), queries, reps)
        uri = os.environ.get("LOYALTY_BENCH_POSTGRES_URI")
        if uri:
            backends["PostgreSQL"] = _measure(_postgres_ledger(uri, path, Path(tmp) / "ledger.csv"), queries, reps)
    out: list[dict[str, Any]] = []
    full = sizes.page_days * sizes.page_per_day >= 500_000
    for backend, times in backends.items():
        scan = statistics.median(times["full scan"])
        for name in queries:
            value = statistics.median(times[name])
            out.append(
                row(
                    "8 page",
                    f"{name}, {backend}, {rows_total:,} rows: page answer / one full scan",
                    value,
                    "s",
                    baseline=scan,
                    baseline_label="one full scan",
                    ratio=ratio(value, scan),
                    target=f"<= {TARGET_S:g} s at 1M rows" if full else "",
                    met=(value <= TARGET_S) if full else None,
                )
            )
    config = {"days": days, "per_day": per_day, "rows": rows_total, "reps": reps, "backends": list(backends)}
    return {"config": config, "runs": {"times": backends}, "rows": out, "broken": []}
