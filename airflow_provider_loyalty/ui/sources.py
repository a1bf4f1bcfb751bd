"""Where one request of the page reads from: the ledger (through :class:`.reader.LedgerReader`) and the skipped counts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from fastapi import Request
from fastapi.responses import JSONResponse

from airflow_provider_loyalty.ui.auth import DagScope
from airflow_provider_loyalty.ui.reader import LedgerReader
from airflow_provider_loyalty.ui.settings import LedgerSettings, LedgerUnavailable

log = logging.getLogger(__name__)

#: ``(since, dag_ids) -> {(day, vendor): skipped}``; ``dag_ids`` ``None`` means every DAG.
SkippedSource = Callable[[datetime, frozenset[str] | None], dict[tuple[date, str], int]]
SettingsSource = Callable[[], LedgerSettings]


def default_skipped(since: datetime, dag_ids: frozenset[str] | None) -> dict[tuple[date, str], int]:
    """The skipped counts of the reversal tasks' summaries, from Airflow's metadata database."""
    from airflow_provider_loyalty.ui.summaries import skipped_from_task_summaries

    return skipped_from_task_summaries(since, dag_ids)


@dataclass(frozen=True)
class Sources:
    """The app's data sources, shared by its routers.

    :param settings: where the ledger is, read on every request.
    :param skipped_source: the skipped counts; ``None`` leaves them unknown.
    """

    settings: SettingsSource
    skipped_source: SkippedSource | None

    def reader(self, request: Request, scope: DagScope) -> LedgerReader:
        """A reader of the ledger limited to ``scope``, linking runs under the Airflow UI's path."""
        airflow_root = str(request.scope.get("app_root_path", "") or "")
        return LedgerReader(self.settings(), scope=scope, airflow_root=airflow_root)

    def skipped(self, since: datetime, scope: DagScope) -> dict[tuple[date, str], int] | None:
        """Skipped counts since ``since`` of the DAGs in ``scope`` (``None``: unknown)."""
        if self.skipped_source is None:
            return None
        if scope.nothing:
            return {}
        try:
            return self.skipped_source(since, None if scope.every_dag else scope.dag_ids)
        except Exception:
            log.warning("Skipped counts unavailable (task summaries could not be read)", exc_info=True)
            return None


def unavailable(exc: LedgerUnavailable) -> JSONResponse:
    """The API's 503 answer when the ledger cannot be read (``Retry-After`` when a writer holds it)."""
    headers = {"Retry-After": "5"} if exc.busy else {}
    return JSONResponse(
        status_code=503,
        content={"detail": exc.reason, "busy": exc.busy, "missing": exc.missing},
        headers=headers,
    )
