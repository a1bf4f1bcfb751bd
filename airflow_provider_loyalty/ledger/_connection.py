"""The ledger's database connection: opened on its own thread, retried, the table made and migrated.

:class:`LedgerConnection` is what :class:`~.store.ReversalLedger` writes and reads through. It
knows nothing of outcomes: it opens the connection (creating the table, its index and any column
an older release did not have), runs an operation on the one thread that owns the connection, and
reconnects with backoff when the operation fails.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_loyalty.ledger.schema import (
    DEFAULT_TABLE,
    add_column_sql,
    check_table_name,
    columns,
    create_index_sql,
    create_table_sql,
    missing_columns,
)

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)

#: Attempts of one ledger operation (open, look-up, insert) before it counts as down; the pauses
#: between them ride out a DuckDB/SQLite writer's lock or a database restart.
ATTEMPTS = 4
BACKOFF_SECONDS = 0.5
#: On PostgreSQL, the server ends a session of ours left idle inside a transaction this long. The
#: ledger commits every operation at once, so only a process frozen mid-transaction (a paused VM, a
#: SIGSTOPped worker) gets there; ending its session releases its row locks, which would otherwise
#: keep every other task from claiming its items (or taking them over once its lease, 60 s by
#: default, ran out) until the frozen process died. Its work rolls back: nothing it had not
#: committed was sent.
IDLE_IN_TRANSACTION_SECONDS = 30

T = TypeVar("T")


def table_columns(conn: Any, table: str) -> list[str]:
    """The column names of ``table`` as the database resolves it (schema, search path), in lower case.

    Read from the DB-API cursor's description of a query that returns no row: every driver fills
    it, and it names exactly the table the writer inserts into.
    """
    cursor = conn.cursor()
    try:
        cursor.execute(f"SELECT * FROM {check_table_name(table)} WHERE 1 = 0")
        names = [str(d[0]).lower() for d in cursor.description or ()]
        cursor.fetchall()
    finally:
        cursor.close()
    return names


class LedgerConnection:
    """One database connection to the ledger table, used only on the ledger's own thread.

    Any thread may call :meth:`_retrying`; drivers that tie a connection to its thread (sqlite3) or
    are not thread-safe (DuckDB) are only ever touched from that one. See :class:`~.store.ReversalLedger`
    for the parameters.
    """

    def __init__(
        self,
        conn_id: str,
        table: str = DEFAULT_TABLE,
        *,
        attempts: int | None = None,
        backoff: float | None = None,
        read_only: bool = False,
    ) -> None:
        self.conn_id = conn_id
        #: look up only (a dry run): no table or database file is created, nothing is written
        self.read_only = read_only
        self._missing = False
        #: the table's columns as found when it was opened (a read-only open never adds any)
        self._present: list[str] | None = None
        self.table = check_table_name(table)
        self.attempts = max(1, ATTEMPTS if attempts is None else attempts)
        self.backoff = BACKOFF_SECONDS if backoff is None else backoff
        self._hook: DbApiHook | None = None
        self._conn: Any = None
        self._thread: ThreadPoolExecutor | None = None

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
        if self._conn is None and self.read_only:
            return self._read_only_connection()
        if self._conn is None:
            self._conn = self.hook.get_conn()
            self._bound_idle_transactions()
            self._create_table()
            self._add_missing_columns()
            try:
                self._execute(create_index_sql(self.table))
            except Exception as exc:  # an index only speeds look-ups up; some warehouses have none
                log.info("No look-up index on %s (%s); look-ups still work", self.table, type(exc).__name__)
                self._rollback()
        return self._conn

    def _bound_idle_transactions(self) -> None:
        """On PostgreSQL, have the server end this session when it idles in a transaction (see above)."""
        if str(self.hook.connection.conn_type or "").lower() not in ("postgres", "postgresql"):
            return
        try:
            self._execute(f"SET idle_in_transaction_session_timeout = '{int(IDLE_IN_TRANSACTION_SECONDS)}s'")
        except Exception as exc:  # a server speaking PostgreSQL's protocol without the setting
            log.info(
                "Ledger session on %r keeps the server's idle-transaction setting (%s)",
                self.conn_id,
                type(exc).__name__,
            )
            self._rollback()

    def _create_table(self) -> None:
        """Create the table if it is missing; use it as it is when the role may not create tables.

        PostgreSQL refuses even ``CREATE TABLE IF NOT EXISTS`` of an existing table to a role without
        CREATE rights on the schema (a table a DBA provisioned, DML granted): forgiven when the table
        is there, raised naming the statement to run by hand when it is not.
        """
        statement = create_table_sql(self.table)
        try:
            self._execute(statement)
        except Exception as exc:
            self._rollback()
            try:
                self._columns()
            except Exception:
                self._rollback()
                raise RuntimeError(
                    f"the ledger table {self.table} is missing and could not be created ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); run: {statement}"
                ) from exc

    def _add_missing_columns(self) -> None:
        """Give a table made by an earlier release the columns it lacks (the ledger's migration path).

        Another task may be adding the same column at the same moment: a failed ``ALTER`` is
        forgiven when the column is there afterwards, and raised (naming the statement to run by
        hand, e.g. for a role without ``ALTER`` rights) when it is not.
        """
        present = self._columns()
        for column in missing_columns(present):
            statement = add_column_sql(self.table, column)
            try:
                self._execute(statement)
            except Exception as exc:
                self._rollback()
                present = self._columns()
                if column not in present:
                    raise RuntimeError(
                        f"the ledger table {self.table} lacks the column {column} and it could not be added "
                        f"({type(exc).__name__}: {str(exc)[:200]}); run: {statement}"
                    ) from exc
            else:
                log.info("Ledger table %s: added the column %s", self.table, column)
        self._present = list(columns())

    def _columns(self) -> list[str]:
        names = table_columns(self._conn, self.table)
        self._conn.commit()  # end the read transaction before an ALTER (PostgreSQL)
        return names

    def _read_only_connection(self) -> Any:
        """Open for look-ups only; a missing database file or table is an empty ledger, left uncreated."""
        conn = self.hook.connection
        path = str(conn.host or "")
        if conn.conn_type in ("sqlite", "duckdb") and path and path != ":memory:" and not os.path.exists(path):
            self._missing = True  # connecting would create the file
            return None
        self._conn = self.hook.get_conn()
        try:
            self._present = self._columns()
        except Exception:  # noqa: BLE001 - no such table: nothing recorded yet
            self._rollback()
            self._missing = True
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

    def _retrying(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run ``operation(connection)`` on the ledger's thread (retried there); wait for its result."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loyalty-ledger")
        return self._thread.submit(self._retry_loop, what, operation).result()

    def _retry_loop(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run ``operation(connection)``; on an error, reconnect and try again, up to ``attempts`` times."""
        for attempt in range(1, self.attempts + 1):
            try:
                return operation(self._connection())
            except Exception as exc:
                self._discard()
                if attempt == self.attempts:
                    raise
                pause = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "Ledger %s on %r failed (%s: %s); trying again in %.1f s (%d of %d)",
                    what,
                    self.conn_id,
                    type(exc).__name__,
                    str(exc)[:200],
                    pause,
                    attempt,
                    self.attempts,
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard(self) -> None:
        """Drop a connection that failed (its transaction is void); the next operation opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001, S110 - a dead connection cannot roll back
                pass
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110
                pass

    def ensure_table(self) -> None:
        """Create the table (and its index) if missing."""
        self._retrying("open", lambda conn: None)

    def close(self) -> None:
        """Close the database connection and stop the ledger's thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                thread.submit(self._close_connection).result()
            finally:
                thread.shutdown(wait=True)
        else:
            self._close_connection()

    def _close_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
