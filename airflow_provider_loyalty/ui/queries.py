"""The Reversals page's SQL over the ledger table, and the checks on the filters a user types into it.

Every value a user types reaches the database as a bound parameter; the only names spliced into SQL
are the table (checked to be an identifier by the caller) and fixed column names. Every query is
limited to the rows of the DAGs a :class:`~.auth.DagScope` may read. Rows come back as the engine
gives them; :mod:`.aggregate` makes them into answers.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, NamedTuple

from airflow_provider_loyalty.coordination.claims import claims_table
from airflow_provider_loyalty.ledger import in_doubt_condition
from airflow_provider_loyalty.ledger.schema import LedgerRow, select_list
from airflow_provider_loyalty.ui.auth import DagScope
from airflow_provider_loyalty.ui.connections import Session

#: The items filter: items with an attempt of this status, or in doubt (``ledger.state``).
ITEM_STATUSES = ("succeeded", "failed", "in_doubt")
#: ``code`` of a success that answered a resend "already reversed" (the ledger's reconciliation).
RECONCILED_CODE = "already_reversed"
#: Longest failure code accepted as a filter (the ledger keeps 64 characters).
MAX_CODE_CHARS = 64
#: Longest search text accepted (ids and run ids are far shorter).
MAX_QUERY_CHARS = 250
#: Rows of "top failures".
TOP_FAILURES = 10

_BIGINT_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_query(text: str) -> str:
    """Return the search text stripped; raise ``ValueError`` if it is too long or has control characters."""
    text = text.strip()
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"search text longer than {MAX_QUERY_CHARS} characters")
    if _CONTROL.search(text):
        raise ValueError("search text contains control characters")
    return text


def check_code(text: str) -> str:
    """Return a failure-code filter stripped; raise ``ValueError`` if it is too long or has control characters."""
    text = text.strip()
    if len(text) > MAX_CODE_CHARS:
        raise ValueError(f"code longer than {MAX_CODE_CHARS} characters")
    if _CONTROL.search(text):
        raise ValueError("code contains control characters")
    return text


class _Where:
    """``WHERE`` conditions with their bound parameters, in order."""

    def __init__(self, placeholder: str) -> None:
        self.p = placeholder
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> _Where:
        """Add a condition written with ``{p}`` for each parameter."""
        self.conditions.append(condition.format(p=self.p))
        self.params.extend(params)
        return self

    def dags(self, scope: DagScope, column: str = "dag_id") -> _Where:
        """Only rows of DAGs the user may read."""
        if scope.every_dag:
            return self
        if not scope.dag_ids:
            return self.add("1 = 0")
        ids = sorted(scope.dag_ids)
        return self.add(f"{column} IN ({', '.join(['{p}'] * len(ids))})", *ids)

    def sql(self, keyword: str = " WHERE ") -> str:
        return keyword + " AND ".join(self.conditions) if self.conditions else ""


def _day_sql(session: Session) -> str:
    return "DATE(recorded_at)" if session.dialect == "sqlite" else "CAST(recorded_at AS DATE)"


def _time_param(session: Session, value: datetime) -> Any:
    # SQLite stores the ledger's timestamps as ISO text; compare text with text.
    return value.isoformat(" ") if session.dialect == "sqlite" else value


def probe_table(session: Session, table: str) -> None:
    """Raise whatever the engine raises if ``table`` cannot be read (missing, locked), reading no row."""
    session.fetch(f"SELECT 1 FROM {table} WHERE 1 = 0")


class SummaryRows(NamedTuple):
    """The rows a summary is made of."""

    #: ``(day, vendor, status, failure_kind, reconciled, n)`` of the outcomes in the window.
    daily: list[tuple[Any, ...]]
    #: ``(vendor, code, failure_kind, outcomes, items, messages, example, last_seen)``, most outcomes first.
    failures: list[tuple[Any, ...]]
    #: ``(dag_id, run_id, vendor, status, failure_kind, reconciled, n, first, last)`` of the outcomes in the window.
    runs: list[tuple[Any, ...]]
    #: ``(vendor, dag_id, run_id, items, first, last)`` of the items in doubt now, whenever their intent.
    doubt: list[tuple[Any, ...]]
    #: ``(dag_id, run_id, vendor, approved_by_id, approved_by_name, approved_at, digest, planned, sent,
    #: not_approved)`` of the runs in the window that wrote under an approval receipt.
    approvals: list[tuple[Any, ...]] = []


NO_SUMMARY_ROWS = SummaryRows([], [], [], [])
#: The receipt columns (an older table has none: the page never alters it, and shows no receipt).
APPROVAL_COLUMNS = ("approved_by_id", "approved_by_name", "approved_at", "approval_digest", "approval_planned")


def summary_rows(session: Session, table: str, scope: DagScope, since: datetime, vendor: str | None) -> SummaryRows:
    """The summary's rows since ``since`` (naive UTC); intent rows (``sending``) only count as in doubt."""
    where = _Where(session.placeholder).add("recorded_at >= {p}", _time_param(session, since))
    if vendor:
        where.add("vendor = {p}", vendor)
    where.dags(scope)
    outcomes = where.sql() + " AND status <> 'sending'"
    day = _day_sql(session)
    reconciled = f"CASE WHEN status = 'succeeded' AND code = '{RECONCILED_CODE}' THEN 1 ELSE 0 END"
    daily_rows = session.fetch(
        f"SELECT {day}, vendor, status, failure_kind, {reconciled}, COUNT(*) FROM {table}{outcomes} "
        f"GROUP BY {day}, vendor, status, failure_kind, {reconciled}",
        where.params,
    )
    failure_rows = session.fetch(
        "SELECT vendor, code, failure_kind, COUNT(*) AS outcomes, COUNT(DISTINCT item_key), "
        f"COUNT(DISTINCT message), MAX(message), MAX(recorded_at) FROM {table}{where.sql()} AND status = 'failed' "
        f"GROUP BY vendor, code, failure_kind ORDER BY outcomes DESC, vendor, code LIMIT {int(TOP_FAILURES)}",
        where.params,
    )
    run_rows = session.fetch(
        f"SELECT dag_id, run_id, vendor, status, failure_kind, {reconciled}, COUNT(*), MIN(recorded_at), "
        f"MAX(recorded_at) FROM {table}{outcomes} GROUP BY dag_id, run_id, vendor, status, failure_kind, {reconciled}",
        where.params,
    )
    doubt = _Where(session.placeholder).add(in_doubt_condition("l", table))
    if vendor:
        doubt.add("l.vendor = {p}", vendor)
    doubt.dags(scope, "l.dag_id")
    doubt_rows = session.fetch(
        "SELECT l.vendor, l.dag_id, l.run_id, COUNT(DISTINCT l.item_key), MIN(l.recorded_at), MAX(l.recorded_at) "
        f"FROM {table} l{doubt.sql()} GROUP BY l.vendor, l.dag_id, l.run_id",
        doubt.params,
    )
    approval_rows: list[tuple[Any, ...]] = []
    if set(APPROVAL_COLUMNS) <= set(table_columns(session, table)):
        approval_rows = session.fetch(
            "SELECT dag_id, run_id, vendor, MAX(approved_by_id), MAX(approved_by_name), MAX(approved_at), "
            "MAX(approval_digest), MAX(approval_planned), "
            "COUNT(DISTINCT CASE WHEN status = 'sending' THEN item_key END), "
            "COUNT(DISTINCT CASE WHEN code = 'not_approved' THEN item_key END) "
            f"FROM {table}{where.sql()} AND approval_digest IS NOT NULL GROUP BY dag_id, run_id, vendor",
            where.params,
        )
    return SummaryRows(daily_rows, failure_rows, run_rows, doubt_rows, approval_rows)


def matching_items(
    session: Session,
    table: str,
    scope: DagScope,
    *,
    query: str,
    vendor: str | None,
    status: str | None,
    code: str,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[int, list[tuple[str, str]]]:
    """How many items match, and the ``(vendor, item_key)`` of one page of them, newest activity first.

    :param query: exact match on item key, earn, promotion or run id, the approver's name or id (a
        ledger with the receipt columns), and on unique or customer id when it is a number that fits
        a BIGINT; empty: no condition.
    :param since: only rows recorded since then (naive UTC); ``None``: the whole ledger.
    """
    where = _items_where(session, table, scope, query, vendor, status, code, since)
    total = int(
        session.fetch(
            f"SELECT COUNT(*) FROM (SELECT l.vendor, l.item_key FROM {table} l{where.sql()} "
            "GROUP BY l.vendor, l.item_key) matched",
            where.params,
        )[0][0]
    )
    p = session.placeholder
    keys = session.fetch(
        f"SELECT l.vendor, l.item_key, MAX(l.recorded_at) AS last_at FROM {table} l{where.sql()} "
        f"GROUP BY l.vendor, l.item_key ORDER BY last_at DESC, l.vendor, l.item_key LIMIT {p} OFFSET {p}",
        [*where.params, int(limit), int(offset)],
    )
    return total, [(str(v), str(k)) for v, k, _ in keys]


def _items_where(
    session: Session,
    table: str,
    scope: DagScope,
    query: str,
    vendor: str | None,
    status: str | None,
    code: str,
    since: datetime | None,
) -> _Where:
    where = _Where(session.placeholder)
    if query:
        matches = ["l.item_key = {p}", "l.earn_id = {p}", "l.promotion_id = {p}", "l.run_id = {p}"]
        if set(APPROVAL_COLUMNS) <= set(table_columns(session, table)):
            matches += ["l.approved_by_name = {p}", "l.approved_by_id = {p}"]
        params: list[Any] = [query] * len(matches)
        if _DIGITS.fullmatch(query) and int(query) <= _BIGINT_MAX:
            matches += ["l.unique_id = {p}", "l.customer_id = {p}"]
            params += [int(query), int(query)]
        where.add("(" + " OR ".join(matches) + ")", *params)
    if since is not None:
        where.add("l.recorded_at >= {p}", _time_param(session, since))
    if vendor:
        where.add("l.vendor = {p}", vendor)
    if status == "in_doubt":
        where.add(in_doubt_condition("l", table))
    elif status:
        where.add("l.status = {p}", status)
    if code:
        where.add("l.code = {p}", code)
    return where.dags(scope, "l.dag_id")


def table_columns(session: Session, table: str) -> list[str]:
    """The ledger table's column names (lower case), from the cursor's description of an empty ``SELECT``."""
    cursor = session.conn.cursor()
    try:
        cursor.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        names = [str(d[0]).lower() for d in cursor.description or ()]
        cursor.fetchall()
    finally:
        cursor.close()
    return names


def item_rows(
    session: Session, table: str, scope: DagScope, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], list[LedgerRow]]:
    """Every row of these ``(vendor, item_key)`` items, newest first per item.

    A table written by an earlier release (the page never alters it) reads ``NULL`` for the columns it lacks.
    """
    by_vendor: dict[str, list[str]] = {}
    for vendor, key in keys:
        by_vendor.setdefault(vendor, []).append(key)
    rows: dict[tuple[str, str], list[LedgerRow]] = {}
    columns = select_list(table_columns(session, table)) if by_vendor else ""
    for vendor, item_keys in by_vendor.items():
        where = _Where(session.placeholder).add("vendor = {p}", vendor)
        where.add(f"item_key IN ({', '.join(['{p}'] * len(item_keys))})", *item_keys).dags(scope)
        for values in session.fetch(
            f"SELECT {columns} FROM {table}{where.sql()} ORDER BY recorded_at DESC",
            where.params,
        ):
            row = LedgerRow.from_db(values)
            rows.setdefault((str(row.vendor), str(row.item_key)), []).append(row)
    return rows


def in_doubt_keys(session: Session, table: str, scope: DagScope, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of these ``(vendor, item_key)`` items the in-doubt filter lists: the same condition.

    An item's state is decided by all its rows (``ledger.state``), whichever DAG wrote them, not by
    the rows this user may read: another DAG's later success or refusal settles a doubt. Listed
    when the attempt that may have applied it is readable, as in :func:`matching_items`.
    """
    by_vendor: dict[str, list[str]] = {}
    for vendor, key in keys:
        by_vendor.setdefault(vendor, []).append(key)
    found: set[tuple[str, str]] = set()
    for vendor, item_keys in by_vendor.items():
        where = _Where(session.placeholder).add("l.vendor = {p}", vendor)
        where.add(f"l.item_key IN ({', '.join(['{p}'] * len(item_keys))})", *item_keys)
        where.add(in_doubt_condition("l", table)).dags(scope, "l.dag_id")
        rows = session.fetch(f"SELECT DISTINCT l.vendor, l.item_key FROM {table} l{where.sql()}", where.params)
        found.update((str(v), str(k)) for v, k in rows)
    return found


#: Claimed items listed on the page.
CLAIMED_LISTED = 100


def _has_table(session: Session, table: str) -> bool:
    """Whether ``table`` exists, asked without an error (an error would end a PostgreSQL transaction)."""
    schema, _, name = table.rpartition(".")
    if session.dialect == "postgres":
        return bool(session.fetch("SELECT to_regclass(%s) IS NOT NULL", [table])[0][0])
    if session.dialect == "sqlite":
        master = f"{schema}.sqlite_master" if schema else "sqlite_master"
        return bool(session.fetch(f"SELECT COUNT(*) FROM {master} WHERE type = 'table' AND name = ?", [name])[0][0])
    if session.dialect == "duckdb":
        where = " AND table_schema = ?" if schema else ""
        found = session.fetch(
            f"SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?{where}",
            [name, *([schema] if schema else [])],
        )
        return bool(found[0][0])
    try:
        probe_table(session, table)
    except Exception:  # noqa: BLE001 - another engine: no claim table yet
        return False
    return True


def claimed_rows(
    session: Session, ledger_table: str, scope: DagScope, now: datetime, vendor: str | None
) -> list[tuple[Any, ...]]:
    """The live claims now (``now`` naive UTC), oldest first; none without a claim table.

    Columns: ``vendor, item_key, owner, dag_id, run_id, task_id, map_index, try_number, host,
    claimed_at, lease_expiry, epoch`` (times in UTC seconds).
    """
    table = claims_table(ledger_table)
    if not _has_table(session, table):
        return []
    where = _Where(session.placeholder).add(
        "lease_expiry IS NOT NULL AND lease_expiry >= {p}", now.replace(tzinfo=timezone.utc).timestamp()
    )
    if vendor:
        where.add("vendor = {p}", vendor)
    where.dags(scope)
    return session.fetch(
        "SELECT vendor, item_key, owner, dag_id, run_id, task_id, map_index, try_number, host, claimed_at, "
        f"lease_expiry, epoch FROM {table}{where.sql()} ORDER BY claimed_at, vendor, item_key LIMIT {int(CLAIMED_LISTED)}",
        where.params,
    )
