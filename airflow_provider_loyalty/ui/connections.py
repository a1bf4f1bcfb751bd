"""Read-only connections to the ledger, one per request, per engine.

* DuckDB file: opened with ``read_only=True`` for one request's queries and closed at once. A DuckDB
  file has one writer across processes, and a reader's shared lock keeps a writer out too, so the
  page gives way to writers: reads of one file are one at a time in the api-server, a read leaves
  the file free for at least :data:`DUCKDB_IDLE_GAP_S` (and twice as long as the read before it
  held it) before the next one opens it, and a read that
  finds a writer's lock backs off and tries again (jittered, doubling) for at most
  :data:`DUCKDB_BUSY_WAIT_S`, then answers "busy" (503) rather than wait for it.
* SQLite file: opened through a ``mode=ro`` URI; a writer's lock is waited for at most
  :data:`SQLITE_BUSY_TIMEOUT_S` (SQLite's own back-off), then "busy".
* PostgreSQL: each request is one ``READ ONLY`` transaction with a statement timeout, rolled back.
* Any other common-sql ``DbApiHook``: only ``SELECT`` statements, rolled back.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow_provider_loyalty.ui.settings import LedgerUnavailable

log = logging.getLogger(__name__)

#: PostgreSQL statement timeout of the page's queries, in milliseconds.
STATEMENT_TIMEOUT_MS = 15_000
#: How long a DuckDB read waits, in all, for a writer's lock (or for the page's other reads of the file).
DUCKDB_BUSY_WAIT_S = 2.0
#: First back-off after a writer's lock (doubles, jittered, at most :data:`DUCKDB_MAX_BACKOFF_S`).
DUCKDB_FIRST_BACKOFF_S = 0.02
DUCKDB_MAX_BACKOFF_S = 0.4
#: Time a DuckDB ledger file is left free between two reads of the page (for a writer to take it), at least.
DUCKDB_IDLE_GAP_S = 0.05
#: ... and at least this many times as long as the last read held it: however long the page's reads
#: take, the file stays free most of the time, so a writer's open (which retries) gets it.
DUCKDB_IDLE_RATIO = 2.0
#: How long a SQLite read waits for a writer's lock before answering "busy".
SQLITE_BUSY_TIMEOUT_S = 1.0


@dataclass
class _FileGate:
    """Serialises the page's reads of one DuckDB file and remembers when the file was last let go."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    released_at: float = float("-inf")
    #: how long the last read held the file
    held_s: float = 0.0


_gates: dict[str, _FileGate] = {}
_gates_lock = threading.Lock()


def _gate(path: str) -> _FileGate:
    with _gates_lock:
        return _gates.setdefault(path, _FileGate())


def _busy(conn_id: str) -> LedgerUnavailable:
    return LedgerUnavailable(
        f"the ledger (file of connection {conn_id!r}) is being written by a task; "
        "the page gives way to writers: reload in a moment",
        busy=True,
    )


def is_lock_error(exc: BaseException) -> bool:
    """Whether a DuckDB/SQLite error says another process holds the file's lock."""
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set lock" in text or "is locked" in text)


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


def _open_duckdb(conn_id: str, path: str, deadline: float) -> Session:
    """Open the file read-only; on a writer's lock back off and retry until ``deadline``, then "busy"."""
    import duckdb

    backoff = DUCKDB_FIRST_BACKOFF_S
    while True:
        try:
            return Session(duckdb.connect(path, read_only=True), "?", "duckdb")
        except duckdb.Error as exc:
            if is_lock_error(exc):
                pause = backoff * (0.5 + random.random())
                if time.monotonic() + pause > deadline:
                    raise _busy(conn_id) from None
                time.sleep(pause)
                backoff = min(backoff * 2, DUCKDB_MAX_BACKOFF_S)
                continue
            text = str(exc).lower()
            log.warning("Could not open the DuckDB ledger of %r read-only", conn_id, exc_info=True)
            missing = "does not exist" in text or "no such file" in text
            raise LedgerUnavailable(
                f"the DuckDB file of connection {conn_id!r} could not be opened read-only"
                + (" (it does not exist yet)" if missing else f" ({type(exc).__name__})"),
                missing=missing,
            ) from None


@contextmanager
def _duckdb_turn(conn_id: str, path: str) -> Iterator[float]:
    """The page's turn at a DuckDB file: one read at a time, after the file was left free a while.

    Yields the deadline of the read's open attempts; raises "busy" if the turn does not come in time.
    """
    deadline = time.monotonic() + DUCKDB_BUSY_WAIT_S
    gate = _gate(path)
    if not gate.lock.acquire(timeout=DUCKDB_BUSY_WAIT_S):
        raise _busy(conn_id)
    taken = time.monotonic()
    try:
        idle = gate.released_at + max(DUCKDB_IDLE_GAP_S, DUCKDB_IDLE_RATIO * gate.held_s) - time.monotonic()
        if idle > 0:
            time.sleep(min(idle, max(deadline - time.monotonic(), 0.0)))
        taken = time.monotonic()
        yield deadline
    finally:
        now = time.monotonic()
        gate.held_s = now - taken
        gate.released_at = now
        gate.lock.release()


def _open_sqlite(conn_id: str, path: str) -> Session:
    import sqlite3

    if path.startswith("file:"):
        uri = path + ("&" if "?" in path else "?") + "mode=ro"
    else:
        uri = "file:" + quote(path) + "?mode=ro"
    try:
        return Session(
            sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False), "?", "sqlite"
        )
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

    Keep the block short (queries only): a DuckDB file is held, and writers kept out, until it ends.

    :param conn_id: the ledger's Airflow connection.
    :raises LedgerUnavailable: the connection is missing or unreachable, or a writer holds the file
        (``busy``) beyond the back-off.
    """
    conn_type, connection = _connection_type(conn_id)
    if conn_type == "duckdb" and connection.host and not connection.password:
        with _duckdb_turn(conn_id, connection.host) as deadline:
            with _opened(conn_id, _open_duckdb(conn_id, connection.host, deadline)) as session:
                yield session
        return
    if conn_type == "sqlite" and connection.host:
        session = _open_sqlite(conn_id, connection.host)
    else:
        session = _open_hook(conn_id, conn_type)
    with _opened(conn_id, session) as opened:
        yield opened


@contextmanager
def _opened(conn_id: str, session: Session) -> Iterator[Session]:
    try:
        if session.dialect == "postgres":
            # The first statements of the transaction: nothing after them can write, nothing runs long.
            try:
                session.fetch_none("SET TRANSACTION READ ONLY")
                session.fetch_none(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
                # The item state's sub-queries make the planner's cost estimate huge, so JIT would
                # compile and optimize each statement: seconds, for a statement that runs in less
                session.fetch_none("SET LOCAL jit = off")
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
