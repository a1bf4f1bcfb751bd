"""Read the reversal ledger for the Reversals page: read-only, parameterised, one connection per request.

Every value a user types reaches the database as a bound parameter; the only names spliced into SQL
are the table (checked to be an identifier) and fixed column names. :mod:`.settings` says where the
ledger is, :mod:`.connections` opens it read-only, :mod:`.models` are the answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote

from airflow_provider_loyalty.ledger import COLUMNS, check_table_name
from airflow_provider_loyalty.ui.connections import Session, read_only_session
from airflow_provider_loyalty.ui.models import (
    Attempt,
    DayCounts,
    FailureGroup,
    ItemHistory,
    ItemsPage,
    LedgerRef,
    RunCounts,
    Summary,
    VendorTotals,
)
from airflow_provider_loyalty.ui.settings import LedgerSettings, LedgerUnavailable

log = logging.getLogger(__name__)

VENDORS = ("xoxoday", "capillary")
Vendor = Literal["xoxoday", "capillary"]
Status = Literal["succeeded", "failed"]

#: Longest search text accepted (ids and run ids are far shorter).
MAX_QUERY_CHARS = 250
#: Attempts listed per item in a search answer (the count covers all of them).
MAX_ATTEMPTS_SHOWN = 20
#: Rows of "top failures" and "recent runs".
TOP_FAILURES = 10
RECENT_RUNS = 20

_BIGINT_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_ROW_COLUMNS = COLUMNS


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


def check_query(text: str) -> str:
    """Return the search text stripped; raise ``ValueError`` if it is too long or has control characters."""
    text = text.strip()
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"search text longer than {MAX_QUERY_CHARS} characters")
    if _CONTROL.search(text):
        raise ValueError("search text contains control characters")
    return text


class LedgerReader:
    """The page's queries over one ledger.

    :param settings: ledger connection and table.
    :param airflow_root: path prefix of the Airflow UI (``[api] base_url``'s path), for run links.
    :param now: clock (UTC), injectable for tests.
    """

    def __init__(
        self,
        settings: LedgerSettings,
        *,
        airflow_root: str = "",
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.table = check_table_name(settings.table)
        self.airflow_root = airflow_root.rstrip("/")
        self.now = now

    # ----------------------------------------------------------------------------- helpers
    def window(self, days: int) -> tuple[datetime, datetime]:
        """Return the naive-UTC start of the first day of a ``days``-day window ending today, and now."""
        now = self.now().astimezone(timezone.utc).replace(tzinfo=None)
        first = now.date() - timedelta(days=days - 1)
        return datetime.combine(first, time.min), now

    def run_url(self, dag_id: str | None, run_id: str | None) -> str | None:
        """Path of a DAG run in the Airflow UI."""
        if not dag_id or not run_id:
            return None
        return f"{self.airflow_root}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def task_url(
        self, dag_id: str | None, run_id: str | None, task_id: str | None, map_index: int | None
    ) -> str | None:
        """Path of a task instance in the Airflow UI."""
        run = self.run_url(dag_id, run_id)
        if run is None or not task_id:
            return None
        url = f"{run}/tasks/{quote(task_id, safe='')}"
        return f"{url}/mapped/{map_index}" if map_index is not None and map_index >= 0 else url

    @staticmethod
    def _day_sql(session: Session) -> str:
        return "DATE(recorded_at)" if session.dialect == "sqlite" else "CAST(recorded_at AS DATE)"

    @staticmethod
    def _time_param(session: Session, value: datetime) -> Any:
        # SQLite stores the ledger's timestamps as ISO text; compare text with text.
        return value.isoformat(" ") if session.dialect == "sqlite" else value

    def _check_table(self, session: Session) -> None:
        try:
            session.fetch(f"SELECT 1 FROM {self.table} WHERE 1 = 0")
        except Exception as exc:
            log.info(
                "Ledger table %s not readable through %r: %s", self.table, self.settings.conn_id, type(exc).__name__
            )
            raise LedgerUnavailable(
                f"the ledger table {self.table} does not exist yet in connection {self.settings.conn_id!r}: "
                "reversal tasks create it on their first run",
                missing=True,
            ) from None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with read_only_session(self.settings.conn_id) as session:
            self._check_table(session)
            try:
                yield session
            except LedgerUnavailable:
                raise
            except Exception as exc:
                log.exception("Reading the ledger %s through %r failed", self.table, self.settings.conn_id)
                raise LedgerUnavailable(
                    f"reading the ledger table {self.table} through connection {self.settings.conn_id!r} failed "
                    f"({type(exc).__name__}; details in the api-server log)"
                ) from None

    def _attempt(self, row: dict[str, Any]) -> Attempt:
        map_index = _as_int(row["map_index"])
        return Attempt(
            status=str(row["status"]),
            failure_kind=_as_text(row["failure_kind"]),
            code=_as_text(row["code"]),
            message=str(row["message"] or ""),
            recorded_at=_as_datetime(row["recorded_at"]),
            dag_id=_as_text(row["dag_id"]),
            run_id=_as_text(row["run_id"]),
            task_id=_as_text(row["task_id"]),
            map_index=map_index,
            try_number=_as_int(row["try_number"]),
            run_url=self.run_url(row["dag_id"], row["run_id"]),
            task_url=self.task_url(row["dag_id"], row["run_id"], row["task_id"], map_index),
        )

    # ----------------------------------------------------------------------------- summary
    def summary(
        self,
        *,
        days: int = 30,
        vendor: str | None = None,
        skipped: dict[tuple[date, str], int] | None = None,
    ) -> Summary:
        """Per day and vendor counts, top failure codes and recent runs over the last ``days`` days.

        :param days: window length, today included.
        :param vendor: only this vendor.
        :param skipped: items skipped as already done, per ``(day, vendor)``, from the task summaries
            (``None``: not known).
        """
        since, until = self.window(days)
        where = "recorded_at >= {p}"
        with self._session() as session:
            p = session.placeholder
            params: list[Any] = [self._time_param(session, since)]
            if vendor:
                where += " AND vendor = {p}"
                params.append(vendor)
            where = where.format(p=p)
            day = self._day_sql(session)
            daily_rows = session.fetch(
                f"SELECT {day} AS day, vendor, status, failure_kind, COUNT(*) FROM {self.table} "
                f"WHERE {where} GROUP BY {day}, vendor, status, failure_kind",
                params,
            )
            failure_rows = session.fetch(
                "SELECT vendor, code, failure_kind, COUNT(*) AS outcomes, COUNT(DISTINCT item_key), "
                f"COUNT(DISTINCT message), MAX(message), MAX(recorded_at) FROM {self.table} "
                f"WHERE {where} AND status = 'failed' GROUP BY vendor, code, failure_kind "
                f"ORDER BY outcomes DESC, vendor, code LIMIT {int(TOP_FAILURES)}",
                params,
            )
            run_rows = session.fetch(
                "SELECT dag_id, run_id, vendor, status, failure_kind, COUNT(*), MIN(recorded_at), MAX(recorded_at) "
                f"FROM {self.table} WHERE {where} GROUP BY dag_id, run_id, vendor, status, failure_kind",
                params,
            )

        daily = _daily(daily_rows, skipped, first_day=since.date(), vendor=vendor)
        return Summary(
            ledger=LedgerRef(conn_id=self.settings.conn_id, table=self.table),
            days=days,
            since=since.replace(tzinfo=timezone.utc),
            until=until.replace(tzinfo=timezone.utc),
            vendor=vendor,
            daily=daily,
            totals=_totals(daily),
            top_failures=[_failure_group(row) for row in failure_rows],
            runs=self._runs(run_rows)[:RECENT_RUNS],
            skipped_available=skipped is not None,
        )

    def _runs(self, rows: list[tuple[Any, ...]]) -> list[RunCounts]:
        """Per DAG run counts from ``(dag_id, run_id, vendor, status, kind, n, first, last)`` rows, newest first."""
        runs: dict[tuple[str | None, str | None], RunCounts] = {}
        for dag_id, run_id, row_vendor, status, kind, n, first, last in rows:
            key = (_as_text(dag_id), _as_text(run_id))
            first_at, last_at = _as_datetime(first), _as_datetime(last)
            run = runs.get(key)
            if run is None:
                run = runs[key] = RunCounts(
                    dag_id=key[0],
                    run_id=key[1],
                    run_url=self.run_url(key[0], key[1]),
                    vendors=[],
                    first_recorded_at=first_at,
                    last_recorded_at=last_at,
                )
            run.first_recorded_at = min(run.first_recorded_at, first_at)
            run.last_recorded_at = max(run.last_recorded_at, last_at)
            if str(row_vendor) not in run.vendors:
                run.vendors = sorted([*run.vendors, str(row_vendor)])
            _add(run, str(status), kind, int(n))
        return sorted(runs.values(), key=lambda r: r.last_recorded_at, reverse=True)

    # ------------------------------------------------------------------------------ search
    def items(
        self,
        *,
        query: str = "",
        vendor: str | None = None,
        status: str | None = None,
        days: int = 30,
        limit: int = 25,
        offset: int = 0,
    ) -> ItemsPage:
        """Items matching ``query`` (an id of any kind, an item key or a run id), newest activity first.

        With a query, the whole ledger is searched ("was it ever reversed?"); without one, the items
        with activity in the last ``days`` days are listed.

        :param query: unique_id, customer_id, earn_id, promotion_id, item key or run_id; exact match.
        :param vendor: only this vendor.
        :param status: only items with an attempt of this status.
        :param days: window of the listing without a query.
        :param limit: page size.
        :param offset: items to skip.
        """
        query = check_query(query)
        since = None if query else self.window(days)[0]
        with self._session() as session:
            p = session.placeholder
            conditions: list[str] = []
            params: list[Any] = []
            if query:
                matches = ["item_key = {p}", "earn_id = {p}", "promotion_id = {p}", "run_id = {p}"]
                params += [query] * len(matches)
                if _DIGITS.fullmatch(query) and int(query) <= _BIGINT_MAX:
                    matches += ["unique_id = {p}", "customer_id = {p}"]
                    params += [int(query), int(query)]
                conditions.append("(" + " OR ".join(matches) + ")")
            if since is not None:
                conditions.append("recorded_at >= {p}")
                params.append(self._time_param(session, since))
            if vendor:
                conditions.append("vendor = {p}")
                params.append(vendor)
            if status:
                conditions.append("status = {p}")
                params.append(status)
            where = (" WHERE " + " AND ".join(conditions)).format(p=p) if conditions else ""
            total = int(
                session.fetch(
                    f"SELECT COUNT(*) FROM (SELECT vendor, item_key FROM {self.table}{where} "
                    "GROUP BY vendor, item_key) matched",
                    params,
                )[0][0]
            )
            keys = session.fetch(
                f"SELECT vendor, item_key, MAX(recorded_at) AS last_at FROM {self.table}{where} "
                f"GROUP BY vendor, item_key ORDER BY last_at DESC, vendor, item_key LIMIT {p} OFFSET {p}",
                [*params, int(limit), int(offset)],
            )
            histories = self._histories(session, [(str(v), str(k)) for v, k, _ in keys])
        return ItemsPage(
            query=query,
            vendor=vendor,
            status=status,
            since=since.replace(tzinfo=timezone.utc) if since else None,
            total=total,
            limit=limit,
            offset=offset,
            items=[histories[(str(v), str(k))] for v, k, _ in keys if (str(v), str(k)) in histories],
        )

    def _histories(self, session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], ItemHistory]:
        by_vendor: dict[str, list[str]] = {}
        for vendor, key in keys:
            by_vendor.setdefault(vendor, []).append(key)
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        p = session.placeholder
        for vendor, item_keys in by_vendor.items():
            marks = ", ".join([p] * len(item_keys))
            for values in session.fetch(
                f"SELECT {', '.join(_ROW_COLUMNS)} FROM {self.table} "
                f"WHERE vendor = {p} AND item_key IN ({marks}) ORDER BY recorded_at DESC",
                [vendor, *item_keys],
            ):
                row = dict(zip(_ROW_COLUMNS, values, strict=True))
                rows.setdefault((str(row["vendor"]), str(row["item_key"])), []).append(row)
        histories: dict[tuple[str, str], ItemHistory] = {}
        for (vendor, key), item_rows in rows.items():
            attempts = [self._attempt(r) for r in item_rows]  # newest first
            successes = [a for a in attempts if a.status == "succeeded"]
            first_success = successes[-1] if successes else None
            histories[(vendor, key)] = ItemHistory(
                vendor=vendor,
                item_key=key,
                unique_id=_as_int(_first(item_rows, "unique_id")),
                customer_id=_as_int(_first(item_rows, "customer_id")),
                promotion_id=_as_text(_first(item_rows, "promotion_id")),
                earn_id=_as_text(_first(item_rows, "earn_id")),
                reversed=first_success is not None,
                reversed_at=first_success.recorded_at if first_success else None,
                reversed_by=first_success,
                last=attempts[0],
                attempt_count=len(attempts),
                attempts=attempts[:MAX_ATTEMPTS_SHOWN],
            )
        return histories


def _daily(
    rows: list[tuple[Any, ...]],
    skipped: dict[tuple[date, str], int] | None,
    *,
    first_day: date,
    vendor: str | None,
) -> list[DayCounts]:
    """Per day and vendor counts from ``(day, vendor, status, kind, n)`` rows plus the skipped counts, newest first."""
    counts: dict[tuple[date, str], DayCounts] = {}
    for day_value, row_vendor, status, kind, n in rows:
        key = (_as_date(day_value), str(row_vendor))
        _add(counts.setdefault(key, DayCounts(day=key[0], vendor=key[1])), str(status), kind, int(n))
    if skipped is not None:
        for (day, skip_vendor), n in skipped.items():
            if day >= first_day and (not vendor or skip_vendor == vendor):
                entry = counts.setdefault((day, skip_vendor), DayCounts(day=day, vendor=skip_vendor))
                entry.skipped = (entry.skipped or 0) + n
        for entry in counts.values():
            entry.skipped = entry.skipped or 0
    return sorted(counts.values(), key=lambda c: (c.day, c.vendor), reverse=True)


def _totals(daily: list[DayCounts]) -> list[VendorTotals]:
    """The window's totals per vendor (Xoxoday, then Capillary)."""
    totals: dict[str, VendorTotals] = {}
    for entry in daily:
        total = totals.setdefault(entry.vendor, VendorTotals(vendor=entry.vendor))
        total.succeeded += entry.succeeded
        total.failed_permanent += entry.failed_permanent
        total.failed_transient += entry.failed_transient
        if entry.skipped is not None:
            total.skipped = (total.skipped or 0) + entry.skipped
    order = {vendor: i for i, vendor in enumerate(VENDORS)}
    return sorted(totals.values(), key=lambda t: (order.get(t.vendor, len(order)), t.vendor))


def _failure_group(row: tuple[Any, ...]) -> FailureGroup:
    vendor, code, kind, outcomes, items, messages, example, last_seen = row
    return FailureGroup(
        vendor=str(vendor),
        code=_as_text(code),
        failure_kind=_as_text(kind),
        outcomes=int(outcomes),
        items=int(items),
        distinct_messages=int(messages),
        example_message=str(example or ""),
        last_seen=_as_datetime(last_seen),
    )


def _first(rows: list[dict[str, Any]], column: str) -> Any:
    return next((r[column] for r in rows if r[column] is not None), None)


def _add(target: VendorTotals | RunCounts, status: str, failure_kind: Any, n: int) -> None:
    if status == "succeeded":
        target.succeeded += n
    elif failure_kind == "transient":
        target.failed_transient += n
    else:
        target.failed_permanent += n
