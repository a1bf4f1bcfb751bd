"""Claims in a run of the operator: what goes over the wire and what the ledger holds.

A real SQLite ledger file; the other attempts are real claims written through the claim module
(another host, or this host with a pid that no longer runs); the vendor is requests_mock.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from airflow_provider_loyalty.coordination import claims
from airflow_provider_loyalty.coordination.claims import Owner
from airflow_provider_loyalty.hooks._retry import RetryPolicy
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_concurrent_runs import refuse_as_cancelled
from tests.operators.test_operators import API, context, echo_cancel, sent_ids

TABLE = "loyalty_reversal_ledger"
CLAIMS = claims.claims_table(TABLE)
OTHER_RUN = {"dag_id": "d", "run_id": "manual__other", "task_id": "t", "map_index": 3, "try_number": 1}


@pytest.fixture
def ledger_file(monkeypatch, tmp_path):
    path = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    db = sqlite3.connect(path)
    db.execute(claims.create_table_sql(CLAIMS))
    db.commit()
    db.close()
    return path


def sent_by(owner: Owner, ids: list[int]) -> None:
    """``owner`` wrote the intent of ``ids`` (its fence let it send them) and never answered."""
    from airflow_provider_loyalty.items import PointItem
    from airflow_provider_loyalty.ledger import ReversalLedger

    ledger = ReversalLedger("ledger")
    ledger.record_intent("xoxoday", [PointItem(i) for i in ids], owner.run)
    ledger.close()


def claim_as(path, owner: Owner, keys: list[str], *, at: float, lease: float = 60.0) -> claims.ClaimResult:
    db = sqlite3.connect(path)
    try:
        got = claims.claim(db, CLAIMS, "?", "xoxoday", keys, owner, now=at, lease=lease)
        db.commit()
        return got
    finally:
        db.close()


def ledger_rows(path, where: str = "1 = 1") -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            f"SELECT item_key, status, failure_kind, code, message FROM {TABLE} WHERE {where} ORDER BY item_key, recorded_at"
        ).fetchall()
    finally:
        db.close()


def claim_rows(path) -> dict[str, tuple]:
    db = sqlite3.connect(path)
    try:
        return {r[0]: r[1:] for r in db.execute(f"SELECT item_key, token, lease_expiry, epoch FROM {CLAIMS}")}
    finally:
        db.close()


def test_items_under_another_live_claim_are_not_sent_and_are_counted_apart(requests_mock, xoxoday_conn, ledger_file):
    other = Owner(OTHER_RUN, host="worker-b", pid=4711)
    claim_as(ledger_file, other, ["1", "2", "3"], at=time.time())
    requests_mock.post(API, json=echo_cancel())
    s = CancelPointsOperator(task_id="t", unique_ids=[1, 2, 3, 4, 5, 6], ledger_conn_id="ledger").execute(context())
    assert sent_ids(requests_mock) == [[4, 5, 6]]
    assert (s["succeeded"], s["failed"], s["skipped"], s["claimed_elsewhere"]) == (3, 0, 0, 3)
    assert s["succeeded"] + s["failed"] + s["skipped"] + s["claimed_elsewhere"] == s["requested"] == 6
    assert s["claimed_by"] == {other.label: 3}
    assert "run manual__other, task t[3] try 1 on worker-b (pid 4711)" in s["claimed_by"]
    assert {k for k, *_ in ledger_rows(ledger_file)} == {"4", "5", "6"}  # nothing of the other owner's items
    rows = claim_rows(ledger_file)
    assert {k: r[0] for k, r in rows.items() if k in "123"} == {k: other.token for k in "123"}  # left alone
    assert all(rows[k][1] is None for k in "456")  # released once their outcome was written


def test_an_expired_claim_is_taken_over_and_what_its_owner_sent_is_in_doubt(requests_mock, xoxoday_conn, ledger_file):
    """The owner fenced and wrote the intent of 5 (one transaction), sent it, and died; 6 it never sent.

    The new attempt takes both over with a higher epoch; 5 is in doubt (its intent), so "already
    cancelled" reconciles it; 6 has no intent, so the same answer stays a refusal.
    """
    other = Owner(OTHER_RUN, host="worker-b", pid=4711)
    claim_as(ledger_file, other, ["5", "6"], at=time.time() - 120, lease=60)
    sent_by(other, [5])
    requests_mock.post(API, json=refuse_as_cancelled())
    s = CancelPointsOperator(task_id="t", unique_ids=[5, 6], ledger_conn_id="ledger", max_failed_ratio=1).execute(
        context()
    )
    assert sent_ids(requests_mock) == [[5, 6]]
    assert (s["succeeded"], s["reconciled"], s["failed"], s["claimed_elsewhere"]) == (1, 1, 1, 0)
    outcomes = ledger_rows(ledger_file, "status <> 'sending'")
    assert [(k, st, c) for k, st, _, c, _ in outcomes] == [
        ("5", "succeeded", "already_reversed"),
        ("6", "failed", "refused"),
    ]
    assert {k: r[2] for k, r in claim_rows(ledger_file).items()} == {"5": 2, "6": 2}  # a higher epoch
    db = sqlite3.connect(ledger_file)
    epochs = db.execute(f"SELECT status, epoch FROM {TABLE} WHERE run_id = 'r1' GROUP BY status, epoch").fetchall()
    db.close()
    assert sorted(epochs) == [("failed", 2), ("sending", 2), ("succeeded", 2)]  # the epoch goes with every row


def test_a_claim_taken_over_mid_run_fences_the_next_request_and_supersedes_a_late_refusal(
    requests_mock, xoxoday_conn, ledger_file
):
    """While request 1 (ids 1, 2) is at the vendor, another attempt takes over ids 2 and 3 (this one
    paused past its lease). Request 1's refusal of 2 is kept as a fact but settles nothing; request 2
    (ids 3, 4) is not sent at all."""
    new_owner = Owner(OTHER_RUN, host="worker-b", pid=4711)

    def take_over(ids: list[int]) -> None:
        if ids == [1, 2]:
            db = sqlite3.connect(ledger_file)
            db.execute(f"UPDATE {CLAIMS} SET lease_expiry = 0 WHERE item_key IN ('2', '3')")  # ran out
            db.commit()
            db.close()
            assert claim_as(ledger_file, new_owner, ["2", "3"], at=time.time()).expired.keys() == {"2", "3"}

    answer = refuse_as_cancelled(take_over)
    requests_mock.post(API, json=lambda request, ctx: answer(request, ctx))
    s = CancelPointsOperator(
        task_id="t",
        unique_ids=[1, 2, 3, 4],
        batch_size=2,
        max_concurrency=1,
        ledger_conn_id="ledger",
        max_failed_ratio=1,
    ).execute(context())
    assert sent_ids(requests_mock) == [[1, 2]]  # request 2 never left
    assert s["claimed_elsewhere"] == 2  # 2 (answered after the take-over) and 3 (fenced)
    assert s["succeeded"] + s["failed"] + s["skipped"] + s["claimed_elsewhere"] == s["requested"] == 4
    rows = ledger_rows(ledger_file)
    assert ("2", "failed", "transient", "superseded") in [r[:4] for r in rows]  # the fact, settling nothing
    assert "Points already cancelled" in next(m for k, st, *_, m in rows if k == "2" and st == "failed")
    assert [r for r in rows if r[0] == "3"] == []  # no intent: the fence refused it before the request
    assert ("4", "failed", "transient", "not_sent") in [r[:4] for r in rows]
    assert ("1", "failed", "permanent") in [r[:3] for r in rows]  # item 1 was still its own: a refusal
    claimed = claim_rows(ledger_file)
    assert claimed["2"][0] == claimed["3"][0] == new_owner.token  # the new owner keeps them


def test_the_claims_of_a_process_gone_from_this_host_are_taken_over_at_once(requests_mock, xoxoday_conn, ledger_file):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Owner(OTHER_RUN, pid=int(gone.stdout))  # this host, a pid that no longer runs
    assert not claims.pid_alive(dead.pid)
    claim_as(ledger_file, dead, ["7"], at=time.time())
    sent_by(dead, [7])
    requests_mock.post(API, json=refuse_as_cancelled())
    s = CancelPointsOperator(task_id="t", unique_ids=[7], ledger_conn_id="ledger").execute(context())
    assert sent_ids(requests_mock) == [[7]]
    assert (s["succeeded"], s["reconciled"], s["claimed_elsewhere"]) == (1, 1, 0)


def test_a_retry_waits_out_the_lease_of_its_own_earlier_try_on_another_host(requests_mock, xoxoday_conn, ledger_file):
    earlier = Owner({**context()["ti"].__dict__, "try_number": 1}, host="worker-a", pid=4711)
    claim_as(ledger_file, earlier, ["8"], at=time.time(), lease=1.5)
    sent_by(earlier, [8])
    requests_mock.post(API, json=refuse_as_cancelled())
    s = CancelPointsOperator(
        task_id="t", unique_ids=[8, 9], ledger_conn_id="ledger", claim_lease_seconds=1.5, max_failed_ratio=1
    ).execute(context(try_number=2))
    assert sent_ids(requests_mock) == [[8, 9]]
    assert s["claimed_elsewhere"] == 0 and s["reconciled"] == 1  # 8 was in doubt: its try 1 died holding it
    assert s["failed"] == 1  # 9 was never attempted before: "already cancelled" stays a refusal


def test_claims_off_sends_everything(requests_mock, xoxoday_conn, ledger_file):
    claim_as(ledger_file, Owner(OTHER_RUN, host="worker-b", pid=4711), ["1"], at=time.time())
    requests_mock.post(API, json=echo_cancel())
    s = CancelPointsOperator(task_id="t", unique_ids=[1, 2], ledger_conn_id="ledger", claim_lease_seconds=None).execute(
        context()
    )
    assert sent_ids(requests_mock) == [[1, 2]] and s["claimed_elsewhere"] == 0


def test_a_dry_run_claims_nothing(requests_mock, xoxoday_conn, ledger_file):
    CancelPointsOperator(task_id="t", unique_ids=[1, 2], ledger_conn_id="ledger", dry_run=True).execute(context())
    assert claim_rows(ledger_file) == {} and requests_mock.call_count == 0


@pytest.mark.parametrize("unanswered", ["read_timeout", "gateway_timeout"])
def test_a_request_left_unanswered_after_a_take_over_keeps_its_item_in_doubt(
    requests_mock, xoxoday_conn, ledger_file, unanswered
):
    """While request 1 (ids 1, 2) is at the vendor, another attempt takes id 2 over; the request then
    goes unanswered (a read timeout, a gateway's 504). The vendor may have applied it, so id 2 stays
    in doubt in the ledger (the next run reconciles an "already cancelled"), although this attempt
    no longer holds it and counts it apart."""
    import requests

    from airflow_provider_loyalty.ledger import ReversalLedger

    new_owner = Owner(OTHER_RUN, host="worker-b", pid=4711)

    def time_out(request, ctx):
        db = sqlite3.connect(ledger_file)
        db.execute(f"UPDATE {CLAIMS} SET lease_expiry = 0 WHERE item_key = '2'")  # ran out
        db.commit()
        db.close()
        assert claim_as(ledger_file, new_owner, ["2"], at=time.time()).expired.keys() == {"2"}
        if unanswered == "read_timeout":
            raise requests.exceptions.ReadTimeout("read timed out")
        ctx.status_code = 504
        return {"message": "upstream timed out"}

    requests_mock.post(API, json=time_out)
    s = CancelPointsOperator(
        task_id="t",
        unique_ids=[1, 2],
        ledger_conn_id="ledger",
        max_failed_ratio=1,
        max_concurrency=1,
        hook_params={"retry_policy": RetryPolicy(max_attempts=1)},
    ).execute(context())
    assert sent_ids(requests_mock) == [[1, 2]]
    assert s["claimed_elsewhere"] == 1  # 2: counted apart, its new owner's
    ledger = ReversalLedger("ledger")
    try:
        _, doubt = ledger.lookup("xoxoday", ["1", "2"])
    finally:
        ledger.close()
    assert set(doubt) == {"1", "2"}, ledger_rows(ledger_file)  # both were in the unanswered request


def test_items_are_claimed_a_chunk_ahead_of_sending_and_a_second_attempt_takes_those_not_reached(
    requests_mock, xoxoday_conn, ledger_file
):
    """Claims are made per chunk just ahead of sending, not for every item up front.

    While the first request is at the vendor, only the first chunk is claimed. Another attempt that
    starts then claims ids 301-400 (not reached yet) and records 450 as done without a claim left
    behind (its outcome and release in one transaction): this run leaves 301-400 to it, skips 450
    (its look-up after the claim sees the other outcome), and sends every other id once.
    """
    from airflow_provider_loyalty.items import PointItem
    from airflow_provider_loyalty.ledger import ReversalLedger
    from airflow_provider_loyalty.operators._run_claims import AHEAD
    from airflow_provider_loyalty.outcomes import Outcome

    assert AHEAD == 100  # the chunk the assertions below are drawn for
    other = Owner(OTHER_RUN, host="worker-b", pid=4711)
    live_at_first_send: list[set[str]] = []
    cancel = echo_cancel()

    def answer(request, ctx):
        if not live_at_first_send:
            live_at_first_send.append({k for k, (_, expiry, _) in claim_rows(ledger_file).items() if expiry})
            got = claim_as(ledger_file, other, [str(i) for i in range(301, 401)], at=time.time())
            assert set(got.mine) == {str(i) for i in range(301, 401)}  # nobody held them yet
            ledger = ReversalLedger("ledger")
            ledger.insert(ledger.rows("xoxoday", [Outcome.succeeded(PointItem(450))], OTHER_RUN))
            ledger.close()
        return cancel(request, ctx)

    requests_mock.post(API, json=answer)
    s = CancelPointsOperator(
        task_id="t", unique_ids=list(range(1, 601)), batch_size=10, max_concurrency=1, ledger_conn_id="ledger"
    ).execute(context())
    assert live_at_first_send == [{str(i) for i in range(1, 101)}]  # the first chunk, nothing beyond it
    sent = [i for ids in sent_ids(requests_mock) for i in ids]
    assert sorted(sent) == [i for i in range(1, 601) if not 301 <= i <= 400 and i != 450]  # each once
    assert (s["succeeded"], s["skipped"], s["claimed_elsewhere"], s["failed"]) == (499, 1, 100, 0)
    assert s["claimed_by"] == {other.label: 100}
    rows = claim_rows(ledger_file)
    assert {k for k, r in rows.items() if r[0] == other.token} == {str(i) for i in range(301, 401)}
    assert all(r[1] is None for k, r in rows.items() if r[0] != other.token)  # ours: all released
    assert [k for k, *_ in ledger_rows(ledger_file, "item_key = '450'")] == ["450"]  # only the other's row
