"""Turn the rows of :mod:`.queries` into the answers of :mod:`.models`: counts, histories, links.

Nothing here touches a database: every function takes rows as fetched (values as the engine gives
them, timestamps naive UTC or ISO text on SQLite) and builds what the page shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any
from urllib.parse import quote

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.ledger.schema import LedgerRow
from airflow_provider_loyalty.ledger.state import ItemState, assess, time_order
from airflow_provider_loyalty.ui.models import (
    Attempt,
    ClaimedItem,
    DayCounts,
    FailureGroup,
    ItemHistory,
    RunApproval,
    RunCounts,
    StateCounts,
    VendorTotals,
    item_history,
)

#: Attempts listed per item in a search answer (the count covers all of them).
MAX_ATTEMPTS_SHOWN = 20

#: The counts of :class:`StateCounts` (states, and the reconciled and retried parts).
_COUNT_FIELDS = tuple(StateCounts.model_fields)
_STATE_FIELDS = frozenset(_COUNT_FIELDS) - {"reconciled", "settled_after_retry"}
_SETTLED = ("succeeded", "refused")


def _as_datetime(value: Any) -> datetime:
    """A ledger timestamp (naive UTC, or ISO text on SQLite) as an aware UTC datetime."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min) if isinstance(value, date) else datetime.fromisoformat(str(value))
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class AirflowLinks:
    """Paths into the Airflow UI for the runs and tasks a ledger row names.

    :param root: path prefix of the Airflow UI (``[api] base_url``'s path), without a trailing ``/``.
    """

    root: str = ""

    def run_url(self, dag_id: str | None, run_id: str | None) -> str | None:
        """Path of a DAG run in the Airflow UI."""
        if not dag_id or not run_id:
            return None
        return f"{self.root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def task_url(
        self, dag_id: str | None, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> str | None:
        """Path of a task instance in the Airflow UI."""
        run = self.run_url(dag_id, run_id)
        if run is None or not task_id:
            return None
        url = f"{run}/tasks/{quote(task_id, safe='')}"
        return f"{url}/mapped/{map_index}" if map_index is not None and map_index >= 0 else url


def _count(target: StateCounts, state: str, retried: bool, reconciled: bool, n: int) -> None:
    """Add ``n`` items of ``state`` to ``target`` (a state this page does not know counts as still failing)."""
    field = state if state in _STATE_FIELDS else "failed"
    setattr(target, field, getattr(target, field) + n)
    if state == "succeeded" and reconciled:
        target.reconciled += n
    if state in _SETTLED and retried:
        target.settled_after_retry += n


def daily(
    rows: list[tuple[Any, ...]],
    skipped: dict[tuple[date, str], int] | None,
    *,
    first_day: date,
    vendor: str | None,
) -> list[DayCounts]:
    """Per day and vendor counts from ``(day, vendor, state, retried, reconciled, n)`` rows plus the skipped counts."""
    counts: dict[tuple[date, str], DayCounts] = {}
    for day_value, row_vendor, state, retried, reconciled, n in rows:
        key = (_as_date(day_value), str(row_vendor))
        entry = counts.setdefault(key, DayCounts(day=key[0], vendor=key[1]))
        _count(entry, str(state), bool(retried), bool(reconciled), int(n))
    if skipped is not None:
        for (day, skip_vendor), n in skipped.items():
            if day >= first_day and (not vendor or skip_vendor == vendor):
                entry = counts.setdefault((day, skip_vendor), DayCounts(day=day, vendor=skip_vendor))
                entry.skipped = (entry.skipped or 0) + n
        for entry in counts.values():
            entry.skipped = entry.skipped or 0
    return sorted(counts.values(), key=lambda c: (c.day, c.vendor), reverse=True)


def totals(daily: list[DayCounts]) -> list[VendorTotals]:
    """The window's totals per vendor (in the vendors' order): each item once, in its state now."""
    by_vendor: dict[str, VendorTotals] = {}
    for entry in daily:
        total = by_vendor.setdefault(entry.vendor, VendorTotals(vendor=entry.vendor))
        for name in _COUNT_FIELDS:
            setattr(total, name, getattr(total, name) + getattr(entry, name))
        if entry.skipped is not None:
            total.skipped = (total.skipped or 0) + entry.skipped
    order = {spec.name: i for i, spec in enumerate(vendors.all_specs())}
    return sorted(by_vendor.values(), key=lambda t: (order.get(t.vendor, len(order)), t.vendor))


def failure_group(row: tuple[Any, ...]) -> FailureGroup:
    """One "top failures" row: ``(vendor, code, kind, outcomes, items, messages, example, last_seen, unsettled)``."""
    vendor, code, kind, outcomes, items, messages, example, last_seen, unsettled = row
    return FailureGroup(
        vendor=str(vendor),
        code=_as_text(code),
        failure_kind=_as_text(kind),
        outcomes=int(outcomes),
        items=int(items),
        unsettled=int(unsettled or 0),
        distinct_messages=int(messages),
        example_message=str(example or ""),
        last_seen=_as_datetime(last_seen),
    )


def runs(
    rows: list[tuple[Any, ...]], links: AirflowLinks, approval_rows: Sequence[tuple[Any, ...]] = ()
) -> list[RunCounts]:
    """Per DAG run, the items it recorded by their state now, newest first.

    ``approval_rows``: the receipts per run and vendor (``queries.SummaryRows.approvals``).
    """
    by_run: dict[tuple[str | None, str | None], RunCounts] = {}
    for dag_id, run_id, row_vendor, state, n, first, last in rows:
        key = (_as_text(dag_id), _as_text(run_id))
        first_at, last_at = _as_datetime(first), _as_datetime(last)
        run = by_run.get(key)
        if run is None:
            run = by_run[key] = RunCounts(
                dag_id=key[0],
                run_id=key[1],
                run_url=links.run_url(key[0], key[1]),
                vendors=[],
                first_recorded_at=first_at,
                last_recorded_at=last_at,
            )
        run.first_recorded_at = min(run.first_recorded_at, first_at)
        run.last_recorded_at = max(run.last_recorded_at, last_at)
        if str(row_vendor) not in run.vendors:
            run.vendors = sorted([*run.vendors, str(row_vendor)])
        _count(run, str(state), False, False, int(n))
    for dag_id, run_id, row_vendor, by_id, by_name, at, digest, planned, sent, refused in approval_rows:
        found = by_run.get((_as_text(dag_id), _as_text(run_id)))
        if found is not None:
            found.approvals.append(
                RunApproval(
                    vendor=str(row_vendor),
                    approved_by_id=_as_text(by_id),
                    approved_by_name=_as_text(by_name),
                    approved_at=_as_datetime(at) if at is not None else None,
                    digest=str(digest),
                    planned=_as_int(planned),
                    sent=int(sent),
                    not_approved=int(refused),
                )
            )
    return sorted(by_run.values(), key=lambda r: r.last_recorded_at, reverse=True)


def task_ids(task_rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], set[str]]:
    """``(dag_id, run_id) -> task ids`` that wrote the runs' rows."""
    found: dict[tuple[str, str], set[str]] = {}
    for dag_id, run_id, task_id in task_rows:
        if dag_id and run_id and task_id:
            found.setdefault((str(dag_id), str(run_id)), set()).add(str(task_id))
    return found


def histories(
    rows: dict[tuple[str, str], list[LedgerRow]], states: dict[tuple[str, str], str], links: AirflowLinks
) -> dict[tuple[str, str], ItemHistory]:
    """Each item's history from its ledger rows (newest first), keyed by ``(vendor, item_key)``.

    :param states: the items' states as the page's SQL found them (the ledger's rule, over all rows).
    """
    found: dict[tuple[str, str], ItemHistory] = {}
    for (vendor, key), unordered in rows.items():
        # newest first; at one instant the answer after its intent (the order rows were read in is no rule)
        item_rows = sorted(unordered, key=time_order, reverse=True)
        attempts = [_attempt(r, links) for r in item_rows]
        successes = [a for a in attempts if a.status == "succeeded"]
        first_success = successes[-1] if successes else None
        assessment = assess(item_rows)
        state = states.get((vendor, key), assessment.state.value)
        found[(vendor, key)] = item_history(
            _ids(item_rows),
            vendor=vendor,
            item_key=key,
            reference=_as_text(_first(item_rows, "reference")),
            state=state,
            decided_by=_attempt(assessment.row, links) if assessment.row is not None else None,
            reversed=first_success is not None,
            reversed_at=first_success.recorded_at if first_success else None,
            reversed_by=first_success,
            in_doubt=state == ItemState.IN_DOUBT.value,
            last=attempts[0],
            attempt_count=len(attempts),
            attempts=attempts[:MAX_ATTEMPTS_SHOWN],
        )
    return found


def _attempt(row: LedgerRow, links: AirflowLinks) -> Attempt:
    map_index = _as_int(row.map_index)
    return Attempt(
        status=str(row.status),
        failure_kind=_as_text(row.failure_kind),
        code=_as_text(row.code),
        message=str(row.message or ""),
        recorded_at=_as_datetime(row.recorded_at),
        dag_id=_as_text(row.dag_id),
        run_id=_as_text(row.run_id),
        task_id=_as_text(row.task_id),
        map_index=map_index,
        try_number=_as_int(row.try_number),
        run_url=links.run_url(row.dag_id, row.run_id),
        task_url=links.task_url(row.dag_id, row.run_id, row.task_id, map_index),
    )


def _first(rows: list[LedgerRow], column: str) -> Any:
    return next((getattr(r, column) for r in rows if getattr(r, column) is not None), None)


def _ids(rows: list[LedgerRow]) -> dict[str, Any]:
    """The item's identity values: each column's first value in ``rows``, typed as its column."""
    numeric = {c.name for c in vendors.identity_columns() if c.numeric}
    found: dict[str, Any] = {}
    for row in rows:
        for name, value in row.ids.items():
            if value is not None and name not in found:
                found[name] = _as_int(value) if name in numeric else _as_text(value)
    return found


def claimed_item(row: tuple[Any, ...]) -> ClaimedItem:
    """A row of :func:`.queries.claimed_rows` as the page shows it (times in UTC)."""
    vendor, key, owner, dag_id, run_id, task_id, map_index, try_number, host, since, until, epoch = row
    return ClaimedItem(
        vendor=str(vendor),
        item_key=str(key),
        owner=str(owner or ""),
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        host=host,
        since=datetime.fromtimestamp(float(since), timezone.utc),
        lease_until=datetime.fromtimestamp(float(until), timezone.utc),
        epoch=int(epoch),
    )
