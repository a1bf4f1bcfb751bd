"""Fixtures of the operator tests: the ledger spool's Variables kept in a dict."""

from __future__ import annotations

import pytest

from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.ledger import LedgerRow, ReversalLedger, spool
from airflow_provider_loyalty.outcomes import Outcome


@pytest.fixture
def spool_variables(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The spool's Airflow Variables, in a dict instead of the metadata database."""
    variables: dict[str, str] = {}
    monkeypatch.setattr(spool, "get_variable", variables.get)
    monkeypatch.setattr(spool, "set_variable", lambda k, v, d: variables.__setitem__(k, v))
    monkeypatch.setattr(spool, "delete_variable", lambda k: variables.pop(k, None))
    return variables


def succeeded_row(unique_id: int, run: dict) -> LedgerRow:
    """The ledger row of a Xoxoday success, as the writer builds it (what a spool holds)."""
    return ReversalLedger.rows("xoxoday", [Outcome.succeeded(PointItem(unique_id))], run)[0]
