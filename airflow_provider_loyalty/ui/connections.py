"""Read-only connections to the ledger, one per request, per engine.

* DuckDB file: opened with ``read_only=True`` for the duration of one request. A DuckDB file has one
  writer across processes: while a reversal task writes the ledger, the page answers "busy".
* SQLite file: opened through a ``mode=ro`` URI.
* PostgreSQL: each request is one ``READ ONLY`` transaction with a statement timeout, rolled back.
* Any other common-sql ``DbApiHook``: only ``SELECT`` statements, rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_provider_loyalty.ui.settings import LedgerUnavailable

log = logging.getLogger(__name__)

#: PostgreSQL statement timeout of the page's queries, in milliseconds.
STATEMENT_TIMEOUT_MS = 15_000


@dataclass
class Session:
    """An open read-only connection and how to speak to it."""

    conn: Any
    placeholder: str
    dialect: str  # duckdb | sqlite | postgres | generic

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one ``SELECT`` with bound parameters; return its rows as tuples."""
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql, list(params))
            return [_values(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def fetch_none(self, sql: str) -> None:
        """Run one statement that returns no rows (session settings)."""
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()


def _values(row: Any) -> tuple[Any, ...]:
    """A row as a tuple, whatever cursor class the connection's extras picked."""
    if isinstance(row, dict):
        return tuple(row.values())
    return tuple(row)


def _connection_type(conn_id: str) -> tuple[str, Any]:
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception:
        log.warning("Ledger connection %r could not be loaded", conn_id, exc_info=True)
        raise LedgerUnavailable(
            f"the ledger connection {conn_id!r} is not defined (set [loyalty] ledger_conn_id or create it)"
        ) from None
    return (connection.conn_type or "").lower(), connection


def _open_duckdb(conn_id: str, path: str) -> Session:
    import duckdb

    try:
        return Session(duckdb.connect(path, read_only=True), "?", "duckdb")
    except duckdb.Error as exc:
        text = str(exc).lower()
        if "lock" in text:
            raise LedgerUnavailable(
                f"the ledger (DuckDB file of connection {conn_id!r}) is being written by a task; "
                "DuckDB allows one writer at a time: reload in a moment",
                busy=True,
            ) from None
        log.warning("Could not open the DuckDB ledger of %r read-only", conn_id, exc_info=True)
        missing = "does not exist" in text or "no such file" in text
        raise LedgerUnavailable(
            f"the DuckDB file of connection {conn_id!r} could not be opened read-only"
            + (" (it does not exist yet)" if missing else f" ({type(exc).__name__})"),
            missing=missing,
        ) from None


def _open_sqlite(conn_id: str, path: str) -> Session:
    import sqlite3

    if path.startswith("file:"):
        uri = path + ("&" if "?" in path else "?") + "mode=ro"
    else:
        uri = "file:" + quote(path) + "?mode=ro"
    try:
        return Session(sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False), "?", "sqlite")
    except sqlite3.Error as exc:
        log.warning("Could not open the SQLite ledger of %r read-only", conn_id, exc_info=True)
        raise LedgerUnavailable(
            f"the SQLite file of connection {conn_id!r} could not be opened read-only ({type(exc).__name__})"
        ) from None


def _open_hook(conn_id: str, conn_type: str) -> Session:
    from airflow_provider_loyalty.ledger import ReversalLedger

    try:
        hook = ReversalLedger(conn_id).hook
        conn = hook.get_conn()
    except TypeError as exc:
        raise LedgerUnavailable(str(exc)) from None
    except Exception as exc:
        log.warning("Could not connect to the ledger through %r", conn_id, exc_info=True)
        raise LedgerUnavailable(
            f"could not connect to the ledger through connection {conn_id!r} ({type(exc).__name__})"
        ) from None
    placeholder = getattr(hook, "placeholder", None) or "%s"
    return Session(conn, placeholder, "postgres" if conn_type in ("postgres", "postgresql") else "generic")


@contextmanager
def read_only_session(conn_id: str) -> Iterator[Session]:
    """Open the ledger connection read-only for one request; always rolled back and closed.

    :param conn_id: the ledger's Airflow connection.
    :raises LedgerUnavailable: the connection is missing, unreachable or locked by a writer.
    """
    conn_type, connection = _connection_type(conn_id)
    if conn_type == "duckdb" and connection.host and not connection.password:
        session = _open_duckdb(conn_id, connection.host)
    elif conn_type == "sqlite" and connection.host:
        session = _open_sqlite(conn_id, connection.host)
    else:
        session = _open_hook(conn_id, conn_type)
    try:
        if session.dialect == "postgres":
            # The first statements of the transaction: nothing after them can write, nothing runs long.
            try:
                session.fetch_none("SET TRANSACTION READ ONLY")
                session.fetch_none(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
            except Exception as exc:
                log.warning("Could not start a read-only transaction on %r", conn_id, exc_info=True)
                raise LedgerUnavailable(
                    f"could not start a read-only transaction on connection {conn_id!r} ({type(exc).__name__})"
                ) from None
        yield session
    finally:
        for step in ("rollback", "close"):
            try:
                getattr(session.conn, step)()
            except Exception:  # a failed rollback of a read must not hide the answer or the real error
                log.debug("ledger connection %s failed", step, exc_info=True)
