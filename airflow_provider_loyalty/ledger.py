"""The reversal ledger: an append-only outcomes table in any SQL database Airflow can reach.

One row per item outcome of every attempt. An item is *done* when a ``succeeded`` row exists for
its ``(vendor, item_key)``: task retries and tomorrow's run skip it, and extraction queries can
anti-join it (:func:`not_done_predicate`) so done rows — and, by default, rows the vendor refused
for good — are not even extracted.

The SQL is portable (DuckDB, SQLite, PostgreSQL, Snowflake...): ``CREATE ... IF NOT EXISTS``,
multi-row ``INSERT ... VALUES``, ``IN`` look-ups in chunks, and the hook's own placeholder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_loyalty.operators._reversal import ItemResult

log = logging.getLogger(__name__)

DEFAULT_TABLE = "loyalty_reversal_ledger"
#: Keys per look-up query and rows per insert statement (well under every engine's parameter limit).
LOOKUP_CHUNK = 500
INSERT_CHUNK = 60
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_MESSAGE_CHARS = 1000
_CODE_CHARS = 64

COLUMNS = (
    "vendor",
    "item_key",
    "unique_id",
    "customer_id",
    "promotion_id",
    "earn_id",
    "status",
    "failure_kind",
    "code",
    "message",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "recorded_at",
)


class Settled(NamedTuple):
    """A settled item's outcome in the ledger."""

    ok: bool
    code: str | None
    message: str | None
    run_id: str | None = None


def check_table_name(table: str) -> str:
    """Return ``table`` if it is a plain (optionally schema-qualified) identifier, else raise ``ValueError``."""
    if not _IDENTIFIER.match(table or ""):
        raise ValueError(
            f"ledger table must be an identifier like loyalty_reversal_ledger or schema.table, got {table!r}"
        )
    return table


def create_table_sql(table: str = DEFAULT_TABLE) -> str:
    """Return the portable ``CREATE TABLE IF NOT EXISTS`` statement of the ledger."""
    table = check_table_name(table)
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    vendor VARCHAR(16) NOT NULL,
    item_key VARCHAR(512) NOT NULL,
    unique_id BIGINT,
    customer_id BIGINT,
    promotion_id VARCHAR(200),
    earn_id VARCHAR(200),
    status VARCHAR(16) NOT NULL,
    failure_kind VARCHAR(16),
    code VARCHAR(64),
    message VARCHAR(1000),
    dag_id VARCHAR(250),
    run_id VARCHAR(250),
    task_id VARCHAR(250),
    map_index INTEGER,
    try_number INTEGER,
    recorded_at TIMESTAMP NOT NULL
)"""


def create_index_sql(table: str = DEFAULT_TABLE) -> str:
    """Return the look-up index statement (databases without secondary indexes, e.g. Snowflake, refuse it)."""
    table = check_table_name(table)
    return f"CREATE INDEX IF NOT EXISTS {table.rsplit('.', 1)[-1]}_lookup_idx ON {table} (vendor, item_key, status)"


def points_key_sql(unique_id_column: str) -> str:
    """SQL expression of a Xoxoday item key from the extraction's unique_id column."""
    return f"CAST({unique_id_column} AS VARCHAR)"


def earn_key_sql(customer_column: str, promotion_column: str, earn_column: str) -> str:
    """SQL expression of a Capillary item key (``customer/promotion/earn``) from the extraction's columns."""
    return f"CAST({customer_column} AS VARCHAR) || '/' || {promotion_column} || '/' || {earn_column}"


def not_done_predicate(
    vendor: str, key_sql: str, table: str = DEFAULT_TABLE, *, skip_permanent_failures: bool = True
) -> str:
    """SQL predicate for an extraction query's ``WHERE``: true for rows still to be sent.

    Excludes items the ledger records as done and, unless ``skip_permanent_failures`` is false, items
    the vendor refused for good (already redeemed, invalid id...): resending those every day would
    fail the same way. To retry a refused item after fixing it, delete its ledger rows.

    :param vendor: ``xoxoday`` or ``capillary``.
    :param key_sql: SQL expression of the item key (:func:`points_key_sql`, :func:`earn_key_sql`).
    :param table: ledger table.
    :param skip_permanent_failures: also leave out items refused permanently.
    """
    if vendor not in ("xoxoday", "capillary"):
        raise ValueError(f"vendor must be 'xoxoday' or 'capillary', got {vendor!r}")
    table = check_table_name(table)
    settled = (
        "(ledger.status = 'succeeded' OR ledger.failure_kind = 'permanent')"
        if skip_permanent_failures
        else ("ledger.status = 'succeeded'")
    )
    return (
        f"NOT EXISTS (SELECT 1 FROM {table} ledger WHERE ledger.vendor = '{vendor}' "
        f"AND {settled} AND ledger.item_key = {key_sql})"
    )


def ensure_ledger(conn_id: str, table: str = DEFAULT_TABLE) -> None:
    """Create the ledger table (and its index, where the database has them) if missing.

    Meant as a DAG's first task (``task(ensure_ledger)(conn_id)``) so that extraction queries can
    anti-join the ledger on the very first run.
    """
    ledger = ReversalLedger(conn_id, table)
    try:
        ledger.ensure_table()
    finally:
        ledger.close()


def _chunks(values: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


class ReversalLedger:
    """Append-only outcomes of reversals, over a common-sql ``DbApiHook`` connection.

    One database connection per ledger object, used from one thread (the operator's main thread).

    :param conn_id: Airflow connection whose hook is a ``DbApiHook`` (duckdb, sqlite, postgres, ...).
    :param table: table name, optionally schema-qualified; created if missing.
    """

    def __init__(self, conn_id: str, table: str = DEFAULT_TABLE) -> None:
        self.conn_id = conn_id
        self.table = check_table_name(table)
        self._hook: DbApiHook | None = None
        self._conn: Any = None

    @property
    def hook(self) -> DbApiHook:
        """The connection's SQL hook (checked to be a ``DbApiHook``)."""
        if self._hook is None:
            from airflow.providers.common.sql.hooks.sql import DbApiHook
            from airflow.sdk import BaseHook

            hook = BaseHook.get_hook(self.conn_id)
            if not isinstance(hook, DbApiHook):
                raise TypeError(
                    f"ledger connection {self.conn_id!r} gives a {type(hook).__name__}, not a SQL DbApiHook"
                )
            self._hook = hook
        return self._hook

    @property
    def placeholder(self) -> str:
        """The driver's parameter placeholder (``?`` or ``%s``)."""
        return getattr(self.hook, "placeholder", None) or "%s"

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.hook.get_conn()
            self._execute(create_table_sql(self.table))
            try:
                self._execute(create_index_sql(self.table))
            except Exception as exc:  # an index only speeds look-ups up; some warehouses have none
                log.info("No look-up index on %s (%s); look-ups still work", self.table, type(exc).__name__)
                self._rollback()
        return self._conn

    def _execute(self, statement: str) -> None:
        cursor = self._conn.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        self._conn.commit()

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except Exception:  # noqa: BLE001, S110 - autocommit drivers have nothing to roll back
            pass

    def ensure_table(self) -> None:
        """Create the table (and its index) if missing."""
        self._connection()

    def close(self) -> None:
        """Close the database connection."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def done_keys(self, vendor: str, keys: Iterable[str]) -> set[str]:
        """Return those of ``keys`` with a ``succeeded`` row for ``vendor`` (looked up in chunks)."""
        return {key for key, outcome in self.settled(vendor, keys, include_refused=False).items() if outcome.ok}

    def settled(self, vendor: str, keys: Iterable[str], *, include_refused: bool = True) -> dict[str, Settled]:
        """Return the outcome of those ``keys`` that are settled: succeeded, or (optionally) refused for good.

        Looked up in chunks of candidate keys; a success wins over any refusal of the same item.

        :param vendor: ``xoxoday`` or ``capillary``.
        :param keys: candidate item keys (an iterator is fine: consumed once).
        :param include_refused: also return items the vendor refused permanently.
        """
        conn = self._connection()
        wanted = "(status = 'succeeded' OR failure_kind = 'permanent')" if include_refused else "status = 'succeeded'"
        found: dict[str, Settled] = {}
        for chunk in _chunks(keys, LOOKUP_CHUNK):
            marks = ", ".join([self.placeholder] * len(chunk))
            cursor = conn.cursor()
            try:
                cursor.execute(
                    f"SELECT item_key, status, code, message, run_id FROM {self.table} "
                    f"WHERE vendor = {self.placeholder} AND {wanted} AND item_key IN ({marks})",
                    [vendor, *chunk],
                )
                for key, status, code, message, run_id in cursor.fetchall():
                    if status == "succeeded" or key not in found:
                        found[key] = Settled(status == "succeeded", code, message, run_id)
            finally:
                cursor.close()
        conn.commit()  # end the read transaction (PostgreSQL would keep it open otherwise)
        return found

    def record(self, vendor: str, results: Sequence[ItemResult], run: dict[str, Any] | None = None) -> None:
        """Append one row per result and commit (called as each response arrives)."""
        if not results:
            return
        conn = self._connection()
        run = run or {}
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        rows = [self._row(vendor, r, run, now) for r in results]
        row_marks = "(" + ", ".join([self.placeholder] * len(COLUMNS)) + ")"
        cursor = conn.cursor()
        try:
            for chunk in _chunks(rows, INSERT_CHUNK):
                sql = f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES " + ", ".join([row_marks] * len(chunk))
                cursor.execute(sql, [value for row in chunk for value in row])
        finally:
            cursor.close()
        conn.commit()

    @staticmethod
    def _row(vendor: str, result: ItemResult, run: dict[str, Any], now: datetime) -> tuple[Any, ...]:
        ident = result.ident
        message = (result.message or "")[:_MESSAGE_CHARS]
        return (
            vendor,
            result.key,
            ident.get("unique_id"),
            ident.get("customer_id"),
            ident.get("promotion_id"),
            ident.get("earn_id"),
            "succeeded" if result.ok else "failed",
            result.failure_kind,
            (result.code or "")[:_CODE_CHARS] or None,
            message,
            run.get("dag_id"),
            run.get("run_id"),
            run.get("task_id"),
            run.get("map_index"),
            run.get("try_number"),
            now,
        )

    def counts(self, run_id: str | None = None) -> list[tuple[str, str, str | None, int]]:
        """Return ``(vendor, status, failure_kind, rows)`` counts, optionally for one run."""
        conn = self._connection()
        where = f" WHERE run_id = {self.placeholder}" if run_id else ""
        cursor = conn.cursor()
        try:
            cursor.execute(
                f"SELECT vendor, status, failure_kind, COUNT(*) FROM {self.table}{where} "
                "GROUP BY vendor, status, failure_kind ORDER BY vendor, status, failure_kind",
                [run_id] if run_id else [],
            )
            rows = [(r[0], r[1], r[2], int(r[3])) for r in cursor.fetchall()]
        finally:
            cursor.close()
        conn.commit()
        return rows
