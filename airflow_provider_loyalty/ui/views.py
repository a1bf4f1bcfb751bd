"""The Reversals page itself (``/reversals``, HTML) and its static files (``/static/<file>``)."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from airflow_provider_loyalty import __version__, vendors
from airflow_provider_loyalty.ui.api import PAGE_SIZE
from airflow_provider_loyalty.ui.auth import DagScope, PageDependencies
from airflow_provider_loyalty.ui.chart import SERIES, day_bars, render_svg, with_data
from airflow_provider_loyalty.ui.filters import FILTERS, WINDOWS, Filters
from airflow_provider_loyalty.ui.queries import ITEM_STATUSES
from airflow_provider_loyalty.ui.settings import LedgerUnavailable
from airflow_provider_loyalty.ui.sources import Sources

if TYPE_CHECKING:
    from jinja2 import Environment

#: Files under ``static/`` the app serves, with their media types.
STATIC_FILES = {
    "reversals.css": "text/css; charset=utf-8",
    "reversals.js": "text/javascript; charset=utf-8",
    "reversals-icon.svg": "image/svg+xml",
}


def templates() -> Environment:
    """The page's Jinja templates (autoescaped), with the ``when`` and ``num`` filters."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("airflow_provider_loyalty.ui", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S") if value else ""
    env.filters["num"] = lambda value: "–" if value is None else f"{value:,}"
    return env


def page_router(sources: Sources, allowed: PageDependencies, env: Environment) -> APIRouter:
    """The page's routes over ``sources``, for users ``allowed`` lets in, rendered with ``env``."""
    router = APIRouter()

    @router.get("/", include_in_schema=False, dependencies=[allowed.user])
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/reversals", status_code=307)

    @router.get("/reversals", response_class=HTMLResponse, include_in_schema=False)
    def page(
        request: Request,
        scope: DagScope = allowed.scope,
        filters: Filters = FILTERS,
        page: int = Query(1, ge=1, le=10_000),
    ) -> HTMLResponse:
        """The Reversals page."""
        context = _context(str(request.scope.get("root_path", "")), filters, page)
        status_code = 200
        try:
            ledger = sources.reader(request, scope)
            context["ledger"] = ledger.settings
            since, until = ledger.window(filters.days)
            counts = sources.skipped(since, scope)  # from the metadata DB: before the ledger is opened
            # One short read-only session for both (the summary's and the items' queries).
            args = filters.kwargs()
            with ledger.session() as session:
                summary = ledger.summary(
                    skipped=counts, session=session, **{k: v for k, v in args.items() if k != "days"}, days=filters.days
                )
                context["items"] = ledger.items(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, session=session, **args)
            sources.add_task_states(summary)  # Airflow's metadata: after the ledger is closed
            context["summary"] = summary
            context["chart"] = render_svg(with_data(day_bars(since.date(), until.date(), summary.daily)))
        except LedgerUnavailable as exc:
            context["error"] = exc
            status_code = 503
        html = env.get_template("reversals.html").render(**context)
        headers = {"Retry-After": "5"} if context["error"] is not None and context["error"].busy else None
        return HTMLResponse(html, status_code=status_code, headers=headers)

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        """The page's own assets (an allow-list: no path ever reaches the file system)."""
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail="Not found")
        body = resources.files("airflow_provider_loyalty.ui").joinpath("static", name).read_bytes()
        return Response(body, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})

    return router


def _context(base: str, filters: Filters, page: int) -> dict[str, Any]:
    """The template's context before the ledger is read: the filters, and the links that keep them."""
    shown = {
        "q": filters.query,
        "vendor": filters.vendor or "",
        "status": filters.status or "",
        "code": filters.code,
        "days": filters.days,
        "reference": filters.reference,
    }
    kept = filters.params()
    return {
        "base": base,
        "version": __version__,
        "ledger": None,
        "filters": shown,
        "windows": sorted({*WINDOWS, filters.days}),
        "vendors": [s.name for s in vendors.all_specs()],
        "id_columns": {s.name: s.identity for s in vendors.all_specs()},
        "series": SERIES,
        "error": None,
        "summary": None,
        "items": None,
        "chart": "",
        "json_summary": f"{base}/api/summary?" + urlencode(kept),
        "states": ITEM_STATUSES,
        "json_items": f"{base}/api/items?" + urlencode(kept | {"offset": (page - 1) * PAGE_SIZE}),
        "csv_items": f"{base}/api/items.csv?" + urlencode(kept),
        "code_url": lambda vendor_name, failure_code: (
            f"{base}/reversals?" + urlencode(filters.params(vendor=vendor_name, code=failure_code))
        ),
        "state_url": lambda state: f"{base}/reversals?" + urlencode(filters.params(status=state)),
        "page": page,
        "page_url": lambda target: f"{base}/reversals?" + urlencode({**kept, "page": target}),
    }
