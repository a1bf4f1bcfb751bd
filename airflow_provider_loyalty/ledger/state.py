"""What an item's ledger rows say of it: one state, defined once in Python and once in SQL beside it.

The writer (what to skip, what to reconcile), the extraction and the Reversals page all decide an
item's state here; a property test holds the SQL to the Python on real databases.

An item is, first rule that applies:

1. ``succeeded``: a ``succeeded`` row (reconciled ones included: ``code = 'already_reversed'``).
2. ``in_doubt``: the vendor may have applied it and no answer of the vendor about the item settled
   it since. A row *leaves it in doubt* when it is

   * an intent (``sending``) that no outcome of its own attempt (same run, task, map index, try)
     followed: the worker died or the ledger went away mid-request; or
   * an outcome after which the vendor may have applied it: ``failed`` / ``transient`` with a code
     in :data:`~airflow_provider_loyalty.outcomes.IN_DOUBT_CODES` (no answer, an unclear one, a
     gateway timeout),

   and no permanent refusal of the item was recorded at or after it. Another attempt that did not
   get through (``not_sent``, an error page, a rejected request) says nothing of what the earlier
   one did at the vendor, so it does not end the doubt. The next run resends the item and records
   the vendor's "already reversed" as done.
3. ``refused``: the vendor refused the item for good (``failed`` / ``permanent``).
4. ``invalid``: an input row skipped as invalid (never sent).
5. ``failed``: the latest outcome is a failure that is not ``not_sent`` (transient, or the request
   refused as a whole): still failing, resent.
6. ``not_sent``: the latest attempt never sent it (or nothing was recorded): sent by a later try.

Time order is ``recorded_at``; rows recorded at the same instant are ordered so that the answer
settles (a refusal at the instant of a doubt ends it; an outcome at the instant of its intent closes
it), which the SQL reproduces without relying on any row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from airflow_provider_loyalty.ledger.schema import ATTEMPT_COLUMNS, DEFAULT_TABLE, LedgerRow, check_table_name
from airflow_provider_loyalty.outcomes import IN_DOUBT_CODES, FailureKind, Status


class ItemState(str, Enum):
    """An item's state, from all its ledger rows (see the module's rules)."""

    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    INVALID = "invalid"
    IN_DOUBT = "in_doubt"
    NOT_SENT = "not_sent"
    FAILED = "failed"


class Assessment(NamedTuple):
    """An item's state and the row that decides it.

    ``row``: the first success; the latest row leaving it in doubt (the attempt that may have applied
    it); the latest refusal; the latest invalid row; the latest failure; ``None`` without rows.
    """

    state: ItemState
    row: LedgerRow | None


NOT_SENT_CODE = "not_sent"


def _intent(row: LedgerRow) -> bool:
    return row.status == Status.SENDING.value


def _refusal(row: LedgerRow) -> bool:
    return row.status == Status.FAILED.value and row.failure_kind == FailureKind.PERMANENT.value


def _unanswered(row: LedgerRow) -> bool:
    """An outcome after which the vendor may have applied the item."""
    return (
        row.status == Status.FAILED.value
        and row.failure_kind == FailureKind.TRANSIENT.value
        and row.code in IN_DOUBT_CODES
    )


def time_order(row: LedgerRow) -> tuple[datetime, int]:
    """Sort key in time; at one instant an intent comes before the answers."""
    return (row.recorded_at, 0 if _intent(row) else 1)


def in_doubt_rows(rows: Sequence[LedgerRow]) -> list[LedgerRow]:
    """The rows of one item that leave it in doubt now (success aside: a success settles it anyway)."""
    last_refusal = max((r.recorded_at for r in rows if _refusal(r)), default=None)
    found = []
    for row in rows:
        if not (_intent(row) or _unanswered(row)):
            continue
        if last_refusal is not None and last_refusal >= row.recorded_at:
            continue
        if _intent(row) and any(
            not _intent(o) and o.attempt == row.attempt and o.recorded_at >= row.recorded_at for o in rows
        ):
            continue
        found.append(row)
    return found


def assess(rows: Sequence[LedgerRow]) -> Assessment:
    """The state of the item whose rows (any order, all of them) these are, and the row that decides it."""
    successes = [r for r in rows if r.status == Status.SUCCEEDED.value]
    if successes:
        return Assessment(ItemState.SUCCEEDED, min(successes, key=time_order))
    doubts = in_doubt_rows(rows)
    if doubts:
        return Assessment(ItemState.IN_DOUBT, max(doubts, key=time_order))
    for state, matches in (
        (ItemState.REFUSED, _refusal),
        (ItemState.INVALID, lambda r: r.status == Status.INVALID.value),
    ):
        found = [r for r in rows if matches(r)]
        if found:
            return Assessment(state, max(found, key=time_order))
    outcomes = [r for r in rows if not _intent(r)]
    if not outcomes:
        return Assessment(ItemState.NOT_SENT, None)
    latest_at = max(r.recorded_at for r in outcomes)
    latest = sorted((r for r in outcomes if r.recorded_at == latest_at), key=lambda r: (r.status, r.code or ""))
    failed = [r for r in latest if not (r.status == Status.FAILED.value and r.code == NOT_SENT_CODE)]
    return Assessment(ItemState.FAILED, failed[0]) if failed else Assessment(ItemState.NOT_SENT, latest[0])


def item_state(rows: Sequence[LedgerRow]) -> ItemState:
    """The state of the item whose rows these are (see the module's rules)."""
    return assess(rows).state


# --------------------------------------------------------------------------------------------- SQL
# The same rules over the ledger table, as correlated sub-queries (the look-up index covers them).

_CODES = ", ".join(f"'{code}'" for code in IN_DOUBT_CODES)


def _same_item(row: str, of: str) -> str:
    return f"{row}.vendor = {of}.vendor AND {row}.item_key = {of}.item_key"


def _same_attempt(row: str, of: str) -> str:
    # NULL-safe: rows written outside a task have no attempt (and Python's None == None agrees)
    return " AND ".join(f"({row}.{c} = {of}.{c} OR ({row}.{c} IS NULL AND {of}.{c} IS NULL))" for c in ATTEMPT_COLUMNS)


def succeeded_sql(row: str) -> str:
    """SQL condition: the row ``row`` is a success, which alone makes its item ``succeeded`` (rule 1).

    A reader that sees such a row of an item knows its state without reading its other rows.
    """
    return f"{row}.status = 'succeeded'"


def _refusal_sql(r: str) -> str:
    return f"({r}.status = 'failed' AND {r}.failure_kind = 'permanent')"


def _unanswered_sql(r: str) -> str:
    return f"({r}.status = 'failed' AND {r}.failure_kind = 'transient' AND {r}.code IN ({_CODES}))"


def _open_sql(alias: str, table: str) -> str:
    """SQL: ``alias`` is an unanswered outcome, or an intent that no outcome of its own attempt followed."""
    outcome = f"{alias}_o"
    return (
        f"({_unanswered_sql(alias)} OR ({alias}.status = 'sending' AND NOT EXISTS (SELECT 1 FROM {table} {outcome} "
        f"WHERE {_same_item(outcome, alias)} AND {outcome}.status <> 'sending' "
        f"AND {outcome}.recorded_at >= {alias}.recorded_at AND {_same_attempt(outcome, alias)})))"
    )


def leaves_in_doubt_sql(alias: str, table: str = DEFAULT_TABLE) -> str:
    """SQL condition: the row ``alias`` leaves its item in doubt now (:func:`in_doubt_rows`)."""
    table = check_table_name(table)
    refusal = f"{alias}_r"
    return (
        f"{_open_sql(alias, table)} "
        f"AND NOT EXISTS (SELECT 1 FROM {table} {refusal} WHERE {_same_item(refusal, alias)} "
        f"AND {_refusal_sql(refusal)} AND {refusal}.recorded_at >= {alias}.recorded_at)"
    )


def item_state_sql(alias: str, table: str = DEFAULT_TABLE) -> str:
    """SQL expression: the :class:`ItemState` value (text) of the item ``alias`` names.

    ``alias`` is any row source with ``vendor`` and ``item_key`` columns (a ledger row, or a
    ``SELECT DISTINCT vendor, item_key``).
    """
    table = check_table_name(table)
    a = alias.replace(".", "_")
    s, d, r, i, f, g = (f"{a}_{x}" for x in "sdrifg")

    def exists(row: str, condition: str) -> str:
        return f"EXISTS (SELECT 1 FROM {table} {row} WHERE {_same_item(row, alias)} AND {condition})"

    succeeded, invalid = succeeded_sql(s), f"{i}.status = 'invalid'"
    failed = (
        f"{f}.status <> 'sending' AND ({f}.status <> 'failed' OR {f}.code IS NULL OR {f}.code <> '{NOT_SENT_CODE}') "
        f"AND NOT EXISTS (SELECT 1 FROM {table} {g} WHERE {_same_item(g, f)} AND {g}.status <> 'sending' "
        f"AND {g}.recorded_at > {f}.recorded_at)"
    )
    return (
        "CASE "
        f"WHEN {exists(s, succeeded)} THEN 'succeeded' "
        f"WHEN {exists(d, leaves_in_doubt_sql(d, table))} THEN 'in_doubt' "
        f"WHEN {exists(r, _refusal_sql(r))} THEN 'refused' "
        f"WHEN {exists(i, invalid)} THEN 'invalid' "
        f"WHEN {exists(f, failed)} THEN 'failed' "
        "ELSE 'not_sent' END"
    )


def in_doubt_condition(alias: str, table: str = DEFAULT_TABLE) -> str:
    """SQL condition: the row ``alias`` is the latest row leaving its item in doubt (the item is ``in_doubt``).

    One row per item in doubt, naming the attempt that may have applied it (two such rows recorded
    at the very same instant are both listed).
    """
    table = check_table_name(table)
    a = alias.replace(".", "_")
    success, newer = f"{a}_s", f"{a}_n"
    return (
        f"{leaves_in_doubt_sql(alias, table)} "
        f"AND NOT EXISTS (SELECT 1 FROM {table} {success} WHERE {_same_item(success, alias)} "
        f"AND {success}.status = 'succeeded') "
        # a later row that is open leaves the item in doubt too: no refusal can follow it, since
        # one would follow ``alias`` as well
        f"AND NOT EXISTS (SELECT 1 FROM {table} {newer} WHERE {_same_item(newer, alias)} "
        f"AND {newer}.recorded_at > {alias}.recorded_at AND {_open_sql(newer, table)})"
    )


def in_doubt_sql(table: str = DEFAULT_TABLE) -> str:
    """Return a query of the items *in doubt*, with the attempt that may have applied each.

    An item in doubt was handed to the vendor by an attempt that recorded no answer (the worker
    died, the ledger went away) or got none (a timeout): the vendor may have applied it. The next
    run resends it and records the vendor's "already reversed" as ``succeeded`` / ``already_reversed``.
    Columns: ``vendor, item_key, dag_id, run_id, task_id, map_index, try_number, recorded_at``.
    """
    table = check_table_name(table)
    return (
        f"SELECT l.vendor, l.item_key, l.dag_id, l.run_id, l.task_id, l.map_index, l.try_number, l.recorded_at "
        f"FROM {table} l WHERE {in_doubt_condition('l', table)}"
    )
