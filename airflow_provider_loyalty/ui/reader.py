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

from airflow_provider_loyalty.ledger import COLUMNS, check_table_name, in_doubt_condition
from airflow_provider_loyalty.ui.auth import DagScope
from airflow_provider_loyalty.ui.connections import Session, is_lock_error, read_only_session
from airflow_provider_loyalty.ui.models import (
    Attempt,
    DayCounts,
    FailureGroup,
    ItemHistory,
    ItemsPage,
    LedgerRef,
    Outcomes,
    RunCounts,
    Summary,
    VendorTotals,
)
from airflow_provider_loyalty.ui.settings import LedgerSettings, LedgerUnavailable

log = logging.getLogger(__name__)

VENDORS = ("xoxoday", "capillary")
Vendor = Literal["xoxoday", "capillary"]
#: The items filter: items with an attempt of this status, or in doubt (latest row an intent).
ITEM_STATUSES = ("succeeded", "failed", "in_doubt")
#: ``code`` of a success that answered a resend "already reversed" (the ledger's reconciliation).
RECONCILED_CODE = "already_reversed"
#: Longest failure code accepted as a filter (the ledger keeps 64 characters).
MAX_CODE_CHARS = 64

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


def check_code(text: str) -> str:
    """Return a failure-code filter stripped; raise ``ValueError`` if it is too long or has control characters."""
    text = text.strip()
    if len(text) > MAX_CODE_CHARS:
        raise ValueError(f"code longer than {MAX_CODE_CHARS} characters")
    if _CONTROL.search(text):
        raise ValueError("code contains control characters")
    return text


class _Where:
    """``WHERE`` conditions with their bound parameters, in order."""

    def __init__(self, placeholder: str) -> None:
        self.p = placeholder
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> _Where:
        """Add a condition written with ``{p}`` for each parameter."""
        self.conditions.append(condition.format(p=self.p))
        self.params.extend(params)
        return self

    def dags(self, scope: DagScope, column: str = "dag_id") -> _Where:
        """Only rows of DAGs the user may read."""
        if scope.every_dag:
            return self
        if not scope.dag_ids:
            return self.add("1 = 0")
        ids = sorted(scope.dag_ids)
        return self.add(f"{column} IN ({', '.join(['{p}'] * len(ids))})", *ids)

    def sql(self, keyword: str = " WHERE ") -> str:
        return keyword + " AND ".join(self.conditions) if self.conditions else ""


class LedgerReader:
    """The page's queries over one ledger, limited to the rows of the DAGs a user may read.

    :param settings: ledger connection and table.
    :param scope: the DAGs whose rows may be shown (every one by default).
    :param airflow_root: path prefix of the Airflow UI (``[api] base_url``'s path), for run links.
    :param now: clock (UTC), injectable for tests.
    """

    def __init__(
        self,
        settings: LedgerSettings,
        *,
        scope: DagScope | None = None,
        airflow_root: str = "",
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.table = check_table_name(settings.table)
        self.scope = scope or DagScope.everything()
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
            if is_lock_error(exc):
                raise LedgerUnavailable(
                    f"the ledger (file of connection {self.settings.conn_id!r}) is being written by a task; "
                    "the page gives way to writers: reload in a moment",
                    busy=True,
                ) from None
            log.info(
                "Ledger table %s not readable through %r: %s", self.table, self.settings.conn_id, type(exc).__name__
            )
            raise LedgerUnavailable(
                f"the ledger table {self.table} does not exist yet in connection {self.settings.conn_id!r}: "
                "reversal tasks create it on their first run",
                missing=True,
            ) from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One read-only session; keep the block to queries (a DuckDB file is held until it ends)."""
        with read_only_session(self.settings.conn_id) as session:
            self._check_table(session)
            try:
                yield session
            except LedgerUnavailable:
                raise
            except Exception as exc:
                if is_lock_error(exc):
                    raise LedgerUnavailable(
                        f"the ledger (file of connection {self.settings.conn_id!r}) is being written by a task; "
                        "the page gives way to writers: reload in a moment",
                        busy=True,
                    ) from None
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
        session: Session | None = None,
    ) -> Summary:
        """Per day and vendor counts, top failure codes and recent runs over the last ``days`` days.

        Intent rows (``sending``) are not outcomes: they only count as items in doubt.

        :param days: window length, today included.
        :param vendor: only this vendor.
        :param skipped: items skipped as already done, per ``(day, vendor)``, from the task summaries
            (``None``: not known), already limited to the readable DAGs.
        :param session: an open session of :meth:`session` (default: one of its own).
        """
        since, until = self.window(days)
        if session is None and self.scope.nothing:
            daily_rows: list[tuple[Any, ...]] = []
            failure_rows: list[tuple[Any, ...]] = []
            run_rows: list[tuple[Any, ...]] = []
            doubt_rows: list[tuple[Any, ...]] = []
        elif session is None:
            with self.session() as own:
                daily_rows, failure_rows, run_rows, doubt_rows = self._summary_rows(own, since, vendor)
        else:
            daily_rows, failure_rows, run_rows, doubt_rows = self._summary_rows(session, since, vendor)

        daily = _daily(daily_rows, skipped, first_day=since.date(), vendor=vendor)
        runs = self._runs(run_rows, doubt_rows, since)
        return Summary(
            ledger=LedgerRef(conn_id=self.settings.conn_id, table=self.table),
            days=days,
            since=since.replace(tzinfo=timezone.utc),
            until=until.replace(tzinfo=timezone.utc),
            vendor=vendor,
            daily=daily,
            totals=_totals(daily, doubt_rows),
            top_failures=[_failure_group(row) for row in failure_rows],
            runs=runs[:RECENT_RUNS],
            skipped_available=skipped is not None,
        )

    def _summary_rows(self, session: Session, since: datetime, vendor: str | None) -> tuple[list[tuple[Any, ...]], ...]:
        t = self.table
        where = _Where(session.placeholder).add("recorded_at >= {p}", self._time_param(session, since))
        if vendor:
            where.add("vendor = {p}", vendor)
        where.dags(self.scope)
        outcomes = where.sql() + " AND status <> 'sending'"
        day = self._day_sql(session)
        reconciled = f"CASE WHEN status = 'succeeded' AND code = '{RECONCILED_CODE}' THEN 1 ELSE 0 END"
        daily_rows = session.fetch(
            f"SELECT {day}, vendor, status, failure_kind, {reconciled}, COUNT(*) FROM {t}{outcomes} "
            f"GROUP BY {day}, vendor, status, failure_kind, {reconciled}",
            where.params,
        )
        failure_rows = session.fetch(
            "SELECT vendor, code, failure_kind, COUNT(*) AS outcomes, COUNT(DISTINCT item_key), "
            f"COUNT(DISTINCT message), MAX(message), MAX(recorded_at) FROM {t}{where.sql()} AND status = 'failed' "
            f"GROUP BY vendor, code, failure_kind ORDER BY outcomes DESC, vendor, code LIMIT {int(TOP_FAILURES)}",
            where.params,
        )
        run_rows = session.fetch(
            f"SELECT dag_id, run_id, vendor, status, failure_kind, {reconciled}, COUNT(*), MIN(recorded_at), "
            f"MAX(recorded_at) FROM {t}{outcomes} GROUP BY dag_id, run_id, vendor, status, failure_kind, {reconciled}",
            where.params,
        )
        doubt = _Where(session.placeholder).add(in_doubt_condition("l", t))
        if vendor:
            doubt.add("l.vendor = {p}", vendor)
        doubt.dags(self.scope, "l.dag_id")
        doubt_rows = session.fetch(
            "SELECT l.vendor, l.dag_id, l.run_id, COUNT(DISTINCT l.item_key), MIN(l.recorded_at), MAX(l.recorded_at) "
            f"FROM {t} l{doubt.sql()} GROUP BY l.vendor, l.dag_id, l.run_id",
            doubt.params,
        )
        return daily_rows, failure_rows, run_rows, doubt_rows

    def _runs(self, rows: list[tuple[Any, ...]], doubt_rows: list[tuple[Any, ...]], since: datetime) -> list[RunCounts]:
        """Per DAG run counts (outcomes, then the in-doubt items of runs in the window), newest first."""
        runs: dict[tuple[str | None, str | None], RunCounts] = {}

        def run_of(dag_id: Any, run_id: Any, vendor: Any, first: Any, last: Any) -> RunCounts:
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
            if str(vendor) not in run.vendors:
                run.vendors = sorted([*run.vendors, str(vendor)])
            return run

        for dag_id, run_id, row_vendor, status, kind, reconciled, n, first, last in rows:
            _add(run_of(dag_id, run_id, row_vendor, first, last), str(status), kind, bool(reconciled), int(n))
        window_start = since.replace(tzinfo=timezone.utc)
        for row_vendor, dag_id, run_id, n, first, last in doubt_rows:
            if _as_datetime(last) >= window_start:
                run_of(dag_id, run_id, row_vendor, first, last).in_doubt += int(n)
        return sorted(runs.values(), key=lambda r: r.last_recorded_at, reverse=True)

    # ------------------------------------------------------------------------------ search
    def items(
        self,
        *,
        query: str = "",
        vendor: str | None = None,
        status: str | None = None,
        code: str = "",
        days: int = 30,
        limit: int = 25,
        offset: int = 0,
        session: Session | None = None,
    ) -> ItemsPage:
        """Items matching ``query`` (an id of any kind, an item key or a run id), newest activity first.

        With a query, the whole ledger is searched ("was it ever reversed?"); without one, the items
        with activity in the last ``days`` days are listed.

        :param query: unique_id, customer_id, earn_id, promotion_id, item key or run_id; exact match.
        :param vendor: only this vendor.
        :param status: only items with an attempt of this status (``succeeded``, ``failed``), or
            ``in_doubt``: items whose latest row is an intent.
        :param code: only items with an attempt of this code (a failure code, ``already_reversed``).
        :param days: window of the listing without a query.
        :param limit: page size.
        :param offset: items to skip.
        :param session: an open session of :meth:`session` (default: one of its own).
        """
        query = check_query(query)
        code = check_code(code)
        since = None if query else self.window(days)[0]
        if session is None:
            if self.scope.nothing:
                return self._page(query, vendor, status, code, since, 0, limit, offset, [], {})
            with self.session() as own:
                return self.items(
                    query=query, vendor=vendor, status=status, code=code, days=days, limit=limit, offset=offset,
                    session=own,
                )  # fmt: skip
        where = self._items_where(session, query, vendor, status, code, since)
        total = int(
            session.fetch(
                f"SELECT COUNT(*) FROM (SELECT l.vendor, l.item_key FROM {self.table} l{where.sql()} "
                "GROUP BY l.vendor, l.item_key) matched",
                where.params,
            )[0][0]
        )
        p = session.placeholder
        keys = session.fetch(
            f"SELECT l.vendor, l.item_key, MAX(l.recorded_at) AS last_at FROM {self.table} l{where.sql()} "
            f"GROUP BY l.vendor, l.item_key ORDER BY last_at DESC, l.vendor, l.item_key LIMIT {p} OFFSET {p}",
            [*where.params, int(limit), int(offset)],
        )
        wanted = [(str(v), str(k)) for v, k, _ in keys]
        histories = self._histories(session, wanted)
        return self._page(query, vendor, status, code, since, total, limit, offset, wanted, histories)

    def iter_items(
        self,
        *,
        query: str = "",
        vendor: str | None = None,
        status: str | None = None,
        code: str = "",
        days: int = 30,
        batch: int = 500,
        max_items: int = 100_000,
    ) -> Iterator[ItemHistory]:
        """Every item of a search, newest activity first, one short session per ``batch`` (for exports).

        Each batch opens and closes the ledger, so a long export never holds a DuckDB file for long.
        """
        offset = 0
        while offset < max_items:
            page = self.items(
                query=query, vendor=vendor, status=status, code=code, days=days,
                limit=min(batch, max_items - offset), offset=offset,
            )  # fmt: skip
            yield from page.items
            offset += len(page.items)
            if len(page.items) < page.limit or offset >= page.total:
                return

    def _page(
        self,
        query: str,
        vendor: str | None,
        status: str | None,
        code: str,
        since: datetime | None,
        total: int,
        limit: int,
        offset: int,
        wanted: list[tuple[str, str]],
        histories: dict[tuple[str, str], ItemHistory],
    ) -> ItemsPage:
        return ItemsPage(
            query=query,
            vendor=vendor,
            status=status,
            code=code or None,
            since=since.replace(tzinfo=timezone.utc) if since else None,
            total=total,
            limit=limit,
            offset=offset,
            items=[histories[key] for key in wanted if key in histories],
        )

    def _items_where(
        self,
        session: Session,
        query: str,
        vendor: str | None,
        status: str | None,
        code: str,
        since: datetime | None,
    ) -> _Where:
        where = _Where(session.placeholder)
        if query:
            matches = ["l.item_key = {p}", "l.earn_id = {p}", "l.promotion_id = {p}", "l.run_id = {p}"]
            params: list[Any] = [query] * len(matches)
            if _DIGITS.fullmatch(query) and int(query) <= _BIGINT_MAX:
                matches += ["l.unique_id = {p}", "l.customer_id = {p}"]
                params += [int(query), int(query)]
            where.add("(" + " OR ".join(matches) + ")", *params)
        if since is not None:
            where.add("l.recorded_at >= {p}", self._time_param(session, since))
        if vendor:
            where.add("l.vendor = {p}", vendor)
        if status == "in_doubt":
            where.add(in_doubt_condition("l", self.table))
        elif status:
            where.add("l.status = {p}", status)
        if code:
            where.add("l.code = {p}", code)
        return where.dags(self.scope, "l.dag_id")

    def _histories(self, session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], ItemHistory]:
        by_vendor: dict[str, list[str]] = {}
        for vendor, key in keys:
            by_vendor.setdefault(vendor, []).append(key)
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for vendor, item_keys in by_vendor.items():
            where = _Where(session.placeholder).add("vendor = {p}", vendor)
            where.add(f"item_key IN ({', '.join(['{p}'] * len(item_keys))})", *item_keys).dags(self.scope)
            for values in session.fetch(
                f"SELECT {', '.join(_ROW_COLUMNS)} FROM {self.table}{where.sql()} ORDER BY recorded_at DESC",
                where.params,
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
                in_doubt=first_success is None and _latest(attempts).status == "sending",
                last=attempts[0],
                attempt_count=len(attempts),
                attempts=attempts[:MAX_ATTEMPTS_SHOWN],
            )
        return histories


def _latest(attempts: list[Attempt]) -> Attempt:
    """The item's latest row; at the same instant an answer counts as later than its intent."""
    newest = attempts[0].recorded_at
    tied = [a for a in attempts if a.recorded_at == newest]
    return next((a for a in tied if a.status != "sending"), tied[0])


def _daily(
    rows: list[tuple[Any, ...]],
    skipped: dict[tuple[date, str], int] | None,
    *,
    first_day: date,
    vendor: str | None,
) -> list[DayCounts]:
    """Per day and vendor counts from ``(day, vendor, status, kind, reconciled, n)`` rows plus the skipped counts."""
    counts: dict[tuple[date, str], DayCounts] = {}
    for day_value, row_vendor, status, kind, reconciled, n in rows:
        key = (_as_date(day_value), str(row_vendor))
        entry = counts.setdefault(key, DayCounts(day=key[0], vendor=key[1]))
        _add(entry, str(status), kind, bool(reconciled), int(n))
    if skipped is not None:
        for (day, skip_vendor), n in skipped.items():
            if day >= first_day and (not vendor or skip_vendor == vendor):
                entry = counts.setdefault((day, skip_vendor), DayCounts(day=day, vendor=skip_vendor))
                entry.skipped = (entry.skipped or 0) + n
        for entry in counts.values():
            entry.skipped = entry.skipped or 0
    return sorted(counts.values(), key=lambda c: (c.day, c.vendor), reverse=True)


_OUTCOME_FIELDS = tuple(Outcomes.model_fields)


def _totals(daily: list[DayCounts], doubt_rows: list[tuple[Any, ...]]) -> list[VendorTotals]:
    """The window's totals per vendor (Xoxoday, then Capillary), with the items in doubt now."""
    totals: dict[str, VendorTotals] = {}
    for entry in daily:
        total = totals.setdefault(entry.vendor, VendorTotals(vendor=entry.vendor))
        for name in _OUTCOME_FIELDS:
            setattr(total, name, getattr(total, name) + getattr(entry, name))
        if entry.skipped is not None:
            total.skipped = (total.skipped or 0) + entry.skipped
    for row_vendor, _dag_id, _run_id, n, _first, _last in doubt_rows:
        totals.setdefault(str(row_vendor), VendorTotals(vendor=str(row_vendor))).in_doubt += int(n)
    if daily and all(entry.skipped is not None for entry in daily):
        for total in totals.values():
            total.skipped = total.skipped or 0
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


def _add(target: Outcomes, status: str, failure_kind: Any, reconciled: bool, n: int) -> None:
    if status == "succeeded":
        target.succeeded += n
        if reconciled:
            target.reconciled += n
    elif status != "failed":
        return  # an intent (or a status this page does not know): not an outcome
    elif failure_kind == "permanent":
        target.failed_permanent += n
    elif failure_kind == "rejected":
        target.failed_rejected += n
    else:
        target.failed_transient += n
