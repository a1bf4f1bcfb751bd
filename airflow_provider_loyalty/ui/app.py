"""The Reversals FastAPI app, mounted by the plugin under ``/loyalty`` in Airflow's api-server.

A plugin's sub-app is not protected by Airflow, so the app asks Airflow's auth manager itself
(:mod:`.auth`): every route needs an authenticated user (anonymous: 401); the page and its API also
need the right to view the plugin's view (``is_authorized_custom_view``, resource
``Loyalty Reversals``; 403 without it), and show only ledger rows of DAGs the user may read.

* ``GET /loyalty/reversals`` — the page shown in the UI (Browse → Reversals): :mod:`.views`.
* ``GET /loyalty/api/summary``, ``/loyalty/api/items``, ``/loyalty/api/items.csv`` — :mod:`.api`.
* ``GET /loyalty/static/<file>`` — the page's stylesheet, script and icon (authenticated users).

Every route reads its filters through one dependency (:func:`.filters.read_filters`).

Airflow authenticates the request either with the UI's ``_token`` cookie (the page, in the UI's
iframe) or with ``Authorization: Bearer <jwt>`` (scripts; ``POST /auth/token`` issues one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_loyalty import __version__
from airflow_provider_loyalty.ui.api import MAX_PAGE_SIZE, PAGE_SIZE, api_router
from airflow_provider_loyalty.ui.auth import page_dependencies
from airflow_provider_loyalty.ui.export import CSV_COLUMNS, MAX_EXPORT_ITEMS, _csv_line, _csv_safe
from airflow_provider_loyalty.ui.filters import MAX_DAYS, WINDOWS
from airflow_provider_loyalty.ui.settings import LedgerSettings
from airflow_provider_loyalty.ui.sources import (
    SettingsSource,
    SkippedSource,
    Sources,
    TaskSource,
    default_skipped,
    default_task_states,
)
from airflow_provider_loyalty.ui.views import STATIC_FILES, page_router, templates

__all__ = [
    "CSV_COLUMNS",
    "MAX_DAYS",
    "MAX_EXPORT_ITEMS",
    "MAX_PAGE_SIZE",
    "PAGE_SIZE",
    "STATIC_FILES",
    "URL_PREFIX",
    "WINDOWS",
    "_csv_line",
    "_csv_safe",
    "create_app",
]

#: Where the plugin mounts the app (the plugin module repeats it so that importing it stays cheap).
URL_PREFIX = "/loyalty"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(
    *,
    settings: SettingsSource | None = None,
    skipped_source: SkippedSource | None = default_skipped,
    task_source: TaskSource | None = default_task_states,
) -> FastAPI:
    """Build the app.

    :param settings: where the ledger is; default: ``[loyalty] ledger_conn_id`` / ``ledger_table``,
        read on every request.
    :param skipped_source: ``since -> {(day, vendor): skipped}`` from the task summaries; ``None``
        leaves the skipped column unknown. Default: Airflow's metadata database.
    :param task_source: the Airflow states of the recent runs' tasks; ``None`` leaves them out.
        Default: Airflow's metadata database.
    """
    from airflow.api_fastapi.core_api.security import requires_authenticated

    from airflow_provider_loyalty.ui.fab import register_if_fab

    sources = Sources(
        settings=settings or LedgerSettings.from_config, skipped_source=skipped_source, task_source=task_source
    )
    register_if_fab()  # FAB: the page's resource exists, so that a role can be granted it
    allowed = page_dependencies()
    app = FastAPI(
        title="Loyalty reversals",
        version=__version__,
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    env = templates()

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
                env.get_template("unauthorized.html").render(login_url=_login_url(request)),
                status_code=401,
                headers=headers,
            )
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    app.include_router(page_router(sources, allowed, env))
    app.include_router(api_router(sources, allowed))
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
