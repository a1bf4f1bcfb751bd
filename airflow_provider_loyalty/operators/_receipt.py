"""The reversal task's side of an approval: the plan's digest, the receipt, and what may be sent.

The gate (:mod:`airflow_provider_loyalty.operators.approval`) asks a person; this module reads what
the plan recorded and what the person answered, from XCom, inside the reversal task itself, so that
clearing the task alone re-reads the answer. It imports nothing of the gate: a reversal task given
``approval=`` needs neither the HITL operator nor the TaskGroup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_loyalty.operators import _settings

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_loyalty.items import Item
    from airflow_provider_loyalty.operators._run_ledger import RunLedger
    from airflow_provider_loyalty.operators._summary import RunSummary

#: XCom key of a plan's sorted item keys (the approved set, once approved).
PLANNED_KEYS = "planned_keys"
#: XCom key ``approve`` pushes when it asks: ``{plan task id: {"digest", "planned"}}`` as shown.
SHOWN = "shown_plans"
#: XCom key of the answer as ``approve`` received it (a Reject skips downstream before any return value).
ANSWER = "answer"
#: XCom key ``decide`` pushes: ``{"route", "threshold", "plans": {plan task id: {"digest", "planned"}}}``.
ROUTE = "route"
#: Ledger code of an item outside the approved set (recorded, not sent, resent by a later plan).
NOT_APPROVED = "not_approved"
#: Receipt basis of a run no person had to approve.
UNDER_THRESHOLD = "under_threshold"
APPROVED = "approved"
#: Items of each plan named in the approval text (the full plan is one link away).
SAMPLE = 5


def plan_digest(keys: Iterable[str]) -> str:
    """SHA-256 of the item count and the sorted, distinct item keys (one per line).

    The same set gives the same digest whatever its order; any item more, less or different gives
    another one.
    """
    ordered = sorted(set(keys))
    digest = hashlib.sha256(f"{len(ordered)}\n".encode())
    for key in ordered:
        digest.update(key.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def short(digest: str | None) -> str:
    """The first 16 hex digits: what a person compares."""
    return (digest or "")[:16]


def capped(value: Any, name: str, cap: int) -> int:
    """``value`` as a whole number of at least 0 and at most ``cap``, else a clear refusal.

    ``cap`` is the DAG author's: a trigger conf may lower a setting, never raise it above.
    """
    try:
        number = _settings.count(value, name, minimum=0, blank_is_unset=False)
    except ValueError as exc:
        raise AirflowFailException(f"{exc}; nothing was sent") from None
    assert number is not None
    if number > cap:
        raise AirflowFailException(
            f"{name}={number} is above its cap {cap} set in the DAG (a trigger conf may lower it, never "
            "raise it); nothing was sent"
        )
    return number


# ------------------------------------------------------------------------------------------ the plan
def record_plan(context: Context | None, items: Sequence[Item], *, vendor: str, what: str) -> dict[str, Any]:
    """Push the plan's sorted item keys to XCom; return the fields the plan summary adds.

    One list of keys per plan (about 15 bytes an id, 40 an earn): 100,000 items are a few MB of XCom,
    read once by the reversal task. The approval text carries only counts, digests and a link.
    """
    keys = sorted({item.key for item in items})
    ti = context.get("ti") if context else None
    if ti is not None:
        ti.xcom_push(key=PLANNED_KEYS, value=keys)
    return {"planned": len(keys), "digest": plan_digest(keys), "vendor": vendor, "what": what}


# ------------------------------------------------------------------------------------------ the receipt
@dataclass(frozen=True)
class Receipt:
    """What a reversal task may send, and on whose word.

    :param digest: the plan's digest (what was approved, or counted under the threshold).
    :param planned: how many items the plan had.
    :param basis: :data:`APPROVED` or :data:`UNDER_THRESHOLD`.
    :param approved_by_id: the Airflow user id of the approver (``None`` under the threshold).
    :param approved_by_name: the approver's name.
    :param approved_at: when the approver answered (UTC, naive as the ledger stores times).
    """

    digest: str
    planned: int
    basis: str
    approved_by_id: str | None = None
    approved_by_name: str | None = None
    approved_at: datetime | None = None

    def columns(self) -> dict[str, Any]:
        """The ledger columns every row written under this receipt carries."""
        return {
            "approved_by_id": self.approved_by_id,
            "approved_by_name": self.approved_by_name,
            "approved_at": self.approved_at,
            "approval_digest": self.digest,
            "approval_planned": self.planned,
        }

    def as_xcom(self) -> dict[str, Any]:
        """The receipt in the task's summary."""
        return {
            "basis": self.basis,
            "digest": self.digest,
            "planned": self.planned,
            "approved_by_id": self.approved_by_id,
            "approved_by_name": self.approved_by_name,
            "approved_at": self.approved_at.isoformat() if self.approved_at else None,
        }

    def describe(self) -> str:
        """One line for the task log."""
        if self.basis == APPROVED:
            return (
                f"approved by {self.approved_by_name} (id {self.approved_by_id}) at {self.approved_at:%Y-%m-%d %H:%M:%S} "
                f"UTC: {self.planned} items, digest {short(self.digest)}"
            )
        return f"under the approval threshold: {self.planned} items, digest {short(self.digest)}"


@dataclass(frozen=True)
class ApprovalSpec:
    """A reversal task's ``approval`` argument, rendered (see :meth:`ApprovalGate.receipt`)."""

    plan: str
    decide: str
    approve: str
    threshold: int
    threshold_cap: int
    max_items_cap: int

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> ApprovalSpec:
        """Read a rendered ``approval`` argument; the threshold is checked against its cap."""
        try:
            threshold_cap, max_items_cap = int(value["threshold_cap"]), int(value["max_items_cap"])
            return cls(
                plan=str(value["plan"]),
                decide=str(value["decide"]),
                approve=str(value["approve"]),
                threshold=capped(value["threshold"], "approval_threshold", threshold_cap),
                threshold_cap=threshold_cap,
                max_items_cap=max_items_cap,
            )
        except (KeyError, TypeError) as exc:
            raise AirflowFailException(
                f"approval must come from ApprovalGate.receipt(...), got {dict(value) if isinstance(value, Mapping) else value!r} "
                f"({type(exc).__name__}: {exc}); nothing was sent"
            ) from None


def _user(answer: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(id, name)`` of the person who answered, or ``None`` (a default applied at the timeout)."""
    user = answer.get("responded_by_user")
    if not isinstance(user, Mapping) or not str(user.get("id") or "").strip():
        return None
    return str(user["id"]), str(user.get("name") or user["id"])


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def receipt(spec: ApprovalSpec, ti: Any, owner: str) -> tuple[Receipt, frozenset[str]]:
    """Read the plan, the answer and the route of this run; return the receipt and the approved keys.

    Raises :class:`AirflowSkipException` when a person rejected (or nobody answered and the default
    applied): nothing is sent, as when the gate skipped the task. Raises
    :class:`AirflowFailException` when the plan and the approval disagree, or nothing allows sending.
    """
    plan = _plan_of(ti, spec.plan)
    keys = ti.xcom_pull(task_ids=spec.plan, key=PLANNED_KEYS)
    if not plan.get("digest") or keys is None:
        raise AirflowFailException(
            f"{owner}: no plan from {spec.plan!r} (a dry run given approval=...); nothing was sent"
        )
    digest = plan_digest(keys)
    if digest != plan["digest"] or len(keys) != int(plan.get("planned", -1)):
        raise AirflowFailException(
            f"{owner}: the plan of {spec.plan!r} does not match its own digest ({len(keys)} keys, digest "
            f"{short(digest)}; summary says {plan.get('planned')} items, digest {short(plan['digest'])}); nothing was sent"
        )
    approved = frozenset(keys)
    answer = ti.xcom_pull(task_ids=spec.approve, key=ANSWER)
    if answer:
        chosen = list(answer.get("chosen_options") or [])
        who = _user(answer)
        if chosen != ["Approve"] or who is None:
            decision = "/".join(chosen) or "no option"
            by = f"by {who[1]}" if who else "by default, nobody answered"
            raise AirflowSkipException(f"{owner}: the approval was not given ({decision} {by}); nothing was sent")
        shown = (ti.xcom_pull(task_ids=spec.approve, key=SHOWN) or {}).get(spec.plan) or {}
        if shown.get("digest") != digest:
            raise AirflowFailException(
                f"{owner}: the plan changed after it was approved: {who[1]} approved "
                f"{shown.get('planned', '?')} items with digest {short(shown.get('digest')) or '(none shown)'}, "
                f"the plan of {spec.plan!r} is now {len(keys)} items with digest {short(digest)}; nothing was sent. "
                f"Clear {spec.approve!r} to ask again."
            )
        return Receipt(digest, len(keys), APPROVED, who[0], who[1], _when(answer.get("responded_at"))), approved
    route = ti.xcom_pull(task_ids=spec.decide, key=ROUTE) or {}
    plans = route.get("plans") or {}
    largest = max((int(p.get("planned", 0)) for p in plans.values()), default=len(keys))
    if (
        route.get("route") != UNDER_THRESHOLD
        or (plans.get(spec.plan) or {}).get("digest") != digest
        or max(largest, len(keys)) > spec.threshold
    ):
        raise AirflowFailException(
            f"{owner}: {len(keys)} items planned by {spec.plan!r} (largest plan: {largest}), approval_threshold="
            f"{spec.threshold}, and no approval from {spec.approve!r} (route {route.get('route')!r}); nothing was sent"
        )
    return Receipt(digest, len(keys), UNDER_THRESHOLD), approved


def admit(items: list[Item], approved: frozenset[str]) -> tuple[list[Item], list[Item]]:
    """``(inside, outside)`` the approved set, in input order."""
    inside: list[Item] = []
    outside: list[Item] = []
    for item in items:
        (inside if item.key in approved else outside).append(item)
    return inside, outside


def check(
    operator: Any, items: list[Item], context: Context, books: RunLedger | None, summary: RunSummary
) -> list[Item]:
    """A reversal task's part: the receipt, then only the approved items (before any vendor call).

    The receipt goes on every ledger row this task writes, and in its summary. Items outside the
    approved plan are recorded ``failed`` / ``not_approved`` (``failure_kind`` ``rejected``: nothing
    was sent, a later run plans them again), named in the summary and the log, and not sent.
    """
    from airflow_provider_loyalty.outcomes import FailureKind, Outcome

    owner = type(operator).__name__
    spec = ApprovalSpec.of(operator.approval)
    # the gate's cap is the task's limit when it sets none, and bounds the one it sets
    limit = operator.max_items
    operator.max_items = spec.max_items_cap if limit is None else capped(limit, "max_items", spec.max_items_cap)
    found, approved = receipt(spec, context["ti"], owner)
    operator.log.info("%s: sending under a receipt: %s", owner, found.describe())
    summary.approval = found.as_xcom()
    if books is not None:
        books.run.update(found.columns())
    inside, outside = admit(items, approved)
    if outside:
        message = f"not in the plan approved as {short(found.digest)} ({found.planned} items): not sent"
        refused = [Outcome.failed(item, NOT_APPROVED, message, FailureKind.REJECTED) for item in outside]
        if books is not None:
            books.record(refused)
        summary.add_not_approved(refused)
        operator.log.warning(
            "%s: %d %s are not in the approved plan (they reached the input after it): recorded as %s, not sent; "
            "first: %s",
            owner,
            len(outside),
            operator.what,
            NOT_APPROVED,
            ", ".join(item.key for item in outside[:10]),
        )
    return inside


def _plan_of(ti: Any, task_id: str) -> dict[str, Any]:
    """The summary of the plan ``task_id``; a mapped plan (one summary per shard) is refused by name."""
    plan = ti.xcom_pull(task_ids=task_id) or {}
    if not isinstance(plan, Mapping):
        raise AirflowFailException(
            f"the plan {task_id!r} is a mapped task ({len(plan) if isinstance(plan, list) else '?'} plans): the approval "
            "gate approves one unmapped plan (dry run) per reversal task; nothing was sent"
        )
    return dict(plan)
