"""The ledger writer: append-only outcomes of every attempt, over any common-sql ``DbApiHook``.

One row per item outcome of every attempt, and one ``sending`` row per item just before its
request leaves. An item is *done* when a ``succeeded`` row exists for its ``(vendor, item_key)``:
task retries and tomorrow's run skip it, and extraction queries can anti-join it
(:func:`~.schema.not_done_predicate`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow_provider_loyalty._batches import batched
from airflow_provider_loyalty.items import InvalidRow, Item
from airflow_provider_loyalty.ledger._connection import LedgerConnection, T
from airflow_provider_loyalty.ledger.schema import (
    CODE_CHARS,
    DEFAULT_TABLE,
    MESSAGE_CHARS,
    LedgerRow,
    columns,
    select_list,
)
from airflow_provider_loyalty.ledger.state import Assessment, ItemState, assess
from airflow_provider_loyalty.outcomes import Outcome, Settled, Status

#: Keys per look-up query and rows per insert statement (well under every engine's parameter limit).
LOOKUP_CHUNK = 500
INSERT_CHUNK = 60


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


class ReversalLedger(LedgerConnection):
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
