"""The page's JSON and CSV answers (``/api/...``): the same numbers and items the page shows.

* ``GET /api/summary?days=30&vendor=`` — per day and vendor counts, top failures, recent runs.
* ``GET /api/items?q=&vendor=&status=&code=&days=30&limit=25&offset=0`` — search by item.
* ``GET /api/items.csv?q=&vendor=&status=&code=&days=30`` — the same items as CSV (streamed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from airflow_provider_loyalty.ui import export
from airflow_provider_loyalty.ui.auth import DagScope, PageDependencies
from airflow_provider_loyalty.ui.filters import FILTERS, Filters
from airflow_provider_loyalty.ui.models import ItemsPage, Summary
from airflow_provider_loyalty.ui.settings import LedgerUnavailable
from airflow_provider_loyalty.ui.sources import Sources, unavailable

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


def api_router(sources: Sources, allowed: PageDependencies) -> APIRouter:
    """The ``/api`` routes over ``sources``, for users ``allowed`` lets in."""
    router = APIRouter(prefix="/api")

    @router.get("/summary", response_model=Summary)
    def api_summary(request: Request, scope: DagScope = allowed.scope, filters: Filters = FILTERS) -> Any:
        """Per day and vendor counts, top failure codes and recent runs over the window."""
        try:
            ledger = sources.reader(request, scope)
            since, _ = ledger.window(filters.days)
            args = filters.kwargs()
            args.pop("days")
            summary = ledger.summary(days=filters.days, skipped=sources.skipped(since, scope), **args)
            sources.add_task_states(summary)
            return summary
        except LedgerUnavailable as exc:
            return unavailable(exc)

    @router.get("/items", response_model=ItemsPage)
    def api_items(
        request: Request,
        scope: DagScope = allowed.scope,
        filters: Filters = FILTERS,
        limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
        offset: int = Query(0, ge=0, le=1_000_000),
    ) -> Any:
        """Items matching ``q`` (all time), or the window's items when ``q`` is empty; paginated."""
        try:
            return sources.reader(request, scope).items(limit=limit, offset=offset, **filters.kwargs())
        except LedgerUnavailable as exc:
            return unavailable(exc)

    @router.get("/items.csv", response_class=StreamingResponse)
    def api_items_csv(request: Request, scope: DagScope = allowed.scope, filters: Filters = FILTERS) -> Response:
        """The items of a search as CSV, newest activity first (same filters as ``/api/items``).

        Streamed in batches, each read in its own short read-only session: an export never holds a
        DuckDB ledger for long. The first batch is read before answering, so an unreadable ledger
        still answers 503.
        """
        items = sources.reader(request, scope).iter_items(max_items=export.MAX_EXPORT_ITEMS, **filters.kwargs())
        try:
            first = next(items, None)
        except LedgerUnavailable as exc:
            return unavailable(exc)

        def lines() -> Iterator[str]:
            yield export.header()
            if first is None:
                return
            yield export.line(first)
            try:
                for item in items:
                    yield export.line(item)
            except LedgerUnavailable as exc:  # mid-export: say so in the file rather than cut it silently
                yield export.stopped(exc.reason)

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="reversal-items.csv"'},
        )

    return router
