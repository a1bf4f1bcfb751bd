"""The Reversals page's JSON answers (pydantic models, also the API's response schemas)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


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
    """Everything the ledger knows about one item: was it reversed, when, by which run — or why not.

    Every registered vendor's identity column is a field of its own too (``None`` for another
    vendor's item): the JSON names an item by its vendor's id fields (:func:`item_history`).
    """

    model_config = ConfigDict(extra="allow")

    vendor: str
    item_key: str
    #: the item's identity columns and values, as the ledger holds them
    ids: dict[str, Any] = {}
    #: the business reference (an order id) its input row carried
    reference: str | None = None
    #: the item's state now (``ledger.state``): succeeded, refused, invalid, in_doubt, not_sent, failed...
    state: str
    #: the row that decides the state: the first success, the refusal, the invalid row, the attempt
    #: that may have applied it, the latest failure
    decided_by: Attempt | None = None
    reversed: bool
    reversed_at: datetime | None = None
    reversed_by: Attempt | None = None
    #: the item's state is ``in_doubt``: the vendor may have applied it and no answer settled it
    #: since; the next run resends it and reconciles "already reversed"
    in_doubt: bool = False
    last: Attempt
    attempt_count: int
    attempts: list[Attempt]


class ItemsPage(BaseModel):
    """One page of items matching a search (newest activity first)."""

    query: str
    vendor: str | None = None
    status: str | None = None
    code: str | None = None
    reference: str | None = None
    since: datetime | None = None
    total: int
    limit: int
    offset: int
    items: list[ItemHistory]


class StateCounts(BaseModel):
    """Items by their state now (``ledger.state``), each item counted once.

    ``reconciled`` is the part of ``succeeded`` settled by a resend answered "already reversed".
    ``settled_after_retry``: items succeeded or refused after a failure that did not settle them
    (transient, the request refused as a whole, not sent): counted once, in its state, not as a failure.
    ``failed``: still failing (the latest attempt failed transiently or the request was refused; resent).
    ``not_sent``: the run stopped before sending it (sent by the next try). ``claimed``: being sent
    under a live claim.
    """

    succeeded: int = 0
    reconciled: int = 0
    refused: int = 0
    invalid: int = 0
    in_doubt: int = 0
    claimed: int = 0
    not_sent: int = 0
    failed: int = 0
    settled_after_retry: int = 0

    @property
    def total(self) -> int:
        """Items counted."""
        return self.succeeded + self.refused + self.invalid + self.in_doubt + self.claimed + self.not_sent + self.failed


class VendorTotals(StateCounts):
    """The items of one vendor with activity in the window (``skipped``: from the task summaries, ``None``: unknown)."""

    vendor: str
    skipped: int | None = None


class DayCounts(StateCounts):
    """The items whose first row in the window was recorded on this day (UTC), by state now (``skipped``: summaries)."""

    day: date
    vendor: str
    skipped: int | None = None


class FailureGroup(BaseModel):
    """A failure code of a vendor, with how often it was recorded in the window.

    ``unsettled``: of its items, those not settled now (still failing, not sent, in doubt).
    """

    vendor: str
    code: str | None = None
    failure_kind: str | None = None
    outcomes: int
    items: int
    unsettled: int = 0
    distinct_messages: int
    example_message: str
    last_seen: datetime


class RunApproval(BaseModel):
    """The receipt one vendor's items of a run were sent under (``approved_by_name`` ``None``: under the threshold)."""

    vendor: str
    approved_by_id: str | None = None
    approved_by_name: str | None = None
    approved_at: datetime | None = None
    digest: str
    #: items of the plan the receipt covers; ``sent``: of them, how many were handed to the vendor
    planned: int | None = None
    sent: int
    #: items of the run's input outside the plan: recorded, not sent
    not_approved: int


class RunCounts(StateCounts):
    """The items one DAG run recorded in the ledger, by their state now, and its tasks' Airflow states.

    ``tasks``: ``task_id -> state`` in Airflow's metadata (``None``: not known to this api-server);
    a mapped task shows its instances' states joined (``success×3, failed×1``).
    """

    dag_id: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    vendors: list[str]
    first_recorded_at: datetime
    last_recorded_at: datetime
    tasks: dict[str, str] | None = None
    approvals: list[RunApproval] = []


class LedgerRef(BaseModel):
    """Which ledger the numbers come from (ids only, never connection details)."""

    conn_id: str
    table: str


class ClaimedItem(BaseModel):
    """An item an attempt holds a live claim on now (it is being sent): who, since when, until when."""

    vendor: str
    item_key: str
    owner: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    host: str | None = None
    since: datetime
    lease_until: datetime
    epoch: int


class Summary(BaseModel):
    """The page's numbers for a window of days."""

    ledger: LedgerRef
    days: int
    since: datetime
    until: datetime
    vendor: str | None = None
    #: the filters the numbers are for (``None``: all)
    status: str | None = None
    code: str | None = None
    reference: str | None = None
    query: str | None = None
    daily: list[DayCounts]
    totals: list[VendorTotals]
    top_failures: list[FailureGroup]
    runs: list[RunCounts]
    skipped_available: bool
    #: items under a live claim now (the first :data:`~.queries.CLAIMED_LISTED`, oldest claim first)
    claimed: list[ClaimedItem] = []


def item_history(ids: dict[str, Any], **fields: Any) -> ItemHistory:
    """An :class:`ItemHistory` with ``ids`` also as top-level fields, every registered identity column present."""
    from airflow_provider_loyalty.vendors import identity_columns

    spread: dict[str, Any] = {c.name: ids.get(c.name) for c in identity_columns()}
    return ItemHistory.model_validate({**spread, **fields, "ids": ids})
