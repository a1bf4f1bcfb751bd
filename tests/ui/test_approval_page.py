"""The Reversals page shows each run's approval receipt and finds runs by approver (DuckDB, SQLite, PostgreSQL).

The rows are what a reversal task writes under a receipt (tests/e2e/test_daily_approval.py proves the
operators write them): one run approved by a person, with an item outside the approved plan, and one
run under the threshold.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.ui import seed
from tests.ui.conftest import _write

APPROVED_RUN = "manual__approved_by_dana"
UNDER_RUN = "manual__under_threshold"
DIGEST, SMALL = "ab" * 32, "cd" * 32


def receipt_rows(now: datetime) -> list:
    at = now - timedelta(hours=1)
    approved = {"approved_by_id": "u-17", "approved_by_name": "dana", "approved_at": at - timedelta(minutes=5)}
    rows = []
    for uid in (7001, 7002, 7003):
        base = seed._row("xoxoday", str(uid), {"unique_id": uid}, True, at, run_id=APPROVED_RUN)
        receipt = {**approved, "approval_digest": DIGEST, "approval_planned": 3}
        rows.append(base._replace(status="sending", **receipt))
        rows.append(base._replace(**receipt))
    late = seed._row(
        "xoxoday",
        "7004",
        {"unique_id": 7004},
        False,
        at,
        kind="rejected",
        code="not_approved",
        message="not in the plan approved as abababababababab (3 items): not sent",
        run_id=APPROVED_RUN,
    )
    rows.append(late._replace(**approved, approval_digest=DIGEST, approval_planned=3))
    small = seed._row(
        "capillary", "600/P-1/E-1", {"customer_id": 600, "promotion_id": "P-1", "earn_id": "E-1"}, True, at
    )
    small = small._replace(run_id=UNDER_RUN, task_id="revoke_earns", approval_digest=SMALL, approval_planned=1)
    rows += [small._replace(status="sending"), small]
    return rows


@pytest.fixture
def receipts(ledger):
    _write(ledger.backend, ledger.path, ledger.table, receipt_rows(datetime.now(timezone.utc).replace(tzinfo=None)))
    return ledger


def test_runs_show_who_approved_when_and_planned_vs_sent(receipts, make_client, token) -> None:
    client = make_client(token=token)
    runs = {r["run_id"]: r for r in client.get("/loyalty/api/summary").json()["runs"]}
    [approved] = runs[APPROVED_RUN]["approvals"]
    assert approved | {"approved_at": None} == {
        "vendor": "xoxoday",
        "approved_by_id": "u-17",
        "approved_by_name": "dana",
        "approved_at": None,
        "digest": DIGEST,
        "planned": 3,
        "sent": 3,
        "not_approved": 1,
    }
    assert approved["approved_at"] is not None
    [under] = runs[UNDER_RUN]["approvals"]
    assert (
        under["approved_by_name"] is None and under["digest"] == SMALL and (under["planned"], under["sent"]) == (1, 1)
    )
    # runs without a receipt (the seeded history) show none
    assert all(r["approvals"] == [] for k, r in runs.items() if k not in (APPROVED_RUN, UNDER_RUN))

    page = client.get("/loyalty/").text
    assert "xoxoday: approved by <strong>dana</strong> (u-17)" in page
    assert "3 planned / 3 sent" in page and "1 not approved" in page
    assert "capillary: under the approval threshold · 1 planned / 1 sent" in page


@pytest.mark.parametrize("query", ["dana", "u-17"])
def test_search_finds_the_items_an_approver_approved(receipts, make_client, token, query) -> None:
    page = make_client(token=token).get("/loyalty/api/items", params={"q": query}).json()
    assert sorted(item["item_key"] for item in page["items"]) == ["7001", "7002", "7003", "7004"]
    assert page["total"] == 4
