"""The ledger table: its name rules, columns, DDL and the SQL other queries build on.

The SQL is portable (DuckDB, SQLite, PostgreSQL, Snowflake...): ``CREATE ... IF NOT EXISTS``,
multi-row ``INSERT ... VALUES``, ``IN`` look-ups in chunks, and the hook's own placeholder. The
writer (:mod:`.store`) and the Reversals page's read-only queries both take their SQL from here.

Statuses (see :mod:`airflow_provider_loyalty.outcomes`): ``sending`` (intent, written before the
request leaves), ``succeeded`` (``code = 'already_reversed'`` when reconciled), ``failed`` with a
``failure_kind`` of ``permanent``, ``rejected`` or ``transient``, ``invalid`` (an input row skipped).

The columns are :class:`LedgerRow`'s fields, its ``ids`` spread into the registered vendors'
identity columns (:func:`airflow_provider_loyalty.vendors.identity_columns`). A table made by an earlier release gets the columns it
lacks when the writer opens it (``ALTER TABLE ... ADD COLUMN``, nullable); a read-only reader reads
``NULL`` for them (:func:`select_list`) and never alters the table.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NamedTuple, get_args, get_type_hints

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.items import INVALID_KEY_SQL

DEFAULT_TABLE = "loyalty_reversal_ledger"
MESSAGE_CHARS = 1000
CODE_CHARS = 64


@dataclass(frozen=True)
class Sql:
    """A ledger column's SQL type (portable across the engines we support), and whether it is required."""

    type: str
    not_null: bool = False


#: Marks :attr:`LedgerRow.ids`: one column per registered identity column, not a column itself.
IDENTITY = "identity columns"


class LedgerRow(NamedTuple):
    """One ledger row, its fields in table order: the ledger's one list of columns with their SQL types.

    The table's DDL (:func:`create_table_sql`), the writer's ``INSERT``, every reader's ``SELECT`` and
    the migration of an existing table (a missing column is added when the writer opens it) are all
    built from this class. Adding a column is one line at the end: nullable, with the default ``None``
    (rows written before it have none). A vendor's id fields are its spec's identity columns
    (:mod:`airflow_provider_loyalty.vendors`): ``ids`` holds the row's values of them.
    """

    vendor: Annotated[str, Sql("VARCHAR(16)", not_null=True)]
    item_key: Annotated[str, Sql("VARCHAR(512)", not_null=True)]
    #: the item's identity columns and values (none for an invalid input row)
    ids: Annotated[Mapping[str, Any], IDENTITY]
    status: Annotated[str, Sql("VARCHAR(16)", not_null=True)]
    failure_kind: Annotated[str | None, Sql("VARCHAR(16)")]
    code: Annotated[str | None, Sql(f"VARCHAR({CODE_CHARS})")]
    message: Annotated[str | None, Sql(f"VARCHAR({MESSAGE_CHARS})")]
    dag_id: Annotated[str | None, Sql("VARCHAR(250)")]
    run_id: Annotated[str | None, Sql("VARCHAR(250)")]
    task_id: Annotated[str | None, Sql("VARCHAR(250)")]
    map_index: Annotated[int | None, Sql("INTEGER")]
    try_number: Annotated[int | None, Sql("INTEGER")]
    recorded_at: Annotated[datetime, Sql("TIMESTAMP", not_null=True)]
    #: the business reference (an order id) the input row carried: shown and searched, never identity
    reference: Annotated[str | None, Sql("VARCHAR(200)")] = None
    #: the epoch of the item's claim the writing attempt held (coordination/claims.py): it fences a
    #: stale owner; NULL for rows written without claims
    epoch: Annotated[int | None, Sql("BIGINT")] = None
    #: the receipt the row was written under (operators/approval.py, docs/approval.md): the approver's
    #: Airflow user id and name and the answer's time, NULL when no person was asked (under the
    #: threshold: the digest alone) or when no approval gate applies (all four NULL)
    approved_by_id: Annotated[str | None, Sql("VARCHAR(250)")] = None
    approved_by_name: Annotated[str | None, Sql("VARCHAR(250)")] = None
    approved_at: Annotated[datetime | None, Sql("TIMESTAMP")] = None
    #: SHA-256 (hex) of the planned item set the run was allowed to send
    approval_digest: Annotated[str | None, Sql("VARCHAR(64)")] = None
    #: how many items that plan held (what the person saw; what the run could send at most)
    approval_planned: Annotated[int | None, Sql("INTEGER")] = None

    @property
    def attempt(self) -> tuple[Any, ...]:
        """The task try that wrote the row (an intent and its outcome share it)."""
        return tuple(getattr(self, c) for c in ATTEMPT_COLUMNS)

    def values(self, names: Sequence[str] | None = None) -> list[Any]:
        """The row's values of the columns ``names`` (default: :func:`columns`), in that order."""
        named = self._asdict()
        ids = self.ids
        return [ids.get(name) if name in ids or name not in named else named[name] for name in names or columns()]

    @classmethod
    def from_db(cls, values: Sequence[Any], names: Sequence[str] | None = None) -> LedgerRow:
        """A row as a driver returns it (``names``: the selected columns; default :func:`columns`).

        ``recorded_at`` comes back as ISO text from SQLite: it is read as the datetime it was written as.
        """
        if names is None:  # the table's own order: positions computed once per registry
            layout = _layout()
            if len(values) != len(layout[1]):
                raise ValueError(f"a ledger row has {len(layout[1])} columns, got {len(values)} values")
            ids = {name: values[i] for name, i in layout[4] if values[i] is not None}
            row = cls._make([ids if i < 0 else values[i] for i in layout[3]])
        else:
            given = dict(zip(names, values, strict=True))
            identity = _layout()[2]
            ids = {name: value for name, value in given.items() if name in identity and value is not None}
            fields = {name: value for name, value in given.items() if name in cls._fields and name != "ids"}
            row = cls(ids=ids, **fields)
        at, approved = row.recorded_at, row.approved_at
        if not isinstance(at, datetime):
            row = row._replace(recorded_at=datetime.fromisoformat(str(at)))
        if approved is not None and not isinstance(approved, datetime):
            row = row._replace(approved_at=datetime.fromisoformat(str(approved)))
        return row


def _fields() -> tuple[tuple[str, Sql | str], ...]:
    hints = get_type_hints(LedgerRow, include_extras=True)
    return tuple(
        (name, next(m for m in get_args(hints[name])[1:] if isinstance(m, Sql) or m == IDENTITY))
        for name in LedgerRow._fields
    )


_FIELDS = _fields()


_Layout = tuple[
    tuple[tuple[str, Sql], ...],  # column types, in table order
    tuple[str, ...],  # column names
    frozenset[str],  # identity column names
    tuple[int, ...],  # each LedgerRow field's position among the columns (-1: ``ids``)
    tuple[tuple[str, int], ...],  # each identity column's position
]
_cache: dict[tuple[vendors.IdColumn, ...], _Layout] = {}


def _layout() -> _Layout:
    """The ledger's column layout for the registry as it is (computed once per registry)."""
    identity = vendors.identity_columns()
    found = _cache.get(identity)
    if found is None:
        types = _column_types(identity)
        names = tuple(name for name, _ in types)
        position = {name: i for i, name in enumerate(names)}
        fields = tuple(-1 if name == "ids" else position[name] for name in LedgerRow._fields)
        ids = tuple((c.name, position[c.name]) for c in identity)
        found = _cache[identity] = (types, names, frozenset(c.name for c in identity), fields, ids)
    return found


def column_types() -> tuple[tuple[str, Sql], ...]:
    """``(name, Sql)`` of every ledger column, in table order.

    :class:`LedgerRow`'s fields, ``ids`` spread into the registered vendors' identity columns (a
    vendor registered later adds its own).
    """
    return _layout()[0]


def _column_types(identity: tuple[vendors.IdColumn, ...]) -> tuple[tuple[str, Sql], ...]:
    found: list[tuple[str, Sql]] = []
    for name, sql in _FIELDS:
        if isinstance(sql, Sql):
            found.append((name, sql))
        else:
            found += [(c.name, Sql(c.sql)) for c in identity]
    return tuple(found)


def columns() -> tuple[str, ...]:
    """The ledger's column names, in table order."""
    return _layout()[1]


def __getattr__(name: str) -> Any:
    # ``COLUMNS`` and ``COLUMN_TYPES`` as of now (the registry may grow after this module is imported)
    if name == "COLUMNS":
        return columns()
    if name == "COLUMN_TYPES":
        return column_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The columns naming the task try that wrote a row (an intent and its outcome share them).
ATTEMPT_COLUMNS = ("run_id", "dag_id", "task_id", "map_index", "try_number")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
#: Words reserved in at least one of the engines we support (SQL:2016, PostgreSQL, DuckDB, SQLite,
#: Snowflake): as an unquoted table or schema name they fail later, mid-run, with a syntax error.
RESERVED = frozenset(
    """
    all alter analyse analyze and any array as asc asymmetric authorization between binary both by case
    cast check collate column constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user default deferrable delete desc distinct do
    drop else end except exists false fetch for foreign freeze from full grant group having ilike in
    index initially inner insert intersect into is isnull join lateral leading left like limit
    localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing
    primary qualify references returning right row rows select session_user similar some symmetric
    table tablesample then to trailing true union unique update user using values variadic verbose
    when where window with
    add asof attach begin commit describe detach escape glob lambda nothing pivot pragma rename
    replace rollback savepoint set show summarize transaction unpivot vacuum
    """.split()
)
#: Schemas whose tables vanish with the connection (SQLite/DuckDB ``temp``, PostgreSQL ``pg_temp``):
#: a ledger there forgets everything between tasks.
TEMPORARY_SCHEMAS = ("temp", "temporary", "pg_temp")


def check_table_name(table: str) -> str:
    """Return ``table`` if it is a plain, optionally schema-qualified identifier, else raise ``ValueError``.

    Refused: anything but letters, digits and ``_`` in each part, more than two parts, a leading or
    trailing newline or space, reserved words (``select``, ``order``, ``user``, ``transaction``...)
    and temporary schemas (``temp.``, ``pg_temp.``).
    """
    if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
        raise ValueError(
            f"ledger table must be an identifier like loyalty_reversal_ledger or schema.table "
            f"(letters, digits, _), got {table!r}"
        )
    reserved = [part for part in table.split(".") if part.lower() in RESERVED]
    if reserved:
        raise ValueError(f"ledger table {table!r}: {reserved[0]!r} is a reserved SQL word; choose another name")
    if "." in table and table.split(".")[0].lower().startswith(TEMPORARY_SCHEMAS):
        raise ValueError(f"ledger table {table!r} is in a temporary schema: it would vanish with the connection")
    return table


def create_table_sql(table: str = DEFAULT_TABLE) -> str:
    """Return the portable ``CREATE TABLE IF NOT EXISTS`` statement of the ledger (from :class:`LedgerRow`)."""
    table = check_table_name(table)
    listed = ",\n".join(f"    {name} {sql.type}{' NOT NULL' if sql.not_null else ''}" for name, sql in column_types())
    return f"CREATE TABLE IF NOT EXISTS {table} (\n{listed}\n)"


def add_column_sql(table: str, column: str) -> str:
    """Return the portable ``ALTER TABLE ... ADD COLUMN`` statement of a ledger column (added as nullable)."""
    table = check_table_name(table)
    sql = dict(column_types())[column]
    return f"ALTER TABLE {table} ADD COLUMN {column} {sql.type}"


def missing_columns(present: Collection[str]) -> list[str]:
    """The ledger columns a table with the columns ``present`` lacks (names compared case-insensitively)."""
    have = {name.lower() for name in present}
    return [name for name in columns() if name not in have]


def select_list(present: Collection[str] | None = None, alias: str | None = None) -> str:
    """The ``SELECT`` list of every ledger column in table order, ``NULL`` for one the table lacks.

    A reader that may not alter the table (a dry run, the Reversals page) reads an older table
    through it into a full :class:`LedgerRow`.
    """
    prefix = f"{alias}." if alias else ""
    absent = set(missing_columns(present)) if present is not None else set()
    return ", ".join(f"NULL AS {name}" if name in absent else f"{prefix}{name}" for name in columns())


def create_index_sql(table: str = DEFAULT_TABLE) -> str:
    """Return the look-up index statement (databases without secondary indexes, e.g. Snowflake, refuse it)."""
    table = check_table_name(table)
    return f"CREATE INDEX IF NOT EXISTS {table.rsplit('.', 1)[-1]}_lookup_idx ON {table} (vendor, item_key, status)"


def key_sql(vendor: str, *columns: str) -> str:
    """SQL expression of ``vendor``'s item key from the extraction's identity columns, in the spec's order."""
    spec = vendors.get(vendor)
    if len(columns) != len(spec.columns):
        raise ValueError(f"{vendor}: give the {len(spec.columns)} column(s) {', '.join(spec.columns)}, got {columns!r}")
    return spec.key_sql_of(**dict(zip(spec.columns, columns, strict=True)))


def _check_vendor(vendor: str) -> str:
    return vendors.get(vendor).name


#: A row that settles its item: done, or (optionally) refused for good.
DONE_SQL = "{t}.status = 'succeeded'"
SETTLED_SQL = "({t}.status = 'succeeded' OR ({t}.status = 'failed' AND {t}.failure_kind = 'permanent'))"


def not_done_predicate(
    vendor: str,
    key_sql: str,
    table: str = DEFAULT_TABLE,
    *,
    skip_permanent_failures: bool = True,
    skip_invalid: bool = True,
) -> str:
    """SQL predicate for an extraction query's ``WHERE``: true for rows still to be sent.

    Excludes items the ledger records as done (reconciled ones included) and, unless
    ``skip_permanent_failures`` is false, items the vendor refused for good (already redeemed,
    invalid id...): resending those every day would fail the same way. Items *in doubt* (sent, no
    answer recorded) are extracted again: the operator resends them and reconciles the vendor's
    "already reversed" answer. To retry a refused item after fixing it, delete its ledger rows.
    In the terms of :mod:`.state`: extracted unless ``succeeded`` or ``refused`` — and, by default,
    unless ever refused, so an item resent after its refusal (``retry_refused``) that is in doubt
    again needs ``skip_permanent_failures=False`` to be extracted and reconciled (a property test
    holds the predicate to this).

    Unless ``skip_invalid`` is false, junk the operator already recorded as invalid input
    (``on_invalid="skip"``) is left out too: its ledger key is ``'invalid:' ||`` the same key text
    (a text id column's ``abc``, an earn row's ``0/P1/E-1``), so the same junk is not extracted again.

    :param vendor: a registered vendor (:mod:`airflow_provider_loyalty.vendors`).
    :param key_sql: SQL expression of the item key (:func:`key_sql`).
    :param table: ledger table.
    :param skip_permanent_failures: also leave out items refused permanently.
    :param skip_invalid: also leave out values recorded as invalid input.
    """
    _check_vendor(vendor)
    table = check_table_name(table)
    settled = (SETTLED_SQL if skip_permanent_failures else DONE_SQL).format(t="ledger")
    predicate = (
        f"NOT EXISTS (SELECT 1 FROM {table} ledger WHERE ledger.vendor = '{vendor}' "
        f"AND {settled} AND ledger.item_key = {key_sql})"
    )
    if skip_invalid:  # a second look-up (not an OR) so that each one uses the look-up index
        predicate += (
            f" AND NOT EXISTS (SELECT 1 FROM {table} ledger WHERE ledger.vendor = '{vendor}' "
            f"AND ledger.status = 'invalid' AND ledger.item_key = {INVALID_KEY_SQL.format(value=key_sql)})"
        )
    return predicate
