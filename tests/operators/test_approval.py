"""The approval receipt's rules, one by one: the digest, the answer, the route, the caps, the text.

The end-to-end runs (a person answering in a real ``dag.test()``) are in tests/e2e/test_daily_approval.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_loyalty.operators import _receipt as rc
from airflow_provider_loyalty.operators import approval as ap

GATE = ap.ApprovalGate(threshold=10, max_items=100)
KEYS = ["101", "102", "103"]


class FakeTI:
    """XCom by (task_id, key), as ``ti.xcom_pull`` reads it."""

    def __init__(self, xcoms: dict[tuple[str, str], Any]) -> None:
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))


def spec(threshold: Any = "5") -> ap.ApprovalSpec:
    return ap.ApprovalSpec.of({**GATE.receipt("plan"), "threshold": threshold})


def xcoms(keys=KEYS, *, shown=None, answer=None, route=None) -> dict[tuple[str, str], Any]:
    digest = ap.plan_digest(keys)
    found: dict[tuple[str, str], Any] = {
        ("plan", "return_value"): {"planned": len(keys), "digest": digest},
        ("plan", ap.PLANNED_KEYS): list(keys),
    }
    if answer is not None:
        found[("approval.approve", ap.ANSWER)] = answer
        found[("approval.approve", ap.SHOWN)] = {"plan": {"digest": shown or digest, "planned": len(keys)}}
    if route is not None:
        found[("approval.decide", ap.ROUTE)] = route
    return found


def approve(by: dict | None = None, choice: str = "Approve") -> dict[str, Any]:
    return {"chosen_options": [choice], "responded_by_user": by, "responded_at": "2026-12-07T10:00:00+00:00"}


@given(st.sets(st.text(min_size=1, max_size=8).filter(lambda k: "\n" not in k), max_size=30), st.randoms())
def test_digest_is_the_set_whatever_the_order(keys: set[str], rnd: Any) -> None:
    shuffled = list(keys)
    rnd.shuffle(shuffled)
    assert ap.plan_digest(shuffled) == ap.plan_digest(sorted(keys)) == ap.plan_digest(shuffled + shuffled[:2])
    assert ap.plan_digest([*keys, "extra\x00"]) != ap.plan_digest(keys)


def test_an_approval_by_a_person_is_a_receipt() -> None:
    found, approved = rc.receipt(spec(), FakeTI(xcoms(answer=approve({"id": "7", "name": "dana"}))), "Op")
    assert (found.basis, found.approved_by_id, found.approved_by_name) == ("approved", "7", "dana")
    assert found.approved_at == datetime(2026, 12, 7, 10, 0)  # UTC, naive as the ledger stores times
    assert found.digest == ap.plan_digest(KEYS) and approved == frozenset(KEYS)
    assert found.columns()["approval_digest"] == found.digest


@pytest.mark.parametrize(
    "answer",
    [approve(None), approve({"id": "", "name": "x"}), approve({"id": "7", "name": "dana"}, "Reject")],
    ids=["timeout_default_approve_no_person", "blank_user_id", "rejected"],
)
def test_no_person_or_a_reject_sends_nothing(answer: dict) -> None:
    with pytest.raises(AirflowSkipException, match="nothing was sent"):
        rc.receipt(spec(), FakeTI(xcoms(answer=answer)), "Op")


def test_a_plan_changed_after_the_approval_fails_clearly() -> None:
    shown = ap.plan_digest(KEYS[:2])
    with pytest.raises(AirflowFailException, match="the plan changed after it was approved") as caught:
        rc.receipt(spec(), FakeTI(xcoms(shown=shown, answer=approve({"id": "7", "name": "dana"}))), "Op")
    assert shown[:16] in str(caught.value) and ap.plan_digest(KEYS)[:16] in str(caught.value)


def test_a_plan_whose_keys_do_not_match_its_digest_fails() -> None:
    found = xcoms(answer=approve({"id": "7", "name": "dana"}))
    found[("plan", ap.PLANNED_KEYS)] = [*KEYS, "999"]
    with pytest.raises(AirflowFailException, match="does not match its own digest"):
        rc.receipt(spec(), FakeTI(found), "Op")


def test_under_the_threshold_needs_the_route_and_every_plan_under_it() -> None:
    digest = ap.plan_digest(KEYS)
    route = {"route": ap.UNDER_THRESHOLD, "plans": {"plan": {"digest": digest, "planned": 3}}}
    found, _ = rc.receipt(spec(), FakeTI(xcoms(route=route)), "Op")
    assert found.basis == ap.UNDER_THRESHOLD and found.approved_by_id is None
    # another plan of the same gate above the threshold: a person had to approve both
    big = {**route, "plans": {**route["plans"], "other": {"digest": "x", "planned": 6}}}
    with pytest.raises(AirflowFailException, match="no approval"):
        rc.receipt(spec(), FakeTI(xcoms(route=big)), "Op")
    with pytest.raises(AirflowFailException, match="no approval"):  # the route went to approve; no answer kept
        rc.receipt(spec(), FakeTI(xcoms(route={**route, "route": ap.APPROVED})), "Op")
    with pytest.raises(AirflowFailException, match="no approval"):
        rc.receipt(spec(threshold="2"), FakeTI(xcoms(route=route)), "Op")


def test_no_plan_no_send() -> None:
    with pytest.raises(AirflowFailException, match="no plan"):
        rc.receipt(spec(), FakeTI({}), "Op")


@pytest.mark.parametrize(
    ("value", "cap", "message"),
    [
        (10**12, 10, "approval_threshold=1000000000000 is above its cap 10"),
        ("11", 10, "approval_threshold=11 is above its cap 10"),
        ("", 10, "must be a number"),
    ],
    ids=["huge", "rendered_text", "blank"],
)
def test_caps_refuse_values_above_them(value: Any, cap: int, message: str) -> None:
    with pytest.raises(AirflowFailException, match=message):
        ap.ApprovalSpec.of({**ap.ApprovalGate(threshold=cap, max_items=5).receipt("plan"), "threshold": value})
    assert rc.capped("10", "approval_threshold", 10) == 10


def test_params_bound_the_conf_by_the_caps() -> None:
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(GATE.params())
    params.update({"approval_threshold": 3})
    assert params.validate()["approval_threshold"] == 3
    params = ParamsDict(GATE.params())
    with pytest.raises(ParamValidationError, match="1000 is greater than the maximum of 100"):
        params.update({"max_items": 1000})
        params.validate()


def test_the_body_is_short_plain_and_links_the_full_plans() -> None:
    sample = [{"unique_id": n} for n in range(1, 101)]
    plans = {
        "plan_points": {
            "planned": 100,
            "digest": "ab" * 32,
            "vendor": "xoxoday",
            "what": "unique_ids",
            "sample": sample,
        }
    }
    body = ap.approval_body(plans, 10, {"plan_points": "http://airflow/dags/d/runs/r/tasks/plan_points/xcom"})
    assert "`" not in body
    assert [line for line in body.splitlines() if line.startswith("|")][2:] == [
        "| plan_points (xoxoday) | **100** unique_ids | 0 | 0 | abababababababab |"
    ]
    assert (
        "plan_points: 1, 2, 3, 4, 5 and 95 more ([full plan](http://airflow/dags/d/runs/r/tasks/plan_points/xcom))"
        in body
    )


def test_admit_keeps_the_approved_items_in_order() -> None:
    from airflow_provider_loyalty.items import PointItem

    items = [PointItem(103), PointItem(104), PointItem(101)]
    inside, outside = rc.admit(items, frozenset(KEYS))
    assert inside == [PointItem(103), PointItem(101)] and outside == [PointItem(104)]


def test_receipt_time_is_utc() -> None:
    answer = approve({"id": "7", "name": "dana"})
    answer["responded_at"] = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
    found, _ = rc.receipt(spec(), FakeTI(xcoms(answer=answer)), "Op")
    assert found.approved_at == datetime(2026, 12, 7, 12, 0)


class RunTI(FakeTI):
    """The XCom of one run, shared by the tasks that push and pull it."""

    def __init__(self, xcoms: dict[tuple[str, str], Any], task_id: str) -> None:
        super().__init__(xcoms)
        self.task_id = task_id

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value


def test_an_empty_plan_approves_nothing_and_items_arriving_later_are_refused_unsent(requests_mock) -> None:
    """The plan found nothing (under any threshold); the reversal task's input then holds an item: refused."""
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    approval = {**GATE.receipt("plan"), "threshold": 5}
    xcoms: dict[tuple[str, str], Any] = {}
    plan = CancelPointsOperator(task_id="plan", unique_ids=[], dry_run=True, approval=approval)
    planned = plan.execute({"ti": RunTI(xcoms, "plan")})
    assert planned["planned"] == 0 and planned["digest"] == ap.plan_digest([])
    assert xcoms[("plan", ap.PLANNED_KEYS)] == []
    xcoms[("plan", "return_value")] = planned  # what Airflow pushes of a task's result
    xcoms[("approval.decide", ap.ROUTE)] = {"route": ap.UNDER_THRESHOLD, "plans": {"plan": planned}}
    cancel = CancelPointsOperator(task_id="cancel", unique_ids=[4711], approval=approval, max_items=10)
    summary = cancel.execute({"ti": RunTI(xcoms, "cancel")})
    assert summary["not_approved"] == 1 and summary["succeeded"] == 0
    assert [f["unique_id"] for f in summary["failures"]] == [4711]
    assert summary["approval"]["basis"] == ap.UNDER_THRESHOLD
    assert requests_mock.call_count == 0  # nothing went over the wire, not even a token request


def test_the_gates_max_items_cap_bounds_a_task_that_sets_none(requests_mock) -> None:
    """A reversal task under the gate without max_items is held to the gate's cap (a broken join stops there)."""
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    keys = [str(n) for n in range(1, 151)]
    approval = {**ap.ApprovalGate(threshold=1000, max_items=100).receipt("plan"), "threshold": 1000}
    found = xcoms(keys)
    found[("approval.decide", ap.ROUTE)] = {
        "route": ap.UNDER_THRESHOLD,
        "plans": {"plan": {"digest": ap.plan_digest(keys), "planned": len(keys)}},
    }
    cancel = CancelPointsOperator(task_id="cancel", unique_ids=[int(k) for k in keys], approval=approval)
    with pytest.raises(AirflowFailException, match="150 unique_ids to send, above max_items=100"):
        cancel.execute({"ti": RunTI(found, "cancel")})
    assert requests_mock.call_count == 0


def test_a_mapped_plan_is_refused_by_name() -> None:
    """A mapped dry run gives one summary per shard (a list): the gate says so instead of an AttributeError."""
    found = xcoms(route={"route": ap.UNDER_THRESHOLD, "plans": {}})
    found[("plan", "return_value")] = [found[("plan", "return_value")], found[("plan", "return_value")]]
    with pytest.raises(AirflowFailException, match=r"the plan 'plan' is a mapped task \(2 plans\)"):
        rc.receipt(spec(), FakeTI(found), "CancelPointsOperator")
    with pytest.raises(AirflowFailException, match=r"is a mapped task .*nothing was sent"):
        ap._plans(FakeTI(found), ["plan"])
