"""Approval as a ceiling with a receipt: a person approves the exact set of items a dry run planned.

A DAG wires it in a few lines (see :class:`ApprovalGate`)::

    gate = ApprovalGate(threshold=5000, max_items=50000)  # the caps: a trigger conf may lower them, never raise them

    @dag(params={**gate.params(), ...})
    def reversals():
        plan = CancelPointsOperator(task_id="plan_points", dry_run=True, approval=gate.receipt("plan_points"), ...)
        send = CancelPointsOperator(task_id="cancel_points", approval=gate.receipt("plan_points"),
                                    trigger_rule="none_failed_min_one_success", ...)
        gate.tasks([plan]) >> send

- **The plan** (a dry run given ``approval=``) pushes the sorted keys of the items it would send to
  XCom (key :data:`PLANNED_KEYS`) and their :func:`plan_digest` with its summary.
- **The gate** (a TaskGroup) routes to ``approve`` when a plan is above the threshold, else to
  ``within_threshold``. ``approve`` shows the counts, the digests and a link to each plan, and keeps
  what it showed (XCom key :data:`SHOWN`): the answer is about those digests and nothing else.
- **The reversal task** (given the same ``approval=``) reads the plan, the answer and the route
  itself — clearing it alone after a Reject re-reads the Reject — and sends only items of the
  approved plan. Other items are recorded as ``failed`` / ``not_approved`` (resent by a later run
  under a later plan), named in the summary, not sent. A plan that no longer matches the approved
  digest fails the task before any vendor call. A default answer with no person (a timeout) is
  never an approval.

Each ledger row written under a receipt carries ``approval_digest``; under an approval also
``approved_by_id``, ``approved_by_name`` and ``approved_at``. A digest with no approver means
"under the threshold": no person was asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_loyalty.operators import _settings

# The task-side names live in _receipt; they are public here, where DAG authors and docs find them.
from airflow_provider_loyalty.operators._receipt import (
    ANSWER,
    APPROVED,
    NOT_APPROVED,
    PLANNED_KEYS,
    ROUTE,
    SAMPLE,
    SHOWN,
    UNDER_THRESHOLD,
    ApprovalSpec,
    Receipt,
    _plan_of,
    capped,
    plan_digest,
    short,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context, Param
    from airflow.sdk.definitions.taskgroup import TaskGroup

__all__ = [
    "ANSWER",
    "APPROVED",
    "NOT_APPROVED",
    "PLANNED_KEYS",
    "ROUTE",
    "SHOWN",
    "UNDER_THRESHOLD",
    "ApprovalGate",
    "ApprovalSpec",
    "Receipt",
    "approval_body",
    "plan_digest",
]


# ------------------------------------------------------------------------------------------ the gate
def approval_body(plans: Mapping[str, Mapping[str, Any]], threshold: int, links: Mapping[str, str]) -> str:
    """What the approver reads: one short table, a few items per plan, links to the full plans.

    Plain Markdown without inline code (the form shows it as blocks) and no long table: the buttons
    stay in view.
    """
    lines = [
        f"A vendor task would send more than **{threshold}** items (approval threshold). "
        "Reversals cannot be undone at the vendor.",
        "",
        "| plan | items to send | requests | skipped (done) | digest |",
        "|---|---|---|---|---|",
    ]
    for task_id, plan in plans.items():
        what = f" {plan['what']}" if plan.get("what") else ""
        lines.append(
            f"| {task_id} ({plan.get('vendor', '?')}) | **{int(plan.get('planned', 0))}**{what} | "
            f"{plan.get('requests', 0)} | {plan.get('skipped', 0)} | {short(plan.get('digest'))} |"
        )
    lines += [
        "",
        "**Approve** sends exactly these items, never others: items that reach the warehouse after this "
        "plan are refused (recorded as not approved) and left for the next run. **Reject** sends nothing.",
    ]
    for task_id, plan in plans.items():
        sample = plan.get("sample") or []
        shown = ", ".join(" / ".join(str(v) for v in item.values()) for item in sample[:SAMPLE])
        more = int(plan.get("planned", 0)) - min(len(sample), SAMPLE)
        link = f" ([full plan]({links[task_id]}))" if task_id in links else ""
        if shown:
            lines += ["", f"{task_id}: {shown}{f' and {more} more' if more > 0 else ''}{link}"]
    return "\n".join(lines)


def _plan_link(ti: Any, task_id: str) -> str:
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return (
        f"{base}/dags/{quote(ti.dag_id, safe='')}/runs/{quote(ti.run_id, safe='')}/tasks/{quote(task_id, safe='')}/xcom"
    )


def _plans(ti: Any, plan_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {task_id: _plan_of(ti, task_id) for task_id in plan_ids}


def _approval_operator() -> type:
    """The ``approve`` task's class (built on first use: DAG files import this module cheaply)."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    class PlanApprovalOperator(ApprovalOperator):  # type: ignore[misc]
        """Airflow's ApprovalOperator, asking about the plans as they are when it asks.

        The body is written from the plans' XCom at ``execute``, and what it showed is pushed
        (:data:`SHOWN`): the reversal tasks compare the plan they find against it.
        """

        template_fields = (*ApprovalOperator.template_fields, "threshold")

        def __init__(self, *, plans: Sequence[str], threshold: Any, **kwargs: Any) -> None:
            super().__init__(body="", **kwargs)
            self.plans = list(plans)
            self.threshold = threshold

        def execute(self, context: Context) -> Any:
            ti = context["ti"]
            plans = _plans(ti, self.plans)
            links = {task_id: _plan_link(ti, task_id) for task_id in self.plans}
            self.body = approval_body(plans, int(self.threshold), links)
            ti.xcom_push(
                key=SHOWN,
                value={
                    task_id: {"digest": p.get("digest"), "planned": int(p.get("planned", 0))}
                    for task_id, p in plans.items()
                },
            )
            return super().execute(context)

        def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
            if "error" not in event:  # kept before Airflow acts on it: a Reject ends in a skip, with no return value
                answered = event.get("responded_at")
                context["ti"].xcom_push(
                    key=ANSWER,
                    value={
                        "chosen_options": list(event.get("chosen_options") or []),
                        "responded_by_user": event.get("responded_by_user"),
                        "responded_at": answered.isoformat() if isinstance(answered, datetime) else answered,
                    },
                )
            return super().execute_complete(context, event)

    return PlanApprovalOperator


@dataclass(frozen=True)
class ApprovalGate:
    """The DAG author's approval policy, and the tasks that apply it.

    :param threshold: above this many items planned at one vendor task, a person approves first. The
        DAG param ``approval_threshold`` may lower it for one run, never raise it.
    :param max_items: the most items one reversal task may send, approved or not. The DAG param
        ``max_items`` may lower it, never raise it.
    :param group_id: the TaskGroup of the gate's tasks.
    :param subject: the approval's headline (templated).
    :param response_timeout: without an answer by then, the run rejects (nothing is sent).
    """

    threshold: int
    max_items: int
    group_id: str = "approval"
    subject: str = "Loyalty reversals of {{ ds }}: approve sending them to the vendors?"
    response_timeout: timedelta = timedelta(hours=20)

    def params(self) -> dict[str, Param]:
        """DAG params ``approval_threshold`` and ``max_items``, bounded above by the caps.

        Airflow validates a trigger's conf against them (run creation and task start): a value above
        a cap is refused with the value and the cap named. The reversal tasks check it again.
        """
        from airflow.sdk import Param

        return {
            "approval_threshold": Param(
                self.threshold,
                type="integer",
                minimum=0,
                maximum=self.threshold,
                description=f"Above this many items to send at one vendor, a person approves the run first "
                f"(at most {self.threshold}: the cap set in the DAG).",
            ),
            "max_items": Param(
                self.max_items,
                type="integer",
                minimum=0,
                maximum=self.max_items,
                description=f"A vendor task refuses to send more items than this, approved or not "
                f"(at most {self.max_items}: the cap set in the DAG).",
            ),
        }

    def receipt(self, plan_task_id: str) -> dict[str, Any]:
        """The ``approval`` argument of a plan (dry run) and of the reversal task it plans for."""
        return {
            "plan": plan_task_id,
            "decide": f"{self.group_id}.decide",
            "approve": f"{self.group_id}.approve",
            "threshold": "{{ params.approval_threshold }}",
            "threshold_cap": self.threshold,
            "max_items_cap": self.max_items,
        }

    def tasks(self, plans: Sequence[BaseOperator]) -> TaskGroup:
        """``decide`` (a branch) → ``approve`` | ``within_threshold``, in a TaskGroup after ``plans``.

        Put the reversal tasks downstream of the returned group with
        ``trigger_rule="none_failed_min_one_success"``.
        """
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import TaskGroup, task

        plan_ids = [p.task_id for p in plans]
        gate = self

        with TaskGroup(group_id=self.group_id, tooltip="approval of the planned reversals") as group:

            @task.branch(task_id="decide")
            def decide(params: dict | None = None, ti: Any = None) -> str:
                """Route to ``approve`` when a plan is above the threshold; record the route and the plans."""
                params = params or {}
                threshold = capped(
                    params.get("approval_threshold", gate.threshold), "approval_threshold", gate.threshold
                )
                capped(params.get("max_items", gate.max_items), "max_items", gate.max_items)
                found = _plans(ti, plan_ids)
                largest = max((int(p.get("planned", 0)) for p in found.values()), default=0)
                above = largest > threshold and not _settings.as_bool(params.get("dry_run", False), "dry_run")
                route = APPROVED if above else UNDER_THRESHOLD
                ti.xcom_push(
                    key=ROUTE,
                    value={
                        "route": route,
                        "threshold": threshold,
                        "plans": {
                            k: {"digest": p.get("digest"), "planned": int(p.get("planned", 0))}
                            for k, p in found.items()
                        },
                    },
                )
                return f"{gate.group_id}.{'approve' if above else 'within_threshold'}"

            approve = _approval_operator()(
                task_id="approve",
                plans=plan_ids,
                threshold="{{ params.approval_threshold }}",
                subject=self.subject,
                defaults="Reject",  # unanswered in time: nothing is sent, and the next run can start
                response_timeout=self.response_timeout,
            )
            within = EmptyOperator(task_id="within_threshold")
            decide() >> [approve, within]
        list(plans) >> group
        return group
