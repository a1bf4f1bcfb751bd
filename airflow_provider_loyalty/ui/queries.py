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
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.coordination.claims import claims_table
from airflow_provider_loyalty.items import invalid_key
from airflow_provider_loyalty.ledger.schema import LedgerRow, select_list
from airflow_provider_loyalty.ledger.state import ItemState, item_state_sql, succeeded_sql
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


#: Names of the common table expressions the page's statements define (prefixed: never a user table).
_ITEMS, _PAGE, _ROWS, _STATED, _WINDOW = (
    "loyalty_page_items",
    "loyalty_page_keys",
    "loyalty_page_rows",
    "loyalty_page_stated",
    "loyalty_page_window",
)


def _materialized(session: Session) -> str:
    """``MATERIALIZED`` where the engine knows it: a CTE that several sections read is computed once."""
    if session.dialect in ("duckdb", "postgres"):
        return "MATERIALIZED "
    if session.dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 35):
        return "MATERIALIZED "
    return ""


def _selected_items(session: Session, table: str, scope: DagScope, sel: Selection) -> tuple[str, list[Any]]:
    """SQL of the selected items, one row each, without their state (and its parameters).

    Columns: ``vendor, item_key, first_at, last_at, retried, reconciled, succeeded`` — the item's
    first and last row in the window, whether a row failed without settling it (transient, the
    request refused, not sent), whether a success was a reconciliation, and whether a row read was a
    success (which settles the item's state without its other rows).
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
    grouped = (
        "SELECT l.vendor, l.item_key, MIN(l.recorded_at) AS first_at, MAX(l.recorded_at) AS last_at, "
        "MAX(CASE WHEN l.status = 'failed' AND (l.failure_kind IS NULL OR l.failure_kind <> 'permanent') "
        "THEN 1 ELSE 0 END) AS retried, "
        f"MAX(CASE WHEN l.status = 'succeeded' AND l.code = '{RECONCILED_CODE}' THEN 1 ELSE 0 END) AS reconciled, "
        f"MAX(CASE WHEN {succeeded_sql('l')} THEN 1 ELSE 0 END) AS succeeded "
        f"FROM {table} l{where.sql()} GROUP BY l.vendor, l.item_key"
    )
    return grouped, [*where.params, *key_params]


def _state_of(session: Session, table: str, items: str) -> tuple[list[str], str]:
    """CTEs and the SQL expression of the state now of each item of the CTE ``items`` (aliased ``i``).

    The state reads all the item's rows (``ledger.state``: one definition), except for an item whose
    rows already read hold a success: that alone makes it ``succeeded`` (most items of a ledger),
    so only the others are computed. PostgreSQL and SQLite evaluate the state's sub-queries item by
    item through the look-up index, so they read the table itself. DuckDB turns them into joins over
    whatever table they name: there they name the rows of the other items only (one join on their
    keys), not the whole ledger.
    """
    source = table
    ctes: list[str] = []
    if session.dialect == "duckdb":
        source = _ROWS
        ctes.append(
            f"{_ROWS} AS {_materialized(session)}(SELECT l.* FROM {table} l "
            f"JOIN {items} k ON l.vendor = k.vendor AND l.item_key = k.item_key WHERE k.succeeded = 0)"
        )
    return ctes, f"CASE WHEN i.succeeded = 1 THEN '{ItemState.SUCCEEDED.value}' ELSE {item_state_sql('i', source)} END"


def stated_items(session: Session, table: str, scope: DagScope, sel: Selection) -> tuple[str, list[Any]]:
    """A ``WITH`` clause (and its parameters) whose last CTE, :data:`_STATED`, holds the selected items.

    One row each: ``vendor, item_key, first_at, last_at, retried, reconciled, succeeded, state`` (see
    :func:`_selected_items`; the state now, from all the item's rows). The state is computed once,
    for these items only, however many sections read it.
    """
    grouped, params = _selected_items(session, table, scope, sel)
    m = _materialized(session)
    ctes = [f"{_ITEMS} AS {m}({grouped})"]
    source, state = _state_of(session, table, _ITEMS)
    ctes += source
    stated = f"SELECT i.*, {state} AS state FROM {_ITEMS} i"
    if sel.state:
        stated = f"SELECT * FROM ({stated}) x WHERE x.state = {session.placeholder}"
        params = [*params, sel.state]
    ctes.append(f"{_STATED} AS {m}({stated})")
    return "WITH " + ", ".join(ctes), params


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

#: The columns every section of the summary statement fills (``UNION ALL`` needs one shape): a tag,
#: then text, count, time and day columns; each section says which it uses, in its tuple's order.
_TEXTS = ("t1", "t2", "t3", "t4", "t5", "t6")
_COUNTS = ("n1", "n2", "n3", "n4")
_TIMES = ("ts1", "ts2")
_DAYS = ("d1",)
_SLOT_TYPES = {
    **dict.fromkeys(_TEXTS, "TEXT"),
    **dict.fromkeys(_COUNTS, "BIGINT"),
    **dict.fromkeys(_TIMES, "TIMESTAMP"),
}
_SLOTS = (*_TEXTS, *_COUNTS, *_TIMES, *_DAYS)
#: each section: its tag and the slots of its tuple's fields, in order
_SECTIONS = {
    "daily": ("d1", "t1", "t2", "n1", "n2", "n3"),
    "failures": ("t1", "t2", "t3", "n1", "n2", "n3", "t4", "ts1", "n4"),
    "runs": ("t1", "t2", "t3", "t4", "n1", "ts1", "ts2"),
    "tasks": ("t1", "t2", "t3"),
    "approvals": ("t1", "t2", "t3", "t4", "t5", "ts1", "t6", "n1", "n2", "n3"),
}


def _section(session: Session, tag: str, values: list[str], rest: str) -> str:
    """One branch of the summary's ``UNION ALL``: ``values`` in the section's slots, a typed NULL elsewhere.

    Values keep the type the engine gives them (SQLite's timestamps are text; a cast would make a
    number of them); only the NULLs are typed, so that every engine finds one type per column.
    """
    given = dict(zip(_SECTIONS[tag], values, strict=True))
    day_type = "DATE"

    def null(slot: str) -> str:
        return "NULL" if session.dialect == "sqlite" else f"CAST(NULL AS {_SLOT_TYPES.get(slot, day_type)})"

    select = [f"{given[slot] if slot in given else null(slot)} AS {slot}" for slot in _SLOTS]
    return f"SELECT '{tag}' AS section, {', '.join(select)} {rest}"


def summary_rows(session: Session, table: str, scope: DagScope, sel: Selection) -> SummaryRows:
    """The summary's rows over the selected items (``sel.since``: the window), in one statement.

    The items' states are computed once (:func:`stated_items`) and the window's rows of those items
    read once; every section is an aggregate over them.
    """
    with_sql, params = stated_items(session, table, scope, sel)
    m = _materialized(session)
    rows = _Where(session.placeholder)
    if sel.since is not None:
        rows.add("l.recorded_at >= {p}", _time_param(session, sel.since))
    rows.dags(scope, "l.dag_id")
    columns = ["dag_id", "run_id", "task_id", "vendor", "item_key", "status", "code", "failure_kind", "message"]
    columns += ["recorded_at", *(APPROVAL_COLUMNS if sel.has_approval else ())]
    window = (
        f"{_WINDOW} AS {m}(SELECT {', '.join('l.' + c for c in columns)}, s.state FROM {table} l "
        f"JOIN {_STATED} s ON s.vendor = l.vendor AND s.item_key = l.item_key{rows.sql()})"
    )
    params += rows.params
    day = _day_sql(session, "s.first_at")
    sections = [
        _section(
            session,
            "daily",
            [day, "s.vendor", "s.state", "s.retried", "s.reconciled", "COUNT(*)"],
            f"FROM {_STATED} s GROUP BY {day}, s.vendor, s.state, s.retried, s.reconciled",
        ),  # fmt: skip
    ]
    failed = _Where(session.placeholder).add("w.status IN ('failed', 'invalid')")
    if sel.code:
        failed.add("w.code = {p}", sel.code)
    unsettled = ", ".join(f"'{state}'" for state in UNSETTLED)
    top = (
        "SELECT w.vendor, w.code, w.failure_kind, COUNT(*) AS outcomes, COUNT(DISTINCT w.item_key) AS items, "
        "COUNT(DISTINCT w.message) AS messages, MAX(w.message) AS example, MAX(w.recorded_at) AS last_seen, "
        f"COUNT(DISTINCT CASE WHEN w.state IN ({unsettled}) THEN w.item_key END) AS unsettled "
        f"FROM {_WINDOW} w{failed.sql()} GROUP BY w.vendor, w.code, w.failure_kind "
        f"ORDER BY outcomes DESC, w.vendor, w.code LIMIT {int(TOP_FAILURES)}"
    )
    params += failed.params
    fields = ["vendor", "code", "failure_kind", "outcomes", "items", "messages", "example", "last_seen", "unsettled"]
    sections.append(_section(session, "failures", [f"f.{c}" for c in fields], f"FROM ({top}) f"))
    sections.append(
        _section(
            session,
            "runs",
            [
                "w.dag_id",
                "w.run_id",
                "w.vendor",
                "w.state",
                "COUNT(DISTINCT w.item_key)",
                "MIN(w.recorded_at)",
                "MAX(w.recorded_at)",
            ],
            f"FROM {_WINDOW} w GROUP BY w.dag_id, w.run_id, w.vendor, w.state",
        )  # fmt: skip
    )
    sections.append(
        _section(
            session,
            "tasks",
            ["w.dag_id", "w.run_id", "w.task_id"],
            f"FROM {_WINDOW} w GROUP BY w.dag_id, w.run_id, w.task_id",
        )  # fmt: skip
    )
    if sel.has_approval:
        sections.append(
            _section(
                session,
                "approvals",
                [
                    "w.dag_id",
                    "w.run_id",
                    "w.vendor",
                    "MAX(w.approved_by_id)",
                    "MAX(w.approved_by_name)",
                    "MAX(w.approved_at)",
                    "MAX(w.approval_digest)",
                    "MAX(w.approval_planned)",
                    "COUNT(DISTINCT CASE WHEN w.status = 'sending' THEN w.item_key END)",
                    "COUNT(DISTINCT CASE WHEN w.code = 'not_approved' THEN w.item_key END)",
                ],
                f"FROM {_WINDOW} w WHERE w.approval_digest IS NOT NULL GROUP BY w.dag_id, w.run_id, w.vendor",
            )  # fmt: skip
        )
    found: dict[str, list[tuple[Any, ...]]] = {tag: [] for tag in _SECTIONS}
    at = {slot: i + 1 for i, slot in enumerate(_SLOTS)}
    for row in session.fetch(f"{with_sql}, {window} {' UNION ALL '.join(sections)}", params):
        tag = str(row[0])
        found[tag].append(tuple(row[at[slot]] for slot in _SECTIONS[tag]))
    # the order the top failures were chosen in (a UNION keeps no order)
    found["failures"].sort(key=lambda f: (-int(f[3]), str(f[0]), f[1] is None, str(f[1] or "")))
    return SummaryRows(found["daily"], found["failures"], found["runs"], found["tasks"], found["approvals"])


def matching_items(
    session: Session, table: str, scope: DagScope, sel: Selection, *, limit: int, offset: int
) -> tuple[int, list[tuple[str, str, str]]]:
    """How many items are selected, and ``(vendor, item_key, state)`` of one page of them, newest activity first.

    One statement. Without a state filter the count needs no state: only the page's items get one.
    """
    p = session.placeholder
    m = _materialized(session)
    if sel.state:
        with_sql, params = stated_items(session, table, scope, sel)
        sql = (
            f"{with_sql} SELECT t.total, k.vendor, k.item_key, k.state FROM (SELECT COUNT(*) AS total "
            f"FROM {_STATED}) t LEFT JOIN (SELECT s.vendor, s.item_key, s.state, s.last_at FROM {_STATED} s "
            f"ORDER BY s.last_at DESC, s.vendor, s.item_key LIMIT {p} OFFSET {p}) k ON 1 = 1 "
            "ORDER BY k.last_at DESC, k.vendor, k.item_key"
        )
    else:
        grouped, params = _selected_items(session, table, scope, sel)
        ctes = [
            f"{_ITEMS} AS {m}({grouped})",
            f"{_PAGE} AS {m}(SELECT * FROM {_ITEMS} s ORDER BY s.last_at DESC, s.vendor, s.item_key "
            f"LIMIT {p} OFFSET {p})",
        ]
        source, state = _state_of(session, table, _PAGE)
        sql = (
            f"WITH {', '.join([*ctes, *source])} SELECT t.total, i.vendor, i.item_key, {state} "
            f"FROM (SELECT COUNT(*) AS total FROM {_ITEMS}) t LEFT JOIN {_PAGE} i ON 1 = 1 "
            "ORDER BY i.last_at DESC, i.vendor, i.item_key"
        )
    found = session.fetch(sql, [*params, int(limit), int(offset)])
    listed = [(str(v), str(k), str(state)) for _, v, k, state in found if v is not None]
    return (int(found[0][0]) if found else 0), listed


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
