"""The ledger writer: append-only outcomes of every attempt, over any common-sql ``DbApiHook``.

One row per item outcome of every attempt, and one ``sending`` row per item just before its
request leaves. An item is *done* when a ``succeeded`` row exists for its ``(vendor, item_key)``:
task retries and tomorrow's run skip it, and extraction queries can anti-join it
(:func:`~.schema.not_done_predicate`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_loyalty._batches import batched
from airflow_provider_loyalty.items import InvalidRow, Item
from airflow_provider_loyalty.ledger.schema import (
    CODE_CHARS,
    DEFAULT_TABLE,
    MESSAGE_CHARS,
    LedgerRow,
    add_column_sql,
    check_table_name,
    columns,
    create_index_sql,
    create_table_sql,
    missing_columns,
    select_list,
)
from airflow_provider_loyalty.ledger.state import Assessment, ItemState, assess
from airflow_provider_loyalty.outcomes import Outcome, Settled, Status

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)

#: Keys per look-up query and rows per insert statement (well under every engine's parameter limit).
LOOKUP_CHUNK = 500
INSERT_CHUNK = 60
#: Attempts of one ledger operation (open, look-up, insert) before it counts as down; the pauses
#: between them ride out a DuckDB/SQLite writer's lock or a database restart.
ATTEMPTS = 4
BACKOFF_SECONDS = 0.5

T = TypeVar("T")


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


class ReversalLedger:
    """Append-only outcomes of reversals, over a common-sql ``DbApiHook`` connection.

    One database connection per ledger object, opened and used only on the ledger's own thread:
    any thread may call it (the senders record their intent right before a request leaves), and
    drivers that tie a connection to its thread (sqlite3) or are not thread-safe (DuckDB) are only
    ever touched from one. Every operation is tried :data:`ATTEMPTS` times (reconnecting, with backoff) before its error
    is raised: a DuckDB/SQLite file locked by a reader or another writer, or a database restart,
    does not fail a run.

    :param conn_id: Airflow connection whose hook is a ``DbApiHook`` (duckdb, sqlite, postgres, ...).
    :param table: table name, optionally schema-qualified; created if missing.
    :param attempts: tries per operation (default :data:`ATTEMPTS`).
    :param backoff: first pause between tries, seconds, doubled each time (default :data:`BACKOFF_SECONDS`).
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
            self._create_table()
            self._add_missing_columns()
            try:
                self._execute(create_index_sql(self.table))
            except Exception as exc:  # an index only speeds look-ups up; some warehouses have none
                log.info("No look-up index on %s (%s); look-ups still work", self.table, type(exc).__name__)
                self._rollback()
        return self._conn

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

    def done_keys(self, vendor: str, keys: Iterable[str]) -> set[str]:
        """Return those of ``keys`` with a ``succeeded`` row for ``vendor`` (looked up in chunks)."""
        settled, _ = self.lookup(vendor, keys, include_refused=False)
        return {key for key, outcome in settled.items() if outcome.ok}

    def settled(self, vendor: str, keys: Iterable[str], *, include_refused: bool = True) -> dict[str, Settled]:
        """Return the outcome of those ``keys`` that are settled (see :meth:`lookup`)."""
        return self.lookup(vendor, keys, include_refused=include_refused)[0]

    def lookup(
        self, vendor: str, keys: Iterable[str], *, include_refused: bool = True
    ) -> tuple[dict[str, Settled], dict[str, Settled]]:
        """Return what the ledger knows of ``keys``: ``(settled, in_doubt)``, by the items' state.

        *Settled*: :attr:`~.state.ItemState.SUCCEEDED` (the first success), or, with
        ``include_refused``, :attr:`~.state.ItemState.REFUSED` (the latest refusal). *In doubt*:
        :attr:`~.state.ItemState.IN_DOUBT`, with the row of the attempt that may have applied it; a
        resend of such an item that the vendor answers "already reversed" is reconciled, not
        refused. Looked up in chunks.

        :param vendor: a registered vendor (:mod:`airflow_provider_loyalty.vendors`).
        :param keys: candidate item keys (an iterator is fine: consumed once).
        :param include_refused: also settle items the vendor refused permanently.
        """
        settled: dict[str, Settled] = {}
        in_doubt: dict[str, Settled] = {}
        for key, (state, deciding) in self.states(vendor, keys).items():
            if deciding is None:
                continue
            if state is ItemState.SUCCEEDED or (state is ItemState.REFUSED and include_refused):
                settled[key] = _settled(deciding)
            elif state is ItemState.IN_DOUBT:
                in_doubt[key] = _settled(deciding)
        return settled, in_doubt

    def states(self, vendor: str, keys: Iterable[str]) -> dict[str, Assessment]:
        """The state of those ``keys`` the ledger has rows of (:func:`~.state.assess`), looked up in chunks."""
        found: dict[str, Assessment] = {}
        for chunk in batched(keys, LOOKUP_CHUNK):
            rows = self._retrying("look-up", functools.partial(self._select, vendor=vendor, chunk=chunk))
            by_key: dict[str, list[LedgerRow]] = {}
            for row in rows:
                by_key.setdefault(row.item_key, []).append(row)
            found.update({key: assess(key_rows) for key, key_rows in by_key.items()})
        return found

    def _select(self, conn: Any, vendor: str, chunk: list[str]) -> list[LedgerRow]:
        if self._missing:
            return []
        marks = ", ".join([self.placeholder] * len(chunk))
        cursor = conn.cursor()
        try:
            cursor.execute(
                f"SELECT {select_list(self._present)} FROM {self.table} "
                f"WHERE vendor = {self.placeholder} AND item_key IN ({marks})",
                [vendor, *chunk],
            )
            rows = [LedgerRow.from_db(r) for r in cursor.fetchall()]
        finally:
            cursor.close()
        conn.commit()  # end the read transaction (PostgreSQL would keep it open otherwise)
        return rows

    def record(
        self,
        vendor: str,
        outcomes: Sequence[Outcome],
        run: dict[str, Any] | None = None,
        *,
        references: Mapping[str, str] | None = None,
    ) -> None:
        """Append one row per outcome and commit (called as each answer arrives, before it is reported)."""
        self.insert(self.rows(vendor, outcomes, run, references=references))

    def record_intent(
        self,
        vendor: str,
        items: Sequence[Item],
        run: dict[str, Any] | None = None,
        *,
        references: Mapping[str, str] | None = None,
    ) -> None:
        """Append one ``sending`` row per item and commit: called before the request leaves."""
        self.insert(self.intent_rows(vendor, items, run, references=references))

    @staticmethod
    def intent_rows(
        vendor: str,
        items: Sequence[Item],
        run: dict[str, Any] | None = None,
        *,
        references: Mapping[str, str] | None = None,
    ) -> list[LedgerRow]:
        """The ``sending`` rows of ``items`` (see :meth:`record_intent`)."""
        now = _now()
        run = run or {}
        refs = references or {}
        return [
            _row(vendor, item, Status.SENDING.value, None, None, "", run, now, reference=refs.get(item.key))
            for item in items
        ]

    def record_invalid(self, vendor: str, rows: Sequence[InvalidRow], run: dict[str, Any] | None = None) -> None:
        """Append one ``invalid`` row per offending value of the skipped input rows (``on_invalid="skip"``).

        Its ``item_key`` is the value's :func:`~airflow_provider_loyalty.items.invalid_key`: the same
        junk tomorrow has the same key (and never an item's); the message names the row and the reason.
        """
        now = _now()
        run = run or {}
        first = {row.key: row for row in reversed(rows)}  # one row per value: its first occurrence
        self.insert(
            [
                _row(
                    vendor,
                    None,
                    Status.INVALID.value,
                    None,
                    "invalid",
                    f"row {row.number}: {row.shown} ({row.reason})",
                    run,
                    now,
                    key=row.key,
                    reference=row.reference,
                )
                for row in sorted(first.values(), key=lambda r: r.number)
            ]
        )

    @staticmethod
    def rows(
        vendor: str,
        outcomes: Sequence[Outcome],
        run: dict[str, Any] | None = None,
        *,
        references: Mapping[str, str] | None = None,
    ) -> list[LedgerRow]:
        """The ledger rows of ``outcomes`` (JSON-able but for ``recorded_at``); ``references``: by item key."""
        now = _now()
        run = run or {}
        refs = references or {}
        return [
            _row(
                vendor,
                o.item,
                Status.SUCCEEDED.value if o.ok else Status.FAILED.value,
                None if o.kind is None else o.kind.value,
                o.code,
                o.message,
                run,
                now,
                reference=refs.get(o.item.key),
            )
            for o in outcomes
        ]

    def insert(self, rows: Sequence[LedgerRow]) -> None:
        """Insert ready-made rows in one transaction (retried as a whole: all or none are committed)."""
        if self.read_only:
            raise RuntimeError(f"the ledger {self.table} was opened read-only (a dry run writes nothing)")
        if rows:
            self._retrying("insert", lambda conn: self._insert(conn, rows))

    def insert_unrecorded(self, rows: Sequence[LedgerRow]) -> int:
        """Insert those outcome ``rows`` whose attempt has no outcome row for their item yet; return how many.

        A replayed spool is written again after a crash between the replay and the spool's removal:
        an attempt records one outcome per item, so a row of the same item and attempt already in the
        ledger is that outcome, and is not doubled.
        """
        fresh: list[LedgerRow] = []
        by_vendor: dict[str, list[LedgerRow]] = {}
        for row in rows:
            by_vendor.setdefault(row.vendor, []).append(row)
        for vendor, vendor_rows in by_vendor.items():
            recorded: set[tuple[Any, ...]] = set()
            for chunk in batched([r.item_key for r in vendor_rows], LOOKUP_CHUNK):
                found = self._retrying("look-up", functools.partial(self._select, vendor=vendor, chunk=chunk))
                recorded.update((r.item_key, *r.attempt) for r in found if r.status != Status.SENDING.value)
            fresh.extend(r for r in vendor_rows if (r.item_key, *r.attempt) not in recorded)
        self.insert(fresh)
        return len(fresh)

    def _insert(self, conn: Any, rows: Sequence[LedgerRow], *, commit: bool = True) -> None:
        names = columns()
        row_marks = "(" + ", ".join([self.placeholder] * len(names)) + ")"
        cursor = conn.cursor()
        try:
            for chunk in batched(rows, INSERT_CHUNK):
                sql = f"INSERT INTO {self.table} ({', '.join(names)}) VALUES " + ", ".join([row_marks] * len(chunk))
                cursor.execute(sql, [value for row in chunk for value in row.values(names)])
        finally:
            cursor.close()
        if commit:
            conn.commit()

    def transaction(self, what: str, operation: Callable[[Any, Callable[[Sequence[LedgerRow]], None]], T]) -> T:
        """Run ``operation(connection, insert)`` as one transaction on the ledger's thread; commit after it.

        ``insert(rows)`` appends ledger rows inside the transaction. For what must commit together
        with the rows it guards (an item's claim and its intent); retried as a whole like any write.
        """
        if self.read_only:
            raise RuntimeError(f"the ledger {self.table} was opened read-only (a dry run writes nothing)")

        def run(conn: Any) -> T:
            result = operation(conn, lambda rows: self._insert(conn, rows, commit=False))
            conn.commit()
            return result

        return self._retrying(what, run)

    def counts(self, run_id: str | None = None) -> list[tuple[str, str, str | None, int]]:
        """Return ``(vendor, status, failure_kind, rows)`` counts of outcome rows, optionally for one run."""

        def query(conn: Any) -> list[tuple[str, str, str | None, int]]:
            where = f" AND run_id = {self.placeholder}" if run_id else ""
            cursor = conn.cursor()
            try:
                cursor.execute(
                    f"SELECT vendor, status, failure_kind, COUNT(*) FROM {self.table} "
                    f"WHERE status <> 'sending'{where} "
                    "GROUP BY vendor, status, failure_kind ORDER BY vendor, status, failure_kind",
                    [run_id] if run_id else [],
                )
                rows = [(vendor, status, kind, int(n)) for vendor, status, kind, n in cursor.fetchall()]
            finally:
                cursor.close()
            conn.commit()
            return rows

        return self._retrying("count", query)


_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _storable(text: str) -> str:
    """Return vendor text as every engine stores it.

    No NUL or control characters (PostgreSQL refuses NUL), no lone surrogates (not encodable as
    UTF-8): a message the ledger cannot store must not turn into "the ledger is down" for every
    later run.
    """
    return _UNSTORABLE.sub("\N{REPLACEMENT CHARACTER}", str(text))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _settled(row: LedgerRow) -> Settled:
    return Settled(row.status == Status.SUCCEEDED.value, row.code, row.message, row.run_id, row.dag_id)


def _row(
    vendor: str,
    item: Item | None,
    status: str,
    kind: str | None,
    code: str | None,
    message: str,
    run: dict[str, Any],
    now: datetime,
    *,
    key: str | None = None,
    reference: str | None = None,
) -> LedgerRow:
    return LedgerRow(
        vendor=vendor,
        item_key=(item.key if item is not None else key or "")[:512],
        ids=item._asdict() if item is not None else {},  # an item's fields are its identity columns
        status=status,
        failure_kind=kind,
        code=_storable(code or "")[:CODE_CHARS] or None,
        message=_storable(message or "")[:MESSAGE_CHARS],
        dag_id=run.get("dag_id"),
        run_id=run.get("run_id"),
        task_id=run.get("task_id"),
        map_index=run.get("map_index"),
        try_number=run.get("try_number"),
        recorded_at=now,
        reference=reference,
        approved_by_id=run.get("approved_by_id"),
        approved_by_name=run.get("approved_by_name"),
        approved_at=run.get("approved_at"),
        approval_digest=run.get("approval_digest"),
        approval_planned=run.get("approval_planned"),
    )
