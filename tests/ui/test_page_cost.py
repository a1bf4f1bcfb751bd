"""What one request of the page costs the ledger: the items' states are computed once, not per section.

An item's state (``ledger.state.item_state_sql``) is the costly part of every answer: sub-queries
over all the item's rows. A summary used to recompute it in each of its sections (per day, top
failures, runs, tasks, receipts) and a listing twice (the count, then the page), so a 1M-row
ledger took seconds per section. These tests count the statements that compute it; speed itself is
measured by ``make bench`` (``--scenario page``), never timed here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_loyalty.ledger.state import item_state_sql
from airflow_provider_loyalty.ui import connections
from airflow_provider_loyalty.ui.reader import LedgerReader
from airflow_provider_loyalty.ui.settings import LedgerSettings

#: A piece of the state's SQL that every computation of it holds once (its in-doubt branch).
STATE_MARK = "THEN 'in_doubt'"

REQUESTS: dict[str, Callable[[LedgerReader], Any]] = {
    "summary": lambda r: r.summary(days=30),
    "summary of refused items": lambda r: r.summary(days=90, status="refused"),
    "summary of a search": lambda r: r.summary(days=90, query="1001"),
    "listing": lambda r: r.items(days=90, limit=3),
    "listing of one state": lambda r: r.items(days=90, status="succeeded", limit=3),
    "search": lambda r: r.items(query="ORD-1000"),
}


def test_the_mark_is_in_the_state_sql_once() -> None:
    assert item_state_sql("i", "t").count(STATE_MARK) == 1


@pytest.mark.parametrize("request_name", sorted(REQUESTS))
def test_one_request_computes_the_items_states_in_one_statement(
    ledger: Any, monkeypatch: pytest.MonkeyPatch, request_name: str
) -> None:
    executed: list[str] = []
    fetch = connections.Session.fetch

    def recording(self: connections.Session, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        executed.append(sql)
        return fetch(self, sql, params)

    monkeypatch.setattr(connections.Session, "fetch", recording)
    reader = LedgerReader(LedgerSettings(conn_id=ledger.conn_id, table=ledger.table))
    REQUESTS[request_name](reader)

    stated = [sql for sql in executed if STATE_MARK in sql]
    assert len(stated) == 1, f"{len(stated)} statements computed the items' states"
    assert stated[0].count(STATE_MARK) == 1, "the states were computed more than once in the statement"


def test_the_page_reads_postgresql_without_jit(ledger: Any) -> None:
    """PostgreSQL's JIT compiled each of the page's statements for seconds (their estimated cost is huge)."""
    if ledger.backend != "postgres":
        pytest.skip("JIT is PostgreSQL's")
    reader = LedgerReader(LedgerSettings(conn_id=ledger.conn_id, table=ledger.table))
    with reader.session() as session:
        assert session.fetch("SHOW jit") == [("off",)]
        assert session.fetch("SHOW transaction_read_only") == [("on",)]
