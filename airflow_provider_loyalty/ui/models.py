"""The Reversals page's JSON answers (pydantic models, also the API's response schemas)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


class Attempt(BaseModel):
    """One recorded outcome of an item (a row of the ledger)."""

    status: str
    failure_kind: str | None = None
    code: str | None = None
    message: str = ""
    recorded_at: datetime
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    run_url: str | None = None
    task_url: str | None = None


class ItemHistory(BaseModel):
    """Everything the ledger knows about one item: was it reversed, when, by which run."""

    vendor: str
    item_key: str
    unique_id: int | None = None
    customer_id: int | None = None
    promotion_id: str | None = None
    earn_id: str | None = None
    reversed: bool
    reversed_at: datetime | None = None
    reversed_by: Attempt | None = None
    last: Attempt
    attempt_count: int
    attempts: list[Attempt]


class ItemsPage(BaseModel):
    """One page of items matching a search (newest activity first)."""

    query: str
    vendor: str | None = None
    status: str | None = None
    since: datetime | None = None
    total: int
    limit: int
    offset: int
    items: list[ItemHistory]


class VendorTotals(BaseModel):
    """Outcomes of one vendor; ``skipped`` comes from the task summaries (``None``: unknown)."""

    vendor: str
    succeeded: int = 0
    failed_permanent: int = 0
    failed_transient: int = 0
    skipped: int | None = None


class DayCounts(VendorTotals):
    """Outcomes recorded on one day (UTC) for one vendor."""

    day: date


class FailureGroup(BaseModel):
    """A failure code of a vendor, with how often it was recorded in the window."""

    vendor: str
    code: str | None = None
    failure_kind: str | None = None
    outcomes: int
    items: int
    distinct_messages: int
    example_message: str
    last_seen: datetime


class RunCounts(BaseModel):
    """What one DAG run recorded in the ledger."""

    dag_id: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    vendors: list[str]
    first_recorded_at: datetime
    last_recorded_at: datetime
    succeeded: int = 0
    failed_permanent: int = 0
    failed_transient: int = 0


class LedgerRef(BaseModel):
    """Which ledger the numbers come from (ids only, never connection details)."""

    conn_id: str
    table: str


class Summary(BaseModel):
    """The page's numbers for a window of days."""

    ledger: LedgerRef
    days: int
    since: datetime
    until: datetime
    vendor: str | None = None
    daily: list[DayCounts]
    totals: list[VendorTotals]
    top_failures: list[FailureGroup]
    runs: list[RunCounts]
    skipped_available: bool
