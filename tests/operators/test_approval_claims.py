"""An approved run beside other attempts: claims, the receipt and the summary's accounting together.

A real SQLite ledger file; another attempt's live claim written through the claim module; the
vendor is requests_mock (what went over the wire is read from its history).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from airflow_provider_loyalty.coordination import claims
from airflow_provider_loyalty.coordination.claims import Owner
from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.ledger import ReversalLedger
from airflow_provider_loyalty.operators import approval as ap
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_approval import RunTI
from tests.operators.test_claims_in_runs import CLAIMS, OTHER_RUN, TABLE, claim_as
from tests.operators.test_operators import API, echo_cancel, sent_ids

GATE = ap.ApprovalGate(threshold=5, max_items=100)


@pytest.fixture
def ledger_file(monkeypatch, tmp_path):
    path = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    db = sqlite3.connect(path)
    db.execute(claims.create_table_sql(CLAIMS))
    db.commit()
    db.close()
    return path


def test_every_item_is_accounted_for_and_every_row_written_carries_the_receipt(
    requests_mock, xoxoday_conn, ledger_file
):
    approval = {**GATE.receipt("plan"), "threshold": 5}
    xcoms: dict[tuple[str, str], Any] = {}
    run = {"dag_id": "d", "run_id": "r1", "task_id": "plan", "map_index": -1, "try_number": 1}
    # item 3 was settled by an earlier run; the plan (a dry run) leaves it out
    done = ReversalLedger("ledger")
    done.record("xoxoday", [_success(3)], {**run, "run_id": "earlier"})
    done.close()
    plan = CancelPointsOperator(
        task_id="plan", unique_ids=[1, 2, 3, 4, 5, 6], dry_run=True, approval=approval, ledger_conn_id="ledger"
    )
    planned = plan.execute({"ti": RunTI(xcoms, "plan")})
    assert planned["planned"] == 5 and xcoms[("plan", ap.PLANNED_KEYS)] == ["1", "2", "4", "5", "6"]
    xcoms[("plan", "return_value")] = planned
    answered = {
        "chosen_options": ["Approve"],
        "responded_by_user": {"id": "7", "name": "dana"},
        "responded_at": "2026-12-07T10:00:00+00:00",
    }
    xcoms[("approval.approve", ap.ANSWER)] = answered
    xcoms[("approval.approve", ap.SHOWN)] = {"plan": {"digest": planned["digest"], "planned": 5}}
    # another attempt holds live claims on 1 and 2; 7 and 8 reached the input after the plan; 4 is refused
    other = Owner(OTHER_RUN, host="worker-b", pid=4711)
    claim_as(ledger_file, other, ["1", "2"], at=time.time())
    requests_mock.post(API, json=echo_cancel(fail={4}))
    cancel = CancelPointsOperator(
        task_id="cancel",
        unique_ids=[1, 2, 3, 4, 5, 6, 7, 8],
        approval=approval,
        ledger_conn_id="ledger",
        max_failed_ratio=1.0,
    )
    s = cancel.execute({"ti": RunTI(xcoms, "cancel")})

    assert sorted(i for batch in sent_ids(requests_mock) for i in batch) == [4, 5, 6]
    assert (s["succeeded"], s["skipped"], s["claimed_elsewhere"], s["not_approved"]) == (2, 1, 2, 2)
    assert s["failed"] == 3  # 4 refused, 7 and 8 not approved
    assert s["succeeded"] + s["failed"] + s["skipped"] + s["claimed_elsewhere"] == s["requested"] == 8
    db = sqlite3.connect(ledger_file)
    rows = db.execute(
        f"SELECT item_key, status, code, approved_by_id, approved_by_name, approval_digest FROM {TABLE} "
        "WHERE task_id = 'cancel' ORDER BY item_key, recorded_at"
    ).fetchall()
    db.close()
    assert {r[0] for r in rows} == {"4", "5", "6", "7", "8"}  # nothing of the other owner's items, nor the done one
    assert {(r[3], r[4], r[5]) for r in rows} == {("7", "dana", planned["digest"])}  # intents and refusals too
    assert [(r[0], r[1], r[2]) for r in rows if r[0] in "78"] == [
        ("7", "failed", "not_approved"),
        ("8", "failed", "not_approved"),
    ]


def _success(uid: int):
    from airflow_provider_loyalty.outcomes import Outcome

    return Outcome.succeeded(PointItem(uid))
