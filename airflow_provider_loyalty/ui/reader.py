"""Read the reversal ledger for the Reversals page: read-only, one connection per request.

:class:`LedgerReader` is what the app calls. :mod:`.settings` says where the ledger is,
:mod:`.connections` opens it read-only, :mod:`.queries` holds the SQL, :mod:`.aggregate` makes the
rows into the answers of :mod:`.models`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.ledger import check_table_name
from airflow_provider_loyalty.ui import aggregate, queries
from airflow_provider_loyalty.ui.auth import DagScope
from airflow_provider_loyalty.ui.connections import Session, is_lock_error, read_only_session
from airflow_provider_loyalty.ui.models import ItemHistory, ItemsPage, LedgerRef, Summary
from airflow_provider_loyalty.ui.settings import LedgerSettings, LedgerUnavailable

log = logging.getLogger(__name__)

#: Rows of "recent runs".
RECENT_RUNS = 20


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
        self.links = aggregate.AirflowLinks(airflow_root.rstrip("/"))
        self.now = now

    def window(self, days: int) -> tuple[datetime, datetime]:
        """Return the naive-UTC start of the first day of a ``days``-day window ending today, and now."""
        now = self.now().astimezone(timezone.utc).replace(tzinfo=None)
        first = now.date() - timedelta(days=days - 1)
        return datetime.combine(first, time.min), now

    # ----------------------------------------------------------------------------- session
    def _busy(self) -> LedgerUnavailable:
        return LedgerUnavailable(
            f"the ledger (file of connection {self.settings.conn_id!r}) is being written by a task; "
            "the page gives way to writers: reload in a moment",
            busy=True,
        )

    def _check_table(self, session: Session) -> None:
        try:
            queries.probe_table(session, self.table)
        except Exception as exc:
            if is_lock_error(exc):
                raise self._busy() from None
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
                    raise self._busy() from None
                log.exception("Reading the ledger %s through %r failed", self.table, self.settings.conn_id)
                raise LedgerUnavailable(
                    f"reading the ledger table {self.table} through connection {self.settings.conn_id!r} failed "
                    f"({type(exc).__name__}; details in the api-server log)"
                ) from None

    # ----------------------------------------------------------------------------- selection
    def selection(
        self,
        session: Session,
        *,
        query: str = "",
        vendor: str | None = None,
        status: str | None = None,
        code: str = "",
        reference: str = "",
        since: datetime | None = None,
    ) -> queries.Selection:
        """The checked filters as the queries take them (an older table without ``reference`` is read as is)."""
        columns = set(queries.table_columns(session, self.table))
        return queries.Selection(
            query=queries.check_query(query),
            vendor=vendor,
            state=status,
            code=queries.check_code(code),
            reference=queries.check_query(reference),
            since=since,
            has_reference="reference" in columns,
            has_approval=set(queries.APPROVAL_COLUMNS) <= columns,
            id_columns=tuple(c for c in vendors.identity_columns() if c.name in columns),
        )

    # ----------------------------------------------------------------------------- summary
    def summary(
        self,
        *,
        days: int = 30,
        vendor: str | None = None,
        status: str | None = None,
        code: str = "",
        reference: str = "",
        query: str = "",
        skipped: dict[tuple[date, str], int] | None = None,
        session: Session | None = None,
    ) -> Summary:
        """The items with activity in the last ``days`` days that the filters select, each once, by state now.

        Per day (the day of the item's first row in the window) and vendor, the totals, the top failure
        codes and the recent runs are all counted over that one set of items.

        :param days: window length, today included.
        :param vendor: only this vendor.
        :param status: only items in this state now.
        :param code: only items with a row of this code.
        :param reference: only items whose reference starts with this.
        :param query: only items a search finds (see :meth:`items`).
        :param skipped: items skipped as already done, per ``(day, vendor)``, from the task summaries
            (``None``: not known), already limited to the readable DAGs.
        :param session: an open session of :meth:`session` (default: one of its own).
        """
        since, until = self.window(days)
        claimed: list[tuple[object, ...]] = []
        if session is None and self.scope.nothing:
            rows = queries.NO_SUMMARY_ROWS
        elif session is None:
            with self.session() as own:
                return self.summary(
                    days=days, vendor=vendor, status=status, code=code, reference=reference, query=query,
                    skipped=skipped, session=own,
                )  # fmt: skip
        else:
            selection = self.selection(
                session, query=query, vendor=vendor, status=status, code=code, reference=reference, since=since
            )
            rows = queries.summary_rows(session, self.table, self.scope, selection)
            claimed = queries.claimed_rows(session, self.table, self.scope, until, vendor)
        filtered = bool(status or code or reference or query)
        if filtered:
            skipped = None  # the task summaries count skips per day, not per item: no filter applies to them
        daily = aggregate.daily(rows.daily, skipped, first_day=since.date(), vendor=vendor)
        runs = aggregate.runs(rows.runs, self.links, rows.approvals)[:RECENT_RUNS]
        tasks = aggregate.task_ids(rows.tasks)
        for run in runs:
            run.tasks = {task: "" for task in sorted(tasks.get((str(run.dag_id), str(run.run_id)), ()))} or None
        return Summary(
            ledger=LedgerRef(conn_id=self.settings.conn_id, table=self.table),
            days=days,
            since=since.replace(tzinfo=timezone.utc),
            until=until.replace(tzinfo=timezone.utc),
            vendor=vendor,
            status=status,
            code=code or None,
            reference=reference or None,
            query=query or None,
            daily=daily,
            totals=aggregate.totals(daily),
            top_failures=[aggregate.failure_group(row) for row in rows.failures],
            runs=runs,
            skipped_available=skipped is not None,
            claimed=[aggregate.claimed_item(row) for row in claimed],
        )

    # ------------------------------------------------------------------------------ search
    def items(
        self,
        *,
        query: str = "",
        vendor: str | None = None,
        status: str | None = None,
        code: str = "",
        reference: str = "",
        days: int = 30,
        limit: int = 25,
        offset: int = 0,
        session: Session | None = None,
    ) -> ItemsPage:
        """Items matching the filters, newest activity first, each with its state now and its history.

        With a query, the whole ledger is searched ("was it ever reversed?"); without one, the items
        with activity in the last ``days`` days are listed.

        :param query: any identity column of an item (:mod:`airflow_provider_loyalty.vendors`) or its
            item key (exact); a run id or a reference (exact, or by prefix from three characters); an
            invalid input value.
        :param vendor: only this vendor.
        :param status: only items in this state now (``ledger.state``).
        :param code: only items with a row of this code (a failure code, ``already_reversed``, ``invalid``).
        :param reference: only items whose reference starts with this.
        :param days: window of the listing without a query.
        :param limit: page size.
        :param offset: items to skip.
        :param session: an open session of :meth:`session` (default: one of its own).
        """
        query = queries.check_query(query)
        code = queries.check_code(code)
        since = None if query else self.window(days)[0]
        if session is None:
            if self.scope.nothing:
                return self._page(query, vendor, status, code, reference, since, 0, limit, offset, [], {})
            with self.session() as own:
                return self.items(
                    query=query, vendor=vendor, status=status, code=code, reference=reference, days=days,
                    limit=limit, offset=offset, session=own,
                )  # fmt: skip
        selection = self.selection(
            session, query=query, vendor=vendor, status=status, code=code, reference=reference, since=since
        )
        total, wanted = queries.matching_items(session, self.table, self.scope, selection, limit=limit, offset=offset)
        keys = [(v, k) for v, k, _ in wanted]
        states = {(v, k): state for v, k, state in wanted}
        histories = aggregate.histories(queries.item_rows(session, self.table, self.scope, keys), states, self.links)
        return self._page(query, vendor, status, code, reference, since, total, limit, offset, keys, histories)

    def iter_items(
        self,
        *,
        query: str = "",
        vendor: str | None = None,
        status: str | None = None,
        code: str = "",
        reference: str = "",
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
                query=query, vendor=vendor, status=status, code=code, reference=reference, days=days,
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
        reference: str,
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
            reference=reference or None,
            since=since.replace(tzinfo=timezone.utc) if since else None,
            total=total,
            limit=limit,
            offset=offset,
            items=[histories[key] for key in wanted if key in histories],
        )
