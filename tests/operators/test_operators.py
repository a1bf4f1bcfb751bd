"""Operators over requests-mock: exact request sequences, summaries, failure decisions, dry run, ledger."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import CAPILLARY_URL, XOXODAY_URL, set_connection
from tests.operators.conftest import succeeded_row

API = f"{XOXODAY_URL}/chef/v1/oauth/api"
REVOKE = f"{CAPILLARY_URL}/api_gateway/v1/promotions/revokeEarn"
P1, P2 = "69117663b1cfc114606fd7fb", "69058646b1cfc114606f7bbe"


class FakeTI(SimpleNamespace):
    def __init__(self, run_id: str = "r1", try_number: int = 1) -> None:
        super().__init__(dag_id="d", run_id=run_id, task_id="t", map_index=-1, try_number=try_number, pushed={})

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def context(run_id: str = "r1", try_number: int = 1) -> dict:
    return {"ti": FakeTI(run_id, try_number)}


def echo_cancel(fail: set[int] = frozenset(), omit: set[int] = frozenset()):
    """A vendor that cancels what it is asked, except ``fail`` (refused) and ``omit`` (not mentioned)."""

    def answer(request, ctx):
        ids = [r["unique_id"] for r in request.json()["variables"]["recipients_data"]["recipients"]]
        recipients = [
            {"unique_id": i, "success": i not in fail, "message": "nope" if i in fail else "ok"}
            for i in ids
            if i not in omit
        ]
        refused = any(not r["success"] for r in recipients)  # the flag of this answer, not of the test
        return {"data": {"cancelBalance": {"error": refused, "message": "", "recipients": recipients}}}

    return answer


def echo_revoke(codes: dict[str, int] | None = None):
    codes = codes or {}

    def answer(request, ctx):
        body = request.json()
        revoked, errors = [], []
        for d in body["earnRevokeDetails"]:
            ok = [e for e in d["earnIds"] if e not in codes]
            if ok:
                revoked.append({"promotionId": d["promotionId"], "revokedEarnIds": ok, "status": "SUCCESS"})
            for e in d["earnIds"]:
                if e in codes:
                    errors.append(
                        {
                            "code": codes[e],
                            "message": f"code {codes[e]}",
                            "promotionId": d["promotionId"],
                            "earnIds": [e],
                        }
                    )
        return {"data": {"customerId": body["customerId"], "revokedDetails": revoked}, "errors": errors}

    return answer


def sent_ids(requests_mock) -> list[list[int]]:
    return [
        [r["unique_id"] for r in req.json()["variables"]["recipients_data"]["recipients"]]
        for req in requests_mock.request_history
        if req.url == API
    ]


def test_cancel_points_batches_and_summarises(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=echo_cancel())
    op = CancelPointsOperator(
        task_id="cancel", unique_ids=[(i,) for i in range(1, 1202)] + [(5,)], batch_size=500, max_concurrency=1
    )
    summary = op.execute(context())
    assert sent_ids(requests_mock) == [list(range(1, 501)), list(range(501, 1001)), list(range(1001, 1202))]
    assert summary["requested"] == 1201  # distinct ids; the duplicate row is counted apart
    assert summary["duplicates_removed"] == 1
    assert (summary["succeeded"], summary["failed"], summary["skipped"]) == (1201, 0, 0)
    assert summary["requests"] == 3 and summary["dry_run"] is False and summary["failures"] == []


def test_every_requested_item_is_accounted_for(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=echo_cancel(fail={2}, omit={3}))
    op = CancelPointsOperator(task_id="cancel", unique_ids=[1, 2, 3, 3], max_failed_ratio=1.0)
    s = op.execute(context())
    assert s["succeeded"] + s["failed"] + s["skipped"] == s["requested"] == 3
    assert s["duplicates_removed"] == 1
    assert sorted((f["unique_id"], f["code"]) for f in s["failures"]) == [(2, "refused"), (3, "unknown")]


def test_permanent_failures_fail_without_retry(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=echo_cancel(fail={2}))
    op = CancelPointsOperator(task_id="cancel", unique_ids=[1, 2, 3])
    ctx = context()
    with pytest.raises(AirflowFailException, match="1 of 3 unique_ids failed"):
        op.execute(ctx)
    assert ctx["ti"].pushed["return_value"]["failed"] == 1  # summary still readable downstream


def test_transient_failures_let_airflow_retry(requests_mock, xoxoday_conn, monkeypatch) -> None:
    from airflow_provider_loyalty.hooks import _clock

    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda s: None)
    requests_mock.post(API, [{"json": echo_cancel()}, *[{"status_code": 503}] * 5])
    op = CancelPointsOperator(task_id="cancel", unique_ids=list(range(1, 11)), batch_size=5, max_concurrency=1)
    with pytest.raises(AirflowException) as info:
        op.execute(context())
    assert not isinstance(info.value, AirflowFailException)
    assert "5 of 10" in str(info.value) and "5 transient" in str(info.value)
    assert requests_mock.call_count == 6


def test_max_failed_ratio_tolerates(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=echo_cancel(fail={1}))
    s = CancelPointsOperator(task_id="c", unique_ids=list(range(1, 11)), max_failed_ratio=0.1).execute(context())
    assert (s["succeeded"], s["failed"]) == (9, 1)
    requests_mock.post(API, json=echo_cancel(fail={1, 2}))
    with pytest.raises(AirflowFailException):
        CancelPointsOperator(task_id="c", unique_ids=list(range(1, 11)), max_failed_ratio=0.1).execute(context())


def test_bad_input_fails_before_any_call(requests_mock, xoxoday_conn) -> None:
    with pytest.raises(AirflowFailException, match="'abc'"):
        CancelPointsOperator(task_id="c", unique_ids=[1, "abc"]).execute(context())
    with pytest.raises(AirflowFailException, match="customer_id"):
        RevokeEarnOperator(task_id="r", earns=[(None, P1, "e")]).execute(context())
    assert requests_mock.call_count == 0


def test_empty_input_is_a_zero_summary(requests_mock, xoxoday_conn) -> None:
    s = CancelPointsOperator(task_id="c", unique_ids=[]).execute(context())
    assert (s["requested"], s["succeeded"], s["failed"], s["skipped"]) == (0, 0, 0, 0)
    assert requests_mock.call_count == 0


def test_dry_run_sends_nothing_not_even_for_a_token(requests_mock, monkeypatch) -> None:
    # a connection that would need a refresh and an OAuth one: still no call at all
    set_connection(
        monkeypatch,
        "xoxoday_default",
        conn_type="xoxoday",
        host=XOXODAY_URL,
        login="i",
        password="s",
        extra={"refresh_token": "r"},
    )
    set_connection(
        monkeypatch,
        "capillary_default",
        conn_type="capillary",
        host=CAPILLARY_URL,
        login="k",
        password="s",
        extra={"auth_type": "oauth"},
    )
    s = CancelPointsOperator(task_id="c", unique_ids=list(range(1, 702)), dry_run=True).execute(context())
    assert (s["dry_run"], s["planned"], s["requests"], s["succeeded"]) == (True, 701, 2, 0)
    assert s["plan"] == ["500 unique_ids", "201 unique_ids"]
    s = RevokeEarnOperator(
        task_id="r", earns=[(1, P1, "a"), (2, P1, "b")], dry_run="{{ params.x }}".replace("{{ params.x }}", "True")
    ).execute(context())
    assert (s["dry_run"], s["planned"], s["requests"]) == (True, 2, 2)
    assert requests_mock.call_count == 0


def test_revoke_earn_one_request_per_customer_with_codes(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, json=echo_revoke({"bad": 729}))
    rows = [(1, P1, "a"), (1, P2, "b"), (2, P1, "bad"), (2, P1, "c")]
    ctx = context()
    with pytest.raises(AirflowFailException, match="729 x1"):
        RevokeEarnOperator(task_id="r", earns=rows, max_concurrency=1).execute(ctx)
    bodies = [r.json() for r in requests_mock.request_history]
    assert bodies == [
        {
            "customerId": 1,
            "earnRevokeDetails": [{"promotionId": P1, "earnIds": ["a"]}, {"promotionId": P2, "earnIds": ["b"]}],
        },
        {"customerId": 2, "earnRevokeDetails": [{"promotionId": P1, "earnIds": ["bad", "c"]}]},
    ]
    s = ctx["ti"].pushed["return_value"]
    assert (s["succeeded"], s["failed"]) == (3, 1)
    assert s["failures"] == [
        {"customer_id": 2, "promotion_id": P1, "earn_id": "bad", "code": "729", "message": "code 729"}
    ]


def test_auth_failure_stops_the_run_and_accounts_for_everything(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, status_code=401, json={"errors": [{"code": 401, "message": "Unauthorized"}]})
    ctx = context()
    with pytest.raises(AirflowException, match="capillary_default.* refused") as info:
        RevokeEarnOperator(task_id="r", earns=[(c, P1, f"e{c}") for c in range(1, 30)], max_concurrency=2).execute(ctx)
    s = ctx["ti"].pushed["return_value"]
    refused = s["failure_codes"]["401"]  # the requests that met the 401: refused, not "not sent"
    assert refused == requests_mock.call_count <= 4  # stopped early, not 29 refused calls
    assert s["failure_codes"] == {"401": refused, "not_sent": 29 - refused}
    assert s["failed"] == 29 and s["failed_transient"] == 29 - refused
    assert f"29 earns planned: 0 succeeded (0 reconciled), 0 refused, 0 invalid, {refused} failed" in str(info.value)
    assert f"{29 - refused} not sent" in str(info.value)


def test_settings_are_checked(xoxoday_conn) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        CancelPointsOperator(task_id="c", unique_ids=[], batch_size=501)
    with pytest.raises(ValueError, match="max_failed_ratio"):
        CancelPointsOperator(task_id="c", unique_ids=[], max_failed_ratio=2)
    with pytest.raises(ValueError, match="max_concurrency"):
        RevokeEarnOperator(task_id="r", earns=[], max_concurrency=0)
    op = CancelPointsOperator(task_id="c", unique_ids=[], dry_run="{{ params.dry_run }}")
    op.plan_only = "maybe"
    with pytest.raises(AirflowFailException, match="dry_run must be true or false"):
        op.execute(context())


def test_ledger_skips_done_items_and_records_every_outcome(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(API, json=echo_cancel(fail={3}))
    op = CancelPointsOperator(task_id="c", unique_ids=[1, 2, 3], ledger_conn_id="ledger", max_failed_ratio=1.0)
    first = op.execute(context())
    assert (first["succeeded"], first["failed"], first["skipped"]) == (2, 1, 0)
    second = CancelPointsOperator(
        task_id="c", unique_ids=[1, 2, 3], ledger_conn_id="ledger", max_failed_ratio=1.0
    ).execute(context())
    # 1 and 2 are done; 3 was refused for good: reported as failed again, not resent
    assert (second["succeeded"], second["failed"], second["skipped"], second["requests"]) == (0, 1, 2, 0)
    assert second["failures"] == [{"unique_id": 3, "code": "refused", "message": "refused earlier: nope"}]
    assert sent_ids(requests_mock) == [[1, 2, 3]]
    third = CancelPointsOperator(
        task_id="c", unique_ids=[1, 2, 3], ledger_conn_id="ledger", max_failed_ratio=1.0, retry_refused=True
    ).execute(context())
    assert (third["failed"], third["skipped"]) == (1, 2)
    assert sent_ids(requests_mock) == [[1, 2, 3], [3]]
    rows = (
        sqlite3.connect(db)
        .execute(
            "SELECT item_key, status, failure_kind, code, dag_id, run_id, try_number FROM loyalty_reversal_ledger "
            "WHERE status <> 'sending'"
        )
        .fetchall()
    )
    intents = sqlite3.connect(db).execute(
        "SELECT item_key, COUNT(*) FROM loyalty_reversal_ledger WHERE status = 'sending' GROUP BY item_key"
    )
    assert sorted(intents) == [("1", 1), ("2", 1), ("3", 2)]  # one per send, written before it
    assert sorted(rows) == sorted(
        [
            ("1", "succeeded", None, None, "d", "r1", 1),
            ("2", "succeeded", None, None, "d", "r1", 1),
            ("3", "failed", "permanent", "refused", "d", "r1", 1),
            ("3", "failed", "permanent", "refused", "d", "r1", 1),
        ]
    )


def ledger_rows(db) -> list[tuple]:
    return (
        sqlite3.connect(db)
        .execute(
            "SELECT item_key, status, failure_kind, code FROM loyalty_reversal_ledger WHERE status <> 'sending' "
            "ORDER BY recorded_at, item_key"
        )
        .fetchall()
    )


def test_whole_request_refusal_is_not_settled(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    """A 403 (say, IP not allow-listed) fails the batch, but tomorrow's run sends it again."""
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(API, status_code=403, json={"error": "forbidden", "message": "IP not whitelisted"})
    with pytest.raises(AirflowFailException, match="http_403|forbidden"):
        CancelPointsOperator(task_id="c", unique_ids=[1, 2], ledger_conn_id="ledger").execute(context())
    assert {row[2] for row in ledger_rows(db)} == {"rejected"}
    requests_mock.post(API, json=echo_cancel())
    s = CancelPointsOperator(task_id="c", unique_ids=[1, 2], ledger_conn_id="ledger").execute(context())
    assert (s["succeeded"], s["failed"], s["skipped"]) == (2, 0, 0)


def test_refusals_from_earlier_runs_do_not_fail_every_later_run(requests_mock, xoxoday_conn, monkeypatch, tmp_path):
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    requests_mock.post(API, json=echo_cancel(fail={2}))
    with pytest.raises(AirflowFailException):
        CancelPointsOperator(task_id="c", unique_ids=[1, 2], ledger_conn_id="ledger").execute(context("day1"))
    s = CancelPointsOperator(task_id="c", unique_ids=[1, 2, 3], ledger_conn_id="ledger").execute(context("day2"))
    assert (s["succeeded"], s["failed"], s["failed_earlier"], s["skipped"]) == (1, 1, 1, 1)
    assert s["succeeded"] + s["failed"] + s["skipped"] == s["requested"] == 3


def test_a_retry_of_the_same_run_still_counts_its_refusals(requests_mock, xoxoday_conn, monkeypatch, tmp_path):
    """Try 1: 2 refused, 3 unanswered (transient: retry). Try 2 must not turn the refusal into success."""
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    requests_mock.post(API, json=echo_cancel(fail={2}, omit={3}))
    with pytest.raises(AirflowException) as first:
        CancelPointsOperator(task_id="c", unique_ids=[1, 2, 3], ledger_conn_id="ledger").execute(context("day1", 1))
    assert not isinstance(first.value, AirflowFailException)
    requests_mock.post(API, json=echo_cancel())
    with pytest.raises(AirflowFailException, match="1 of 3"):  # all three items are this run's
        CancelPointsOperator(task_id="c", unique_ids=[1, 2, 3], ledger_conn_id="ledger").execute(context("day1", 2))
    assert sent_ids(requests_mock) == [[1, 2, 3], [3]]


def already_cancelled(request, ctx):
    ids = [r["unique_id"] for r in request.json()["variables"]["recipients_data"]["recipients"]]
    recipients = [{"unique_id": i, "success": False, "message": "Points already cancelled"} for i in ids]
    return {"data": {"cancelBalance": {"error": True, "message": "", "recipients": recipients}}}


def test_already_cancelled_after_an_ambiguous_resend_is_reconciled(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path
) -> None:
    from airflow_provider_loyalty.hooks import _clock

    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda s: None)
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    # the first attempt timed out after the vendor applied it; the resend is answered "already cancelled"
    requests_mock.post(API, [{"exc": requests_exceptions().ReadTimeout}, {"json": already_cancelled}])
    s = CancelPointsOperator(task_id="c", unique_ids=[1], ledger_conn_id="ledger").execute(context())
    assert (s["succeeded"], s["reconciled"], s["failed"]) == (1, 1, 0)
    assert ledger_rows(db) == [("1", "succeeded", None, "already_reversed")]


def test_a_refusal_that_is_not_already_reversed_stays_a_refusal_after_a_resend(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path
) -> None:
    from airflow_provider_loyalty.hooks import _clock

    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda s: None)
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(API, [{"exc": requests_exceptions().ReadTimeout}, {"json": echo_cancel(fail={1})}])
    with pytest.raises(AirflowFailException, match=r"1 item: nope \[code refused\]: unique_id=1"):
        CancelPointsOperator(task_id="c", unique_ids=[1], ledger_conn_id="ledger").execute(context())
    assert ledger_rows(db) == [("1", "failed", "permanent", "refused")]


def test_already_cancelled_for_an_item_never_sent_is_a_refusal(requests_mock, xoxoday_conn, monkeypatch, tmp_path):
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    requests_mock.post(API, json=already_cancelled)
    with pytest.raises(AirflowFailException, match="Points already cancelled"):
        CancelPointsOperator(task_id="c", unique_ids=[1, 2], ledger_conn_id="ledger").execute(context())


def requests_exceptions():
    import requests

    return requests


def test_ledger_failure_stops_sending_and_keeps_answers_for_the_next_try(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path, airflow_db
) -> None:
    """The ledger dies after the first intent: that request's answer goes to the spool, nothing more is
    sent, and the next try writes the kept answer before it sends anything."""
    import airflow_provider_loyalty.ledger._connection as store
    from airflow_provider_loyalty.ledger import ReversalLedger

    monkeypatch.setattr(store, "BACKOFF_SECONDS", 0.0)
    db = tmp_path / "l.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(API, json=echo_cancel())
    # Every ledger write (an intent with its claim's fence, an outcome with its release) inserts
    # through ``_insert``: the ledger goes down after the first.
    real_insert = ReversalLedger._insert
    inserts: list[int] = []

    def failing_after_first(self, conn, rows, **kwargs):
        inserts.append(len(rows))
        if len(inserts) > 1:
            raise RuntimeError("warehouse down")
        real_insert(self, conn, rows, **kwargs)

    monkeypatch.setattr(ReversalLedger, "_insert", failing_after_first)
    ctx = context("spool-run")
    ctx["ti"].task_id = f"t_{tmp_path.name}"  # a spool of its own
    with pytest.raises(AirflowException, match="kept in Variable") as info:
        CancelPointsOperator(
            task_id="c", unique_ids=list(range(1, 101)), batch_size=5, max_concurrency=1, ledger_conn_id="ledger"
        ).execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    assert sent_ids(requests_mock) == [[1, 2, 3, 4, 5]]  # one intent recorded, one request sent
    s = ctx["ti"].pushed["return_value"]
    assert s["succeeded"] + s["failed"] == s["requested"] == 100
    assert s["succeeded"] == 5

    monkeypatch.setattr(ReversalLedger, "_insert", real_insert)
    s = CancelPointsOperator(
        task_id="c", unique_ids=list(range(1, 101)), batch_size=50, ledger_conn_id="ledger"
    ).execute(ctx)
    assert (s["skipped"], s["succeeded"], s["failed"]) == (5, 95, 0)  # the kept answers count as done
    assert sent_ids(requests_mock)[1:] == [list(range(6, 56)), list(range(56, 101))]
    done = sqlite3.connect(db).execute(
        "SELECT COUNT(DISTINCT item_key) FROM loyalty_reversal_ledger WHERE status = 'succeeded'"
    )
    assert done.fetchone() == (100,)


def test_an_unwritable_intent_sends_nothing(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    import airflow_provider_loyalty.ledger._connection as store
    from airflow_provider_loyalty.ledger import ReversalLedger

    monkeypatch.setattr(store, "BACKOFF_SECONDS", 0.0)
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    requests_mock.post(API, json=echo_cancel())

    def broken(self, conn, rows, **kwargs):  # every write inserts through it (an intent with its fence too)
        raise RuntimeError("disk full")

    monkeypatch.setattr(ReversalLedger, "_insert", broken)
    with pytest.raises(AirflowException, match="disk full"):
        CancelPointsOperator(task_id="c", unique_ids=[1, 2, 3], ledger_conn_id="ledger").execute(context())
    assert requests_mock.call_count == 0


def test_rate_limit_outlasting_the_budget_stops_the_run_for_a_later_retry(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, status_code=429, headers={"Retry-After": "3600"})
    ctx = context()
    with pytest.raises(AirflowException) as info:
        RevokeEarnOperator(task_id="r", earns=[(c, P1, f"e{c}") for c in range(1, 20)]).execute(ctx)
    assert not isinstance(info.value, AirflowFailException)
    assert requests_mock.call_count <= 16  # what was in flight, never 19 x 5 attempts
    assert ctx["ti"].pushed["return_value"]["failed_transient"] == 19


def test_an_answer_interrupted_while_recording_is_still_recorded() -> None:
    """A task timeout (a BaseException) while the first answer is being recorded loses nothing."""
    from airflow_provider_loyalty.items import PointItem
    from airflow_provider_loyalty.operators._runner import run_requests
    from airflow_provider_loyalty.outcomes import Outcome

    class Timeout(BaseException):
        pass

    recorded: list[int] = []

    def on_results(request: int, results: list) -> None:
        if request == 1 and not recorded:
            recorded.append(-1)
            raise Timeout
        recorded.append(request)

    with pytest.raises(Timeout):
        run_requests(
            [1, 2, 3],
            lambda r: [Outcome.succeeded(PointItem(r))],
            on_results,
            max_concurrency=1,
            unsent=lambda r, exc: [],
        )
    assert 1 in recorded


def test_on_invalid_skip_sends_the_valid_rows_and_records_the_invalid_ones(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path
) -> None:
    db = tmp_path / "l.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(API, json=echo_cancel())
    op = CancelPointsOperator(
        task_id="c", unique_ids=[1, "abc", 2, -5, 1], ledger_conn_id="ledger", on_invalid="skip", max_failed_ratio=0.5
    )
    s = op.execute(context())
    assert sent_ids(requests_mock) == [[1, 2]]
    assert (s["requested"], s["succeeded"], s["failed"], s["invalid"], s["duplicates_removed"]) == (4, 2, 2, 2, 1)
    assert s["succeeded"] + s["failed"] + s["skipped"] == s["requested"]
    assert [(f["row"], f["code"]) for f in s["failures"]] == [(2, "invalid"), (4, "invalid")]
    invalid = sqlite3.connect(db).execute(
        "SELECT item_key, code, message FROM loyalty_reversal_ledger WHERE status = 'invalid' ORDER BY item_key"
    )
    assert [(key, code, message) for key, code, message in invalid] == [
        ("invalid:-5", "invalid", "row 4: -5 (must be positive)"),
        ("invalid:abc", "invalid", "row 2: 'abc' (not an integer)"),
    ]


def test_invalid_rows_count_as_failures_in_the_ratio(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=echo_cancel())
    with pytest.raises(
        AirflowFailException,
        match=r"1 of 3 unique_ids failed this run.*Invalid input \(never sent\): 1 row: row 2: 'x' \(not an integer\)",
    ):
        CancelPointsOperator(task_id="c", unique_ids=[1, "x", 2], on_invalid="skip").execute(context())
    assert sent_ids(requests_mock) == [[1, 2]]  # the valid rows went through first


def test_on_invalid_fail_is_the_default_and_sends_nothing(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=echo_cancel())
    with pytest.raises(AirflowFailException, match=r"nothing was sent \(rows numbered from 1\): row 2: 'x'"):
        CancelPointsOperator(task_id="c", unique_ids=[1, "x", 2]).execute(context())
    assert requests_mock.call_count == 0
    with pytest.raises(ValueError, match="on_invalid"):
        CancelPointsOperator(task_id="c", unique_ids=[1], on_invalid="ignore")


def test_on_invalid_skip_for_earns(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, json=echo_revoke())
    s = RevokeEarnOperator(
        task_id="r",
        earns=[(1, P1, "a"), (0, P1, "b"), (2, "p/x", "c"), (2, P2, "d")],
        on_invalid="skip",
        max_failed_ratio=1.0,
    ).execute(context())
    assert (s["requested"], s["succeeded"], s["invalid"]) == (4, 2, 2)
    assert [f["row"] for f in s["failures"]] == [2, 3]


# --------------------------------------------------------------- found by adversarial review
def no_sleep(monkeypatch) -> None:
    from airflow_provider_loyalty.hooks import _clock

    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda s: None)


def test_an_item_stays_in_doubt_after_a_later_try_that_did_not_go_through(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path
) -> None:
    """Try 1 is sent and never answered; try 2 cannot connect; try 3's 'already cancelled' is try 1's echo."""
    no_sleep(monkeypatch)
    db = tmp_path / "l.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    op = lambda: CancelPointsOperator(task_id="c", unique_ids=[1], ledger_conn_id="ledger")  # noqa: E731
    requests_mock.post(API, exc=requests_exceptions().ReadTimeout)
    with pytest.raises(AirflowException, match="no_answer"):
        op().execute(context("r1", 1))
    requests_mock.post(API, exc=requests_exceptions().ConnectTimeout)
    with pytest.raises(AirflowException, match="unavailable"):
        op().execute(context("r1", 2))
    requests_mock.post(API, json=already_cancelled)
    s = op().execute(context("r1", 3))
    assert (s["succeeded"], s["reconciled"], s["failed"]) == (1, 1, 0)
    assert ledger_rows(db)[-1] == ("1", "succeeded", None, "already_reversed")


@pytest.mark.parametrize(
    ("first", "reconciled"),
    [
        pytest.param({"status_code": 503, "text": "<html>503</html>"}, False, id="error_page_503_not_processed"),
        pytest.param({"status_code": 504, "text": "<html>504</html>"}, True, id="gateway_timeout_504_maybe_applied"),
    ],
)
def test_a_731_after_an_error_page_is_a_refusal_after_a_gateway_timeout_reconciled(
    requests_mock, capillary_conn, monkeypatch, tmp_path, first, reconciled
) -> None:
    """Within one try: a 731 answering a resend is 'already revoked' only if the first attempt may have been applied."""
    no_sleep(monkeypatch)
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    refused = {
        "data": {"customerId": 5, "revokedDetails": []},
        "errors": [{"code": 731, "message": "Invalid earn id", "promotionId": P1, "earnIds": ["E1"]}],
    }
    requests_mock.post(REVOKE, [first, {"json": refused}])
    op = RevokeEarnOperator(task_id="r", earns=[(5, P1, "E1")], ledger_conn_id="ledger")
    if reconciled:
        assert op.execute(context())["reconciled"] == 1
    else:
        with pytest.raises(AirflowFailException, match=r"Invalid earn id \[code 731\]"):
            op.execute(context())


def test_a_2xx_whose_body_is_cut_off_is_no_answer_and_reconciled_next_day(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path
) -> None:
    db = tmp_path / "l.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(
        API,
        text='{"data":{"cancelBalance":{"recipients":[{"unique_id":1,"succ',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(AirflowException) as day1:
        CancelPointsOperator(task_id="c", unique_ids=[1], ledger_conn_id="ledger").execute(context("day1"))
    assert not isinstance(day1.value, AirflowFailException)  # processed, outcome unknown: retryable
    requests_mock.post(API, json=already_cancelled)
    s = CancelPointsOperator(task_id="c", unique_ids=[1], ledger_conn_id="ledger").execute(context("day2"))
    assert s["reconciled"] == 1
    assert [row[3] for row in ledger_rows(db)] == ["no_answer", "already_reversed"]


def test_a_vendor_message_the_ledger_cannot_store_is_stored_sanitised(
    requests_mock, xoxoday_conn, monkeypatch, tmp_path
) -> None:
    db = tmp_path / "l.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    recipients = [{"unique_id": 1, "success": True, "message": "ok \ud800 \x00 done"}]
    requests_mock.post(API, json={"data": {"cancelBalance": {"error": False, "recipients": recipients}}})
    s = CancelPointsOperator(task_id="c", unique_ids=[1], ledger_conn_id="ledger").execute(context())
    assert s["succeeded"] == 1
    message = sqlite3.connect(db).execute("SELECT message FROM loyalty_reversal_ledger WHERE status = 'succeeded'")
    assert message.fetchone() == ("ok \ufffd \ufffd done",)


@pytest.mark.parametrize("pattern", ["", ".*", "already"], ids=["empty", "anything", "matches_already_redeemed"])
def test_an_already_reversed_pattern_that_matches_any_refusal_is_refused(xoxoday_conn, pattern) -> None:
    with pytest.raises(ValueError, match="matches any refusal"):
        CancelPointsOperator(task_id="c", unique_ids=[1], already_reversed={"messages": [pattern]})


def test_two_runs_spooling_at_once_keep_both_answers(spool_variables) -> None:
    """Two runs of the same task (max_active_runs > 1) share a spool key: neither overwrites the other."""
    from airflow_provider_loyalty.ledger import spool

    run = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 1}
    key = spool.spool_key("ledger", "loyalty_reversal_ledger", run)

    def row(item: str) -> tuple:
        return succeeded_row(int(item), run)

    a, b = spool.LedgerSpool(key), spool.LedgerSpool(key)
    assert a.pending() == b.pending() == []  # both tries start with nothing kept
    b.add([row("2")])
    a.add([row("1")])
    replayer = spool.LedgerSpool(key)
    assert sorted(r[1] for r in replayer.pending()) == ["1", "2"]
    a.add([row("3")])  # kept while the replay was writing to the ledger
    replayer.clear()
    assert [r[1] for r in spool.LedgerSpool(key).pending()] == ["3"]
