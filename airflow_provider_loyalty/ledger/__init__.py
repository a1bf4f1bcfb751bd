"""The reversal ledger: an append-only outcomes table in any SQL database Airflow can reach.

:mod:`.schema` holds the table and the SQL built on it, :mod:`.store` the writer the operators
use, :mod:`.spool` what keeps answered outcomes while the ledger is down.
"""

from __future__ import annotations

from airflow_provider_loyalty.ledger.schema import (
    COLUMNS,
    DEFAULT_TABLE,
    LedgerRow,
    check_table_name,
    create_index_sql,
    create_table_sql,
    earn_key_sql,
    in_doubt_condition,
    in_doubt_sql,
    not_done_predicate,
    points_key_sql,
)
from airflow_provider_loyalty.ledger.store import ReversalLedger, ensure_ledger
from airflow_provider_loyalty.outcomes import Settled

__all__ = [
    "COLUMNS",
    "DEFAULT_TABLE",
    "LedgerRow",
    "ReversalLedger",
    "Settled",
    "check_table_name",
    "create_index_sql",
    "create_table_sql",
    "earn_key_sql",
    "ensure_ledger",
    "in_doubt_condition",
    "in_doubt_sql",
    "not_done_predicate",
    "points_key_sql",
]
