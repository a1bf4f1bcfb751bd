"""The Airflow plugin of the Reversals page (entry point group ``airflow.plugins``).

Register it in the distribution's metadata::

    [project.entry-points."airflow.plugins"]
    loyalty_reversals = "airflow_provider_loyalty.ui.plugin:LoyaltyReversalsPlugin"

A plugin named only in provider info is not loaded under Airflow's default lazy provider
discovery; the entry point is. Every Airflow component loads plugins (scheduler, dag processor,
workers), so this module imports nothing heavy: the FastAPI app is built on its first request, in
the api-server.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

#: Mount point of the app in the api-server (keep in step with ``app.URL_PREFIX``).
URL_PREFIX = "/loyalty"
APP_FACTORY = "airflow_provider_loyalty.ui.app:create_app"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LazyASGIApp:
    """An ASGI app that builds the real one (``module:factory``) on its first call.

    :param factory: import path of a zero-argument callable returning an ASGI app.
    """

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The real app, built once."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from importlib import import_module

                    module, _, name = self.factory.partition(":")
                    self._app = getattr(import_module(module), name)()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to the real app."""
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyASGIApp({self.factory!r})"


def _ui_root() -> str:
    """Path prefix of the Airflow UI (the path of ``[api] base_url``), without a trailing slash."""
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="") or ""
    return urlsplit(base_url).path.rstrip("/")


class LoyaltyReversalsPlugin(AirflowPlugin):
    """Mounts the Reversals app under ``/loyalty`` and adds "Reversals" to the Browse menu."""

    name = "loyalty_reversals"
    fastapi_apps = [
        {"app": LazyASGIApp(APP_FACTORY), "url_prefix": URL_PREFIX, "name": "Loyalty reversals"},
    ]
    external_views = [
        {
            "name": "Reversals",
            "href": f"{_ui_root()}{URL_PREFIX}/reversals",
            "icon": f"{_ui_root()}{URL_PREFIX}/static/reversals-icon.svg",
            "destination": "nav",
            "category": "browse",
            "url_route": "reversals",
        }
    ]
