"""The ledger table: its name rules, columns, DDL and the SQL other queries build on.

The SQL is portable (DuckDB, SQLite, PostgreSQL, Snowflake...): ``CREATE ... IF NOT EXISTS``,
multi-row ``INSERT ... VALUES``, ``IN`` look-ups in chunks, and the hook's own placeholder. The
writer (:mod:`.store`) and the Reversals page's read-only queries both take their SQL from here.

Statuses (see :mod:`airflow_provider_loyalty.outcomes`): ``sending`` (intent, written before the
request leaves), ``succeeded`` (``code = 'already_reversed'`` when reconciled), ``failed`` with a
``failure_kind`` of ``permanent``, ``rejected`` or ``transient``. Tables created by 0.1 hold the same
columns; the ``sending`` status is the only new value, so they keep working as they are.
"""

from __future__ import annotations

import re

from airflow_provider_loyalty.items import EARN_KEY_SQL, POINTS_KEY_SQL

DEFAULT_TABLE = "loyalty_reversal_ledger"
VENDORS = ("xoxoday", "capillary")

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
#: The columns naming the task try that wrote a row (an intent and its outcome share them).
ATTEMPT_COLUMNS = ("run_id", "dag_id", "task_id", "map_index", "try_number")
MESSAGE_CHARS = 1000
CODE_CHARS = 64

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
    code VARCHAR({CODE_CHARS}),
    message VARCHAR({MESSAGE_CHARS}),
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
    return POINTS_KEY_SQL.format(unique_id=unique_id_column)


def earn_key_sql(customer_column: str, promotion_column: str, earn_column: str) -> str:
    """SQL expression of a Capillary item key (``customer/promotion/earn``) from the extraction's columns."""
    return EARN_KEY_SQL.format(customer_id=customer_column, promotion_id=promotion_column, earn_id=earn_column)


def _check_vendor(vendor: str) -> str:
    if vendor not in VENDORS:
        raise ValueError(f"vendor must be 'xoxoday' or 'capillary', got {vendor!r}")
    return vendor


#: A row that settles its item: done, or (optionally) refused for good.
DONE_SQL = "{t}.status = 'succeeded'"
SETTLED_SQL = "({t}.status = 'succeeded' OR {t}.failure_kind = 'permanent')"


def not_done_predicate(
    vendor: str, key_sql: str, table: str = DEFAULT_TABLE, *, skip_permanent_failures: bool = True
) -> str:
    """SQL predicate for an extraction query's ``WHERE``: true for rows still to be sent.

    Excludes items the ledger records as done (reconciled ones included) and, unless
    ``skip_permanent_failures`` is false, items the vendor refused for good (already redeemed,
    invalid id...): resending those every day would fail the same way. Items *in doubt* (sent, no
    answer recorded) are extracted again: the operator resends them and reconciles the vendor's
    "already reversed" answer. To retry a refused item after fixing it, delete its ledger rows.

    :param vendor: ``xoxoday`` or ``capillary``.
    :param key_sql: SQL expression of the item key (:func:`points_key_sql`, :func:`earn_key_sql`).
    :param table: ledger table.
    :param skip_permanent_failures: also leave out items refused permanently.
    """
    _check_vendor(vendor)
    table = check_table_name(table)
    settled = (SETTLED_SQL if skip_permanent_failures else DONE_SQL).format(t="ledger")
    return (
        f"NOT EXISTS (SELECT 1 FROM {table} ledger WHERE ledger.vendor = '{vendor}' "
        f"AND {settled} AND ledger.item_key = {key_sql})"
    )


def _closes(row: str, intent: str) -> str:
    """SQL: ``row`` (a later row of the same item) ends the doubt of the intent ``intent``.

    A success, or the vendor's permanent refusal of the item, ends every doubt; any other outcome
    ends only its own attempt's intent (``not_sent`` of a later try that never got through leaves an
    earlier try's intent in doubt). The writer's look-up (``store._maybe_applied_by``) reads the same rule.
    """
    same_attempt = " AND ".join(  # NULL-safe: rows written outside a task have no attempt
        f"({row}.{c} = {intent}.{c} OR ({row}.{c} IS NULL AND {intent}.{c} IS NULL))" for c in ATTEMPT_COLUMNS
    )
    return (
        f"{row}.vendor = {intent}.vendor AND {row}.item_key = {intent}.item_key AND ("
        f"{row}.status = 'succeeded' "
        f"OR ({row}.failure_kind = 'permanent' AND {row}.recorded_at >= {intent}.recorded_at) "
        f"OR ({row}.status <> 'sending' AND {row}.recorded_at >= {intent}.recorded_at AND {same_attempt}))"
    )


def in_doubt_condition(alias: str, table: str = DEFAULT_TABLE) -> str:
    """SQL condition: the row ``alias`` is its item's latest open intent, and the item never succeeded.

    One row per item in doubt (an older open intent is left out when a newer one is open too). The
    writer's docs and the Reversals page's queries both use it.
    """
    table = check_table_name(table)
    suffix = alias.replace(".", "_")
    closer, newer, newer_closer = f"c_{suffix}", f"n_{suffix}", f"nc_{suffix}"
    return (
        f"{alias}.status = 'sending' "
        f"AND NOT EXISTS (SELECT 1 FROM {table} {closer} WHERE {_closes(closer, alias)}) "
        f"AND NOT EXISTS (SELECT 1 FROM {table} {newer} WHERE {newer}.vendor = {alias}.vendor "
        f"AND {newer}.item_key = {alias}.item_key AND {newer}.status = 'sending' "
        f"AND {newer}.recorded_at > {alias}.recorded_at "
        f"AND NOT EXISTS (SELECT 1 FROM {table} {newer_closer} WHERE {_closes(newer_closer, newer)}))"
    )


def in_doubt_sql(table: str = DEFAULT_TABLE) -> str:
    """Return a query of the items *in doubt*: their latest row is an intent (``sending``).

    An item in doubt was handed to the vendor by an attempt that recorded no answer (the worker
    died, the ledger went away): the vendor may have applied it. The next run resends it and
    records the vendor's "already reversed" as ``succeeded`` / ``already_reversed``.
    Columns: ``vendor, item_key, dag_id, run_id, task_id, map_index, try_number, recorded_at``.
    """
    table = check_table_name(table)
    return (
        f"SELECT l.vendor, l.item_key, l.dag_id, l.run_id, l.task_id, l.map_index, l.try_number, l.recorded_at "
        f"FROM {table} l WHERE {in_doubt_condition('l', table)}"
    )
