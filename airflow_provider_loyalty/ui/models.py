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
    #: the item's state is ``in_doubt`` (``ledger.state``): the vendor may have applied it and no
    #: answer settled it since; the next run resends it and reconciles "already reversed"
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
    since: datetime | None = None
    total: int
    limit: int
    offset: int
    items: list[ItemHistory]


class Outcomes(BaseModel):
    """Outcome rows by kind (intent rows, ``sending``, are not outcomes and are never counted here).

    ``reconciled`` is the part of ``succeeded`` resent after an attempt that may have applied it and
    answered "already reversed" (``code = 'already_reversed'``). ``failed_permanent``: the vendor
    refused the item for good (settled). ``failed_rejected``: the vendor refused the whole request
    (credentials, configuration): not settled, resent. ``failed_transient``: may succeed later
    (also any failure of a kind this page does not know).
    """

    succeeded: int = 0
    reconciled: int = 0
    failed_permanent: int = 0
    failed_rejected: int = 0
    failed_transient: int = 0


class VendorTotals(Outcomes):
    """Outcomes of one vendor over the window.

    ``skipped`` comes from the task summaries (``None``: unknown). ``in_doubt`` counts the items in
    doubt *now* (``ledger.state``, whenever the attempt that may have applied them), not only the window's.
    """

    vendor: str
    skipped: int | None = None
    in_doubt: int = 0


class DayCounts(Outcomes):
    """Outcomes recorded on one day (UTC) for one vendor (``skipped``: from the task summaries)."""

    day: date
    vendor: str
    skipped: int | None = None


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


class RunCounts(Outcomes):
    """What one DAG run recorded in the ledger (``in_doubt``: items in doubt that this run may have applied)."""

    dag_id: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    vendors: list[str]
    first_recorded_at: datetime
    last_recorded_at: datetime
    in_doubt: int = 0
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
    daily: list[DayCounts]
    totals: list[VendorTotals]
    top_failures: list[FailureGroup]
    runs: list[RunCounts]
    skipped_available: bool
    #: items under a live claim now (the first :data:`~.queries.CLAIMED_LISTED`, oldest claim first)
    claimed: list[ClaimedItem] = []
