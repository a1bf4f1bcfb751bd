"""The reversal ledger: an append-only outcomes table in any SQL database Airflow can reach.

:mod:`.schema` holds the table (its typed row) and the extraction's SQL, :mod:`.state` an item's
state from its rows (in Python and SQL), :mod:`.store` the writer the operators use (over :mod:`._connection`), :mod:`.spool`
what keeps answered outcomes while the ledger is down.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_loyalty.ledger.schema import (
    DEFAULT_TABLE,
    LedgerRow,
    check_table_name,
    columns,
    create_index_sql,
    create_table_sql,
    key_sql,
    not_done_predicate,
)
from airflow_provider_loyalty.ledger.state import (
    ItemState,
    assess,
    in_doubt_condition,
    in_doubt_sql,
    item_state,
    item_state_sql,
)
from airflow_provider_loyalty.ledger.store import ReversalLedger, ensure_ledger
from airflow_provider_loyalty.outcomes import Settled
from airflow_provider_loyalty.vendors import earn_key_sql, points_key_sql

__all__ = [
    "COLUMNS",
    "DEFAULT_TABLE",
    "ItemState",
    "LedgerRow",
    "ReversalLedger",
    "Settled",
    "assess",
    "check_table_name",
    "columns",
    "create_index_sql",
    "create_table_sql",
    "earn_key_sql",
    "ensure_ledger",
    "in_doubt_condition",
    "in_doubt_sql",
    "item_state",
    "item_state_sql",
    "key_sql",
    "not_done_predicate",
    "points_key_sql",
]


def __getattr__(name: str) -> Any:
    # the ledger's columns as of now: a vendor registered after this import adds its identity columns
    if name == "COLUMNS":
        return columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
