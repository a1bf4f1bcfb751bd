"""Where one request of the page reads from: the ledger (through :class:`.reader.LedgerReader`) and the skipped counts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from fastapi import Request
from fastapi.responses import JSONResponse

from airflow_provider_loyalty.ui.auth import DagScope
from airflow_provider_loyalty.ui.models import Summary
from airflow_provider_loyalty.ui.reader import LedgerReader
from airflow_provider_loyalty.ui.settings import LedgerSettings, LedgerUnavailable

log = logging.getLogger(__name__)

#: ``(since, dag_ids) -> {(day, vendor): skipped}``; ``dag_ids`` ``None`` means every DAG.
SkippedSource = Callable[[datetime, frozenset[str] | None], dict[tuple[date, str], int]]
SettingsSource = Callable[[], LedgerSettings]
#: ``[(dag_id, run_id)] -> {(dag_id, run_id): {task_id: state}}``: the Airflow states of the runs' tasks.
TaskSource = Callable[[list[tuple[str, str]]], dict[tuple[str, str], dict[str, str]]]


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
    task_source: TaskSource | None = None

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

    def add_task_states(self, summary: Summary) -> None:
        """Fill each recent run's ``tasks`` with their Airflow states (left ``None`` when unknown)."""
        wanted = {(str(r.dag_id), str(r.run_id)): r for r in summary.runs if r.tasks and r.dag_id and r.run_id}
        if not wanted or self.task_source is None:
            for run in summary.runs:
                run.tasks = None
            return
        try:
            states = self.task_source(list(wanted))
        except Exception:
            log.warning("Task states unavailable (Airflow's metadata could not be read)", exc_info=True)
            states = {}
        for key, run in wanted.items():
            found = states.get(key, {})
            run.tasks = {task: found.get(task, "unknown") for task in (run.tasks or {})}
        for run in summary.runs:
            if (str(run.dag_id), str(run.run_id)) not in wanted:
                run.tasks = None


def default_task_states(runs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """``(dag_id, run_id) -> {task_id: state}`` from Airflow's metadata (mapped instances joined: ``success×3``)."""
    from collections import Counter

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import or_, select

    if not runs:
        return {}
    statement = select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.state).where(
        or_(*[(TaskInstance.dag_id == dag_id) & (TaskInstance.run_id == run_id) for dag_id, run_id in runs])
    )
    counted: dict[tuple[str, str], dict[str, Counter[str]]] = {}
    with create_session() as session:
        for dag_id, run_id, task_id, state in session.execute(statement):
            tasks = counted.setdefault((str(dag_id), str(run_id)), {})
            tasks.setdefault(str(task_id), Counter())[str(state or "none")] += 1
    return {
        key: {
            task: ", ".join(state if n == 1 else f"{state}×{n}" for state, n in sorted(states.items()))
            for task, states in tasks.items()
        }
        for key, tasks in counted.items()
    }


def unavailable(exc: LedgerUnavailable) -> JSONResponse:
    """The API's 503 answer when the ledger cannot be read (``Retry-After`` when a writer holds it)."""
    headers = {"Retry-After": "5"} if exc.busy else {}
    return JSONResponse(
        status_code=503,
        content={"detail": exc.reason, "busy": exc.busy, "missing": exc.missing},
        headers=headers,
    )
