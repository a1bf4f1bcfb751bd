"""The Reversals page's SQL over the ledger table, and the checks on the filters a user types into it.

Every value a user types reaches the database as a bound parameter; the only names spliced into SQL
are the table (checked to be an identifier by the caller) and fixed column names. Every query is
limited to the rows of the DAGs a :class:`~.auth.DagScope` may read. Rows come back as the engine
gives them; :mod:`.aggregate` makes them into answers.

Every section of the page is computed over one set of items, :func:`stated_items`: the items the
filters select (search, vendor, code, reference, window), each once, with its state now from the
ledger's own SQL (:func:`~airflow_provider_loyalty.ledger.state.item_state_sql`), the day of its
first row in the window, whether it failed before it settled, and whether it was reconciled. The
outcome filter keeps the items of one state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.coordination.claims import claims_table
from airflow_provider_loyalty.items import invalid_key
from airflow_provider_loyalty.ledger.schema import LedgerRow, select_list
from airflow_provider_loyalty.ledger.state import ItemState, item_state_sql
from airflow_provider_loyalty.ui.auth import DagScope
from airflow_provider_loyalty.ui.connections import Session

#: The outcome filter: an item's state now (``ledger.state``: one rule for the writer and the page).
ITEM_STATUSES = tuple(state.value for state in ItemState)
#: States of items the next run sends again (not settled).
UNSETTLED = ("failed", "not_sent", "in_doubt")
#: ``code`` of a success that answered a resend "already reversed" (the ledger's reconciliation).
RECONCILED_CODE = "already_reversed"
#: Longest failure code accepted as a filter (the ledger keeps 64 characters).
MAX_CODE_CHARS = 64
#: Longest search text accepted (ids and run ids are far shorter).
MAX_QUERY_CHARS = 250
#: Rows of "top failures".
TOP_FAILURES = 10
#: Run ids and references match from this many characters on by prefix (shorter: exactly).
MIN_PREFIX = 3

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


def _day_sql(session: Session, column: str) -> str:
    return f"DATE({column})" if session.dialect == "sqlite" else f"CAST({column} AS DATE)"


def _time_param(session: Session, value: datetime) -> Any:
    # SQLite stores the ledger's timestamps as ISO text; compare text with text.
    return value.isoformat(" ") if session.dialect == "sqlite" else value


def probe_table(session: Session, table: str) -> None:
    """Raise whatever the engine raises if ``table`` cannot be read (missing, locked), reading no row."""
    session.fetch(f"SELECT 1 FROM {table} WHERE 1 = 0")


def _like_prefix(text: str) -> str:
    """``text`` as a ``LIKE`` prefix pattern (escaped with a backslash: its wildcards match themselves)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_suffix(text: str) -> str:
    return "%" + _like_prefix(text)[:-1]


@dataclass(frozen=True)
class Selection:
    """Which items a section covers (checked filters; see :class:`~.filters.Filters`).

    :param query: search text: an id of any kind or an item key (exact), a run id or a reference
        (exact, or by prefix from :data:`MIN_PREFIX` characters), or an invalid input value.
    :param vendor: one vendor.
    :param state: items in this state now.
    :param code: items with a row of this code.
    :param reference: items whose reference starts with this.
    :param since: items with a row recorded since then (naive UTC); ``None``: the whole ledger.
    :param has_reference: the table has the ``reference`` column (an older table has not).
    :param has_approval: the table has the approval receipt columns (search by approver, receipts).
    """

    query: str = ""
    vendor: str | None = None
    state: str | None = None
    code: str = ""
    reference: str = ""
    since: datetime | None = None
    has_reference: bool = True
    has_approval: bool = False
    #: the registered vendors' identity columns the table has (an older table lacks a newer vendor's)
    id_columns: tuple[vendors.IdColumn, ...] = ()


def _matching_keys(session: Session, table: str, scope: DagScope, sel: Selection) -> tuple[list[str], list[Any]]:
    """``(vendor, item_key) IN (...)`` sub-queries for the search, code and reference filters, with params.

    The rows that match are limited to the readable DAGs too: another DAG's run id or code never
    finds an item this user may see through its own DAG's rows.
    """
    p = session.placeholder
    conditions: list[str] = []
    params: list[Any] = []
    if sel.query:
        q = sel.query
        text = [c.name for c in sel.id_columns if not c.numeric]
        matches = [f"m.item_key = {p}", *(f"m.{c} = {p}" for c in text), f"m.run_id = {p}"]
        params += [q] * len(matches)
        if sel.has_reference:
            matches.append(f"m.reference = {p}")
            params.append(q)
        if sel.has_approval:  # the items an approver approved (name or id)
            matches += [f"m.approved_by_name = {p}", f"m.approved_by_id = {p}"]
            params += [q, q]
        if len(q) >= MIN_PREFIX:
            matches.append(f"m.run_id LIKE {p} ESCAPE '\\'")
            params.append(_like_prefix(q))
            if sel.has_reference:
                matches.append(f"m.reference LIKE {p} ESCAPE '\\'")
                params.append(_like_prefix(q))
        # an invalid input row is keyed by its value (items.invalid_key); rows of earlier releases end
        # with the value as the input showed it (invalid:row 7:'abc')
        matches.append(
            f"(m.status = 'invalid' AND (m.item_key = {p} OR m.item_key LIKE {p} ESCAPE '\\' "
            f"OR m.item_key LIKE {p} ESCAPE '\\'))"
        )
        params += [invalid_key(q), _like_suffix(":" + q), _like_suffix(":" + repr(q))]
        if _DIGITS.fullmatch(q) and int(q) <= _BIGINT_MAX:
            numbers = [c.name for c in sel.id_columns if c.numeric]
            matches += [f"m.{c} = {p}" for c in numbers]
            params += [int(q)] * len(numbers)
        conditions.append("(" + " OR ".join(matches) + ")")
    if sel.code:
        conditions.append(f"m.code = {p}")
        params.append(sel.code)
    if sel.reference:
        if not sel.has_reference:
            conditions.append("1 = 0")
        else:
            conditions.append(f"m.reference LIKE {p} ESCAPE '\\'")
            params.append(_like_prefix(sel.reference))
    if not conditions:
        return [], []
    readable = _Where(p).dags(scope, "m.dag_id")
    conditions += readable.conditions
    params += readable.params
    return [
        f"(l.vendor, l.item_key) IN (SELECT m.vendor, m.item_key FROM {table} m WHERE {' AND '.join(conditions)})"
    ], params


def stated_items(session: Session, table: str, scope: DagScope, sel: Selection) -> tuple[str, list[Any]]:
    """SQL (and its parameters) of the selected items, one row each.

    Columns: ``vendor, item_key, first_at, last_at, retried, reconciled, state`` — the item's first
    and last row in the window, whether a row failed without settling it (transient, the request
    refused, not sent), whether a success was a reconciliation, and its state now (from all its rows).
    """
    where = _Where(session.placeholder)
    if sel.since is not None:
        where.add("l.recorded_at >= {p}", _time_param(session, sel.since))
    if sel.vendor:
        where.add("l.vendor = {p}", sel.vendor)
    where.dags(scope, "l.dag_id")
    keys, key_params = _matching_keys(session, table, scope, sel)
    for condition in keys:
        where.conditions.append(condition)
    params = [*where.params, *key_params]
    grouped = (
        "SELECT l.vendor, l.item_key, MIN(l.recorded_at) AS first_at, MAX(l.recorded_at) AS last_at, "
        "MAX(CASE WHEN l.status = 'failed' AND (l.failure_kind IS NULL OR l.failure_kind <> 'permanent') "
        "THEN 1 ELSE 0 END) AS retried, "
        f"MAX(CASE WHEN l.status = 'succeeded' AND l.code = '{RECONCILED_CODE}' THEN 1 ELSE 0 END) AS reconciled "
        f"FROM {table} l{where.sql()} GROUP BY l.vendor, l.item_key"
    )
    stated = f"SELECT i.*, {item_state_sql('i', table)} AS state FROM ({grouped}) i"
    if sel.state:
        return f"SELECT * FROM ({stated}) s WHERE s.state = {session.placeholder}", [*params, sel.state]
    return f"SELECT * FROM ({stated}) s", params


class SummaryRows(NamedTuple):
    """The rows a summary is made of (every one over the same :func:`stated_items`)."""

    #: ``(day of first row, vendor, state, retried, reconciled, items)``.
    daily: list[tuple[Any, ...]]
    #: ``(vendor, code, failure_kind, outcomes, items, messages, example, last_seen, unsettled)``, most outcomes first.
    failures: list[tuple[Any, ...]]
    #: ``(dag_id, run_id, vendor, state, items, first, last)``: the items each run recorded, by their state now.
    runs: list[tuple[Any, ...]]
    #: ``(dag_id, run_id, task_id)`` of the runs' rows.
    tasks: list[tuple[Any, ...]]
    #: ``(dag_id, run_id, vendor, approved_by_id, approved_by_name, approved_at, digest, planned, sent,
    #: not_approved)`` of the runs in the window that wrote under an approval receipt.
    approvals: list[tuple[Any, ...]] = []


NO_SUMMARY_ROWS = SummaryRows([], [], [], [])
#: The receipt columns (an older table has none: the page never alters it, and shows no receipt).
APPROVAL_COLUMNS = ("approved_by_id", "approved_by_name", "approved_at", "approval_digest", "approval_planned")


def summary_rows(session: Session, table: str, scope: DagScope, sel: Selection) -> SummaryRows:
    """The summary's rows over the selected items (``sel.since``: the window)."""
    items, params = stated_items(session, table, scope, sel)
    day = _day_sql(session, "s.first_at")
    daily_rows = session.fetch(
        f"SELECT {day}, s.vendor, s.state, s.retried, s.reconciled, COUNT(*) FROM ({items}) s "
        f"GROUP BY {day}, s.vendor, s.state, s.retried, s.reconciled",
        params,
    )
    rows = _Where(session.placeholder)
    if sel.since is not None:
        rows.add("l.recorded_at >= {p}", _time_param(session, sel.since))
    rows.dags(scope, "l.dag_id")
    joined = f"FROM {table} l JOIN ({items}) s ON s.vendor = l.vendor AND s.item_key = l.item_key"
    failed = _Where(session.placeholder).add("l.status IN ('failed', 'invalid')")
    if sel.code:
        failed.add("l.code = {p}", sel.code)
    unsettled = ", ".join(f"'{state}'" for state in UNSETTLED)
    failure_rows = session.fetch(
        "SELECT l.vendor, l.code, l.failure_kind, COUNT(*) AS outcomes, COUNT(DISTINCT l.item_key), "
        "COUNT(DISTINCT l.message), MAX(l.message), MAX(l.recorded_at), "
        f"COUNT(DISTINCT CASE WHEN s.state IN ({unsettled}) THEN l.item_key END) "
        f"{joined}{rows.sql()}{failed.sql(' AND ' if rows.conditions else ' WHERE ')} "
        f"GROUP BY l.vendor, l.code, l.failure_kind ORDER BY outcomes DESC, l.vendor, l.code LIMIT {int(TOP_FAILURES)}",
        [*params, *rows.params, *failed.params],
    )
    run_rows = session.fetch(
        "SELECT l.dag_id, l.run_id, l.vendor, s.state, COUNT(DISTINCT l.item_key), MIN(l.recorded_at), "
        f"MAX(l.recorded_at) {joined}{rows.sql()} GROUP BY l.dag_id, l.run_id, l.vendor, s.state",
        [*params, *rows.params],
    )
    task_rows = session.fetch(
        f"SELECT DISTINCT l.dag_id, l.run_id, l.task_id {joined}{rows.sql()}",
        [*params, *rows.params],
    )
    approval_rows: list[tuple[Any, ...]] = []
    if sel.has_approval:
        receipt = _Where(session.placeholder).add("l.approval_digest IS NOT NULL")
        approval_rows = session.fetch(
            "SELECT l.dag_id, l.run_id, l.vendor, MAX(l.approved_by_id), MAX(l.approved_by_name), "
            "MAX(l.approved_at), MAX(l.approval_digest), MAX(l.approval_planned), "
            "COUNT(DISTINCT CASE WHEN l.status = 'sending' THEN l.item_key END), "
            "COUNT(DISTINCT CASE WHEN l.code = 'not_approved' THEN l.item_key END) "
            f"{joined}{rows.sql()}{receipt.sql(' AND ' if rows.conditions else ' WHERE ')} "
            "GROUP BY l.dag_id, l.run_id, l.vendor",
            [*params, *rows.params],
        )
    return SummaryRows(daily_rows, failure_rows, run_rows, task_rows, approval_rows)


def matching_items(
    session: Session, table: str, scope: DagScope, sel: Selection, *, limit: int, offset: int
) -> tuple[int, list[tuple[str, str, str]]]:
    """How many items are selected, and ``(vendor, item_key, state)`` of one page of them, newest activity first."""
    items, params = stated_items(session, table, scope, sel)
    total = int(session.fetch(f"SELECT COUNT(*) FROM ({items}) s", params)[0][0])
    p = session.placeholder
    keys = session.fetch(
        f"SELECT s.vendor, s.item_key, s.state FROM ({items}) s "
        f"ORDER BY s.last_at DESC, s.vendor, s.item_key LIMIT {p} OFFSET {p}",
        [*params, int(limit), int(offset)],
    )
    return total, [(str(v), str(k), str(state)) for v, k, state in keys]


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
