"""The Reversals FastAPI app, mounted by the plugin under ``/loyalty`` in Airflow's api-server.

A plugin's sub-app is not protected by Airflow, so the app asks Airflow's auth manager itself
(:mod:`.auth`): every route needs an authenticated user (anonymous: 401); the page and its API also
need the right to view the plugin's view (``is_authorized_custom_view``, resource
``Loyalty Reversals``; 403 without it), and show only ledger rows of DAGs the user may read.

* ``GET /loyalty/reversals`` — the page shown in the UI (Browse → Reversals).
* ``GET /loyalty/api/summary?days=30&vendor=`` — per day and vendor counts, top failures, recent runs.
* ``GET /loyalty/api/items?q=&vendor=&status=&code=&days=30&limit=25&offset=0`` — search by item.
* ``GET /loyalty/api/items.csv?q=&vendor=&status=&code=&days=30`` — the same items as CSV (streamed).
* ``GET /loyalty/static/<file>`` — the page's stylesheet, script and icon (authenticated users).

Airflow authenticates the request either with the UI's ``_token`` cookie (the page, in the UI's
iframe) or with ``Authorization: Bearer <jwt>`` (scripts; ``POST /auth/token`` issues one).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator
from datetime import date, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_loyalty import __version__
from airflow_provider_loyalty.ledger.schema import VENDORS
from airflow_provider_loyalty.ui.auth import DagScope, page_dependencies
from airflow_provider_loyalty.ui.chart import SERIES, day_bars, render_svg
from airflow_provider_loyalty.ui.models import ItemHistory, ItemsPage, Summary
from airflow_provider_loyalty.ui.queries import ITEM_STATUSES, MAX_CODE_CHARS, MAX_QUERY_CHARS, check_code, check_query
from airflow_provider_loyalty.ui.reader import LedgerReader
from airflow_provider_loyalty.ui.settings import LedgerSettings, LedgerUnavailable

if TYPE_CHECKING:
    from jinja2 import Environment

log = logging.getLogger(__name__)

#: Where the plugin mounts the app (the plugin module repeats it so that importing it stays cheap).
URL_PREFIX = "/loyalty"
PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
MAX_DAYS = 366
WINDOWS = (7, 14, 30, 90)
#: Files under ``static/`` the app serves, with their media types.
STATIC_FILES = {
    "reversals.css": "text/css; charset=utf-8",
    "reversals.js": "text/javascript; charset=utf-8",
    "reversals-icon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

#: Items a CSV export holds at most (read in batches, each a short read-only session).
MAX_EXPORT_ITEMS = 100_000
CSV_COLUMNS = (
    "vendor",
    "item_key",
    "unique_id",
    "customer_id",
    "promotion_id",
    "earn_id",
    "reversed",
    "reversed_at",
    "in_doubt",
    "last_status",
    "last_failure_kind",
    "last_code",
    "last_message",
    "last_recorded_at",
    "last_dag_id",
    "last_run_id",
    "attempts",
)

#: ``(since, dag_ids) -> {(day, vendor): skipped}``; ``dag_ids`` ``None`` means every DAG.
SkippedSource = Callable[[datetime, frozenset[str] | None], dict[tuple[date, str], int]]
SettingsSource = Callable[[], LedgerSettings]


def _default_skipped(since: datetime, dag_ids: frozenset[str] | None) -> dict[tuple[date, str], int]:
    from airflow_provider_loyalty.ui.summaries import skipped_from_task_summaries

    return skipped_from_task_summaries(since, dag_ids)


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str | None:
    """An optional filter from a query string: ``""`` means all; anything else must be allowed."""
    value = value.strip()
    if not value:
        return None
    if value not in allowed:
        raise HTTPException(status_code=422, detail=f"{name} must be one of {', '.join(allowed)} (or empty)")
    return value


def _checked_query(q: str) -> str:
    try:
        return check_query(q)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"q: {exc}") from None


def _checked_code(code: str) -> str:
    try:
        return check_code(code)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"code: {exc}") from None


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else _csv_safe(v) for v in values])
    return out.getvalue()


def _csv_safe(value: Any) -> Any:
    """Ledger text opened in a spreadsheet must not run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _csv_row(item: ItemHistory) -> list[Any]:
    last = item.last
    return [
        item.vendor,
        item.item_key,
        item.unique_id,
        item.customer_id,
        item.promotion_id,
        item.earn_id,
        "yes" if item.reversed else "no",
        item.reversed_at,
        "yes" if item.in_doubt else "no",
        last.status,
        last.failure_kind,
        last.code,
        last.message,
        last.recorded_at,
        last.dag_id,
        last.run_id,
        item.attempt_count,
    ]


def _unavailable(exc: LedgerUnavailable) -> JSONResponse:
    headers = {"Retry-After": "5"} if exc.busy else {}
    return JSONResponse(
        status_code=503,
        content={"detail": exc.reason, "busy": exc.busy, "missing": exc.missing},
        headers=headers,
    )


def _templates() -> Environment:
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


def create_app(
    *,
    settings: SettingsSource | None = None,
    skipped_source: SkippedSource | None = _default_skipped,
) -> FastAPI:
    """Build the app.

    :param settings: where the ledger is; default: ``[loyalty] ledger_conn_id`` / ``ledger_table``,
        read on every request.
    :param skipped_source: ``since -> {(day, vendor): skipped}`` from the task summaries; ``None``
        leaves the skipped column unknown. Default: Airflow's metadata database.
    """
    from airflow.api_fastapi.core_api.security import requires_authenticated

    read_settings: SettingsSource = settings or LedgerSettings.from_config
    allowed = page_dependencies()
    app = FastAPI(
        title="Loyalty reversals",
        version=__version__,
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    templates = _templates()

    def reader(request: Request, scope: DagScope) -> LedgerReader:
        airflow_root = str(request.scope.get("app_root_path", "") or "")
        return LedgerReader(read_settings(), scope=scope, airflow_root=airflow_root)

    def skipped(since: datetime, scope: DagScope) -> dict[tuple[date, str], int] | None:
        if skipped_source is None:
            return None
        if scope.nothing:
            return {}
        try:
            return skipped_source(since, None if scope.every_dag else scope.dag_ids)
        except Exception:
            log.warning("Skipped counts unavailable (task summaries could not be read)", exc_info=True)
            return None

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith(f"{request.scope.get('root_path', '')}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_errors(request: Request, exc: StarletteHTTPException) -> Response:
        """JSON as FastAPI answers it; for a person's browser, a 401 page with a way to log in."""
        headers = getattr(exc, "headers", None) or {}
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(
                templates.get_template("unauthorized.html").render(login_url=_login_url(request)),
                status_code=401,
                headers=headers,
            )
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.get("/", include_in_schema=False, dependencies=[allowed.user])
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/reversals", status_code=307)

    @app.get("/api/summary", response_model=Summary)
    def api_summary(
        request: Request,
        scope: DagScope = allowed.scope,
        days: int = Query(30, ge=1, le=MAX_DAYS, description="window length in days, today included"),
        vendor: str = Query("", max_length=16, description="xoxoday, capillary, or empty for both"),
    ) -> Any:
        """Per day and vendor counts, top failure codes and recent runs over the window."""
        chosen_vendor = _choice(vendor, VENDORS, "vendor")
        try:
            ledger = reader(request, scope)
            since, _ = ledger.window(days)
            return ledger.summary(days=days, vendor=chosen_vendor, skipped=skipped(since, scope))
        except LedgerUnavailable as exc:
            return _unavailable(exc)

    @app.get("/api/items", response_model=ItemsPage)
    def api_items(
        request: Request,
        scope: DagScope = allowed.scope,
        q: str = Query(
            "", max_length=MAX_QUERY_CHARS, description="unique_id, customer id, earn id, item key or run id"
        ),
        vendor: str = Query("", max_length=16),
        status: str = Query("", max_length=16, description="succeeded or failed: items with such an attempt; in_doubt"),
        code: str = Query("", max_length=MAX_CODE_CHARS, description="items with an attempt of this code"),
        days: int = Query(30, ge=1, le=MAX_DAYS, description="window of the listing when q is empty"),
        limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
        offset: int = Query(0, ge=0, le=1_000_000),
    ) -> Any:
        """Items matching ``q`` (all time), or the window's items when ``q`` is empty; paginated."""
        query = _checked_query(q)
        chosen_code = _checked_code(code)
        chosen_vendor = _choice(vendor, VENDORS, "vendor")
        chosen_status = _choice(status, ITEM_STATUSES, "status")
        try:
            return reader(request, scope).items(
                query=query,
                vendor=chosen_vendor,
                status=chosen_status,
                code=chosen_code,
                days=days,
                limit=limit,
                offset=offset,
            )
        except LedgerUnavailable as exc:
            return _unavailable(exc)

    @app.get("/api/items.csv", response_class=StreamingResponse)
    def api_items_csv(
        request: Request,
        scope: DagScope = allowed.scope,
        q: str = Query("", max_length=MAX_QUERY_CHARS),
        vendor: str = Query("", max_length=16),
        status: str = Query("", max_length=16),
        code: str = Query("", max_length=MAX_CODE_CHARS),
        days: int = Query(30, ge=1, le=MAX_DAYS),
    ) -> Response:
        """The items of a search as CSV, newest activity first (same filters as ``/api/items``).

        Streamed in batches, each read in its own short read-only session: an export never holds a
        DuckDB ledger for long. The first batch is read before answering, so an unreadable ledger
        still answers 503.
        """
        query = _checked_query(q)
        chosen_code = _checked_code(code)
        chosen_vendor = _choice(vendor, VENDORS, "vendor")
        chosen_status = _choice(status, ITEM_STATUSES, "status")
        items = reader(request, scope).iter_items(
            query=query,
            vendor=chosen_vendor,
            status=chosen_status,
            code=chosen_code,
            days=days,
            max_items=MAX_EXPORT_ITEMS,
        )
        try:
            first = next(items, None)
        except LedgerUnavailable as exc:
            return _unavailable(exc)

        def lines() -> Iterator[str]:
            yield _csv_line(list(CSV_COLUMNS))
            if first is None:
                return
            yield _csv_line(_csv_row(first))
            try:
                for item in items:
                    yield _csv_line(_csv_row(item))
            except LedgerUnavailable as exc:  # mid-export: say so in the file rather than cut it silently
                yield _csv_line([f"# export stopped: {exc.reason}"])

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="reversal-items.csv"'},
        )

    @app.get("/reversals", response_class=HTMLResponse, include_in_schema=False)
    def page(
        request: Request,
        scope: DagScope = allowed.scope,
        q: str = Query("", max_length=MAX_QUERY_CHARS),
        vendor: str = Query("", max_length=16),
        status: str = Query("", max_length=16),
        code: str = Query("", max_length=MAX_CODE_CHARS),
        days: int = Query(30, ge=1, le=MAX_DAYS),
        page: int = Query(1, ge=1, le=10_000),
    ) -> HTMLResponse:
        """The Reversals page."""
        query = _checked_query(q)
        chosen_code = _checked_code(code)
        chosen_vendor = _choice(vendor, VENDORS, "vendor")
        chosen_status = _choice(status, ITEM_STATUSES, "status")
        base = str(request.scope.get("root_path", ""))
        filters: dict[str, Any] = {
            "q": query,
            "vendor": chosen_vendor or "",
            "status": chosen_status or "",
            "code": chosen_code,
            "days": days,
        }
        context: dict[str, Any] = {
            "base": base,
            "version": __version__,
            "ledger": None,
            "filters": filters,
            "windows": sorted({*WINDOWS, days}),
            "vendors": VENDORS,
            "series": SERIES,
            "error": None,
            "summary": None,
            "items": None,
            "chart": "",
            "json_summary": f"{base}/api/summary?" + urlencode({"days": days, "vendor": filters["vendor"]}),
            "json_items": f"{base}/api/items?"
            + urlencode({k: v for k, v in filters.items() if v} | {"offset": (page - 1) * PAGE_SIZE}),
            "csv_items": f"{base}/api/items.csv?" + urlencode({k: v for k, v in filters.items() if v}),
            "code_url": lambda vendor_name, failure_code: (
                f"{base}/reversals?"
                + urlencode({"vendor": vendor_name, "status": "failed", "code": failure_code, "days": days})
            ),
            "page": page,
            "page_url": lambda target: f"{base}/reversals?" + urlencode({**filters, "page": target}),
        }
        status_code = 200
        try:
            ledger = reader(request, scope)
            context["ledger"] = ledger.settings
            since, until = ledger.window(days)
            counts = skipped(since, scope)  # from the metadata DB: before the ledger is opened
            # One short read-only session for both (the summary's and the items' queries).
            with ledger.session() as session:
                summary = ledger.summary(days=days, vendor=chosen_vendor, skipped=counts, session=session)
                context["items"] = ledger.items(
                    query=query,
                    vendor=chosen_vendor,
                    status=chosen_status,
                    code=chosen_code,
                    days=days,
                    limit=PAGE_SIZE,
                    offset=(page - 1) * PAGE_SIZE,
                    session=session,
                )
            context["summary"] = summary
            context["chart"] = render_svg(day_bars(since.date(), until.date(), summary.daily))
        except LedgerUnavailable as exc:
            context["error"] = exc
            status_code = 503
        html = templates.get_template("reversals.html").render(**context)
        headers = {"Retry-After": "5"} if context["error"] is not None and context["error"].busy else None
        return HTMLResponse(html, status_code=status_code, headers=headers)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        """The page's own assets (an allow-list: no path ever reaches the file system)."""
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail="Not found")
        body = resources.files("airflow_provider_loyalty.ui").joinpath("static", name).read_bytes()
        return Response(body, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})

    return app


def _login_url(request: Request) -> str:
    """The auth manager's login page, coming back here afterwards (``/auth/login`` if unknown)."""
    root = str(request.scope.get("app_root_path", "") or "")
    next_url = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:
        return f"{root}/auth/login?" + urlencode({"next": next_url})
