"""Seed the sandbox's reversal tables into any SQL database Airflow reaches through a connection.

``python -m airflow_provider_loyalty.sandbox seed --conn-id ID`` writes the dataset the sandbox
serves into the two tables the example DAGs extract from, through the connection's common-sql hook
(PostgreSQL, DuckDB, SQLite, Snowflake...), so that a run against the sandbox finds its ids. The
tables are dropped and created again (portable DDL); rows go in batches through the hook's
``insert_rows``. Only Airflow's common-sql is used here (imported where it is used), never the
provider's own hooks or operators: the sandbox stays what the vendors' docs say.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from airflow_provider_loyalty.sandbox.seed import EARNS_TABLE, POINTS_TABLE, Dataset, order_ids

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

#: Rows per ``insert_rows`` call (one transaction each).
BATCH = 1000

POINTS_COLUMNS = ("unique_id", "reason", "reversal_date", "order_id")
EARNS_COLUMNS = ("customer_id", "promotion_id", "earn_id", "reason", "reversal_date", "order_id")
POINTS_DDL = (
    f"CREATE TABLE {POINTS_TABLE} (unique_id BIGINT NOT NULL, reason VARCHAR(32), reversal_date DATE, "
    "order_id VARCHAR(32))"
)
EARNS_DDL = (
    f"CREATE TABLE {EARNS_TABLE} (customer_id BIGINT NOT NULL, promotion_id VARCHAR(64) NOT NULL, "
    "earn_id VARCHAR(64) NOT NULL, reason VARCHAR(32), reversal_date DATE, order_id VARCHAR(32))"
)


def sql_hook(conn_id: str) -> DbApiHook:
    """The connection's common-sql hook (``ValueError`` when the connection is no SQL database)."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    try:
        hook = BaseHook.get_hook(conn_id)
    except Exception as exc:  # no such connection, a type without a hook: say so, with the id
        raise ValueError(f"connection {conn_id!r}: {exc}") from None
    if not isinstance(hook, DbApiHook):
        raise ValueError(f"connection {conn_id!r} gives a {type(hook).__name__}, not a SQL (common-sql) hook")
    return hook


def write_sql(
    conn_id: str, dataset: Dataset, reversal_date: date | None = None, *, batch: int = BATCH
) -> dict[str, int]:
    """Create (or replace) the two reversal tables through connection ``conn_id``; return their row counts.

    Tables: ``loyalty_points_reversals(unique_id, reason, reversal_date, order_id)`` and
    ``loyalty_earn_reversals(customer_id, promotion_id, earn_id, reason, reversal_date, order_id)``;
    ``order_id`` is the business reference a DAG may pass on to the ledger.
    """
    hook = sql_hook(conn_id)
    day = (reversal_date or dataset.reversal_date).isoformat()  # text: every driver and engine reads it as a DATE
    point_orders, earn_orders = order_ids(dataset)
    points = [
        (uid, reason, day, order) for (uid, reason), order in zip(dataset.point_reversals, point_orders, strict=True)
    ]
    earns = [(*row, day, order) for row, order in zip(dataset.earn_reversals, earn_orders, strict=True)]
    for table, ddl in ((POINTS_TABLE, POINTS_DDL), (EARNS_TABLE, EARNS_DDL)):
        hook.run([f"DROP TABLE IF EXISTS {table}", ddl], autocommit=True)
    for table, columns, rows in ((POINTS_TABLE, POINTS_COLUMNS, points), (EARNS_TABLE, EARNS_COLUMNS, earns)):
        hook.insert_rows(table, rows, target_fields=list(columns), commit_every=batch, executemany=True)
    counts: dict[str, int] = {}
    for table in (POINTS_TABLE, EARNS_TABLE):
        found = hook.get_first(f"SELECT COUNT(*) FROM {table}")
        counts[table] = int(found[0]) if found else 0
    return counts
