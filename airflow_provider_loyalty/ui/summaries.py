"""Items skipped as already done, per day and vendor, from the reversal tasks' summary XComs.

The ledger records what was *sent*; an item skipped because the ledger already records it as done
is only counted in the task's summary (``skipped`` in its ``return_value`` XCom). The page reads
those summaries from Airflow's metadata database, where the api-server runs, and counts each under
the summary's own ``vendor`` — whatever the task's operator class is called (a subclass of a vendor
operator counts as its vendor). Summaries written before they named their vendor are known by the
vendor operator's class name (:attr:`VendorSpec.operator`). A retried task keeps
the summary of its latest try only (Airflow clears a task's XComs when it runs again); dry runs are
left out.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from typing import Any

from airflow_provider_loyalty import vendors

log = logging.getLogger(__name__)

#: Summaries read at most per request (one per task and day: far more than a window holds).
MAX_SUMMARIES = 50_000


def vendor_of(value: Any, operator: str | None) -> str | None:
    """The vendor a summary counts under: its own ``vendor``, else its task's vendor operator class."""
    if not isinstance(value, dict):
        return None
    named = value.get("vendor")
    if isinstance(named, str):
        return named if named in {s.name for s in vendors.all_specs()} else None
    return next((s.name for s in vendors.all_specs() if s.operator and s.operator == operator), None)


def add_summary(totals: dict[tuple[date, str], int], day: date, vendor: str | None, value: Any) -> None:
    """Add one summary's ``skipped`` to ``totals`` (ignores dry runs and values that are not summaries).

    :param totals: ``(day, vendor) -> skipped`` being built.
    :param day: the day (UTC) the summary was pushed.
    :param vendor: the vendor the summary counts under (:func:`vendor_of`); ``None``: not a reversal's.
    :param value: the deserialized XCom value.
    """
    if vendor is None or not isinstance(value, dict) or value.get("dry_run"):
        return
    skipped = value.get("skipped")
    if isinstance(skipped, bool) or not isinstance(skipped, int) or skipped < 0:
        return
    totals[(day, vendor)] = totals.get((day, vendor), 0) + skipped


def skipped_from_task_summaries(since: datetime, dag_ids: frozenset[str] | None = None) -> dict[tuple[date, str], int]:
    """Sum ``skipped`` of the reversal tasks' summaries pushed since ``since``, per ``(day, vendor)``.

    :param since: start of the window (naive UTC or aware).
    :param dag_ids: only the summaries of these DAGs (``None``: every DAG).
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import Text, and_, cast, or_, select

    since_utc = since.replace(tzinfo=timezone.utc) if since.tzinfo is None else since.astimezone(timezone.utc)
    statement = (
        select(XComModel.timestamp, XComModel.value, TaskInstance.operator)
        .join(
            TaskInstance,
            and_(
                TaskInstance.dag_id == XComModel.dag_id,
                TaskInstance.run_id == XComModel.run_id,
                TaskInstance.task_id == XComModel.task_id,
                TaskInstance.map_index == XComModel.map_index,
            ),
        )
        .where(
            XComModel.key == "return_value",
            XComModel.timestamp >= since_utc,
            # a summary names its vendor; older ones are known by their vendor operator's class
            or_(
                cast(XComModel.value, Text).like('%"vendor"%'),
                TaskInstance.operator.in_([s.operator for s in vendors.all_specs() if s.operator]),
            ),
        )
        .limit(MAX_SUMMARIES)
    )
    if dag_ids is not None:
        statement = statement.where(XComModel.dag_id.in_(sorted(dag_ids)))
    totals: dict[tuple[date, str], int] = {}
    with create_session() as session:
        for row in session.execute(statement):
            if row.timestamp is None:
                continue
            try:
                value = XComModel.deserialize_value(row)
            except Exception:
                log.debug("Unreadable summary XCom", exc_info=True)
                continue
            pushed = row.timestamp.astimezone(timezone.utc) if row.timestamp.tzinfo else row.timestamp
            add_summary(totals, pushed.date(), vendor_of(value, row.operator), value)
    return totals
