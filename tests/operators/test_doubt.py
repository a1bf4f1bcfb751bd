"""Once a request may have reached the vendor, its items stay in doubt until the vendor settles them.

Whatever ends the exchange after an attempt went out — an unexpected error while reading the
answer, error pages after an unanswered attempt, a refusal, a refused renewal, a rate limit — the
ledger must not close the doubt with ``not_sent``, ``http_503`` or a refusal: the next run's
"already reversed" answer is then recorded as done (reconciled), not as a permanent refusal.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import AirflowException

from airflow_provider_loyalty.hooks import _clock
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import CAPILLARY_URL, XOXODAY_URL, set_connection
from tests.hooks.test_transport_auth import BAD_GZIP, CERT_REFUSED, PROXY_DOWN, loopback, plain_http
from tests.operators.test_operators import context, echo_revoke

API = f"{XOXODAY_URL}/chef/v1/oauth/api"
TOKEN = f"{XOXODAY_URL}/chef/v1/oauth/token/company"
REVOKE = f"{CAPILLARY_URL}/api_gateway/v1/promotions/revokeEarn"
ALREADY = {
    "data": {
        "cancelBalance": {
            "error": True,
            "recipients": [{"unique_id": 1, "success": False, "message": "Points already cancelled"}],
        }
    }
}
TIMEOUT: dict[str, Any] = {"exc": requests.exceptions.ReadTimeout}


@pytest.fixture
def ledger(monkeypatch, tmp_path) -> str:
    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda s: None)
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    return str(db)


def rows(db: str) -> list[tuple]:
    return (
        sqlite3.connect(db)
        .execute(
            "SELECT item_key, status, failure_kind, code, run_id FROM loyalty_reversal_ledger "
            "WHERE status <> 'sending' ORDER BY recorded_at"
        )
        .fetchall()
    )


def cancel(run_id: str) -> dict[str, Any]:
    return CancelPointsOperator(task_id="c", unique_ids=[1], ledger_conn_id="ledger").execute(context(run_id))


def day_two_reconciles(requests_mock, db: str) -> None:
    """The next run hears "already cancelled" for the item in doubt: recorded done, not refused."""
    requests_mock.post(API, json=ALREADY)
    summary = cancel("day2")
    assert (summary["succeeded"], summary["reconciled"], summary["failed"]) == (1, 1, 0)
    assert rows(db)[-1][:4] == ("1", "succeeded", None, "already_reversed")


@pytest.mark.parametrize(
    "day_one",
    [
        pytest.param([TIMEOUT, *[{"status_code": 503, "text": "busy"}] * 4], id="timeout_then_error_pages"),
        pytest.param([TIMEOUT, {"status_code": 400, "json": {"error": "bad_request"}}], id="timeout_then_refusal"),
        pytest.param(
            [TIMEOUT, {"status_code": 200, "text": "[" * 100_000 + "]" * 100_000}], id="timeout_then_too_deep_json"
        ),
        pytest.param(  # a wait beyond rate_limit_timeout: the task stops at once
            [TIMEOUT, {"status_code": 429, "text": "slow down", "headers": {"Retry-After": "3600"}}],
            id="timeout_then_rate_limited",
        ),
        pytest.param(
            [TIMEOUT, {"status_code": 302, "headers": {"Location": "/elsewhere"}}], id="timeout_then_redirect"
        ),
        pytest.param([TIMEOUT, BAD_GZIP], id="timeout_then_unreadable_2xx"),
        pytest.param([TIMEOUT, *[{"exc": CERT_REFUSED}] * 4], id="timeout_then_tls_handshake_failures"),
    ],
)
def test_an_unanswered_attempt_keeps_the_item_in_doubt(requests_mock, xoxoday_conn, ledger, day_one) -> None:
    requests_mock.post(API, day_one)
    with pytest.raises(AirflowException):
        cancel("day1")
    assert requests_mock.call_count >= 2  # the timed-out attempt went out, and was resent
    assert rows(ledger)[-1][1:4] == ("failed", "transient", "no_answer")
    day_two_reconciles(requests_mock, ledger)


def test_a_refused_renewal_after_an_unanswered_attempt_keeps_the_item_in_doubt(
    requests_mock, xoxoday_conn, ledger
) -> None:
    """Attempt 1 times out, the resend meets 401, the refresh is refused: fatal, yet the item stays in doubt."""
    requests_mock.post(API, [TIMEOUT, {"status_code": 401, "json": {"error": "invalid_token"}}])
    requests_mock.post(TOKEN, status_code=400, json={"error": "invalid_grant"})
    with pytest.raises(AirflowException, match="refresh"):
        cancel("day1")
    assert rows(ledger)[-1][1:4] == ("failed", "transient", "no_answer")


def test_an_error_after_the_request_left_keeps_its_items_in_doubt(
    requests_mock, xoxoday_conn, ledger, monkeypatch
) -> None:
    """A bug or an answer no reader foresaw, once the request went out: unknown (in doubt), never not_sent."""
    import airflow_provider_loyalty.hooks.xoxoday as hook_module

    def unforeseen(items, balance):
        raise RuntimeError("an answer nobody foresaw")

    reader = hook_module.interpret_cancel
    monkeypatch.setattr(hook_module, "interpret_cancel", unforeseen)
    requests_mock.post(API, json={"data": {"cancelBalance": {"error": False, "recipients": []}}})
    with pytest.raises(AirflowException):
        cancel("day1")
    assert requests_mock.call_count == 1
    assert rows(ledger)[-1][1:4] == ("failed", "transient", "unknown")
    monkeypatch.setattr(hook_module, "interpret_cancel", reader)
    day_two_reconciles(requests_mock, ledger)


def test_an_error_before_the_request_left_is_not_sent(requests_mock, xoxoday_conn, ledger, monkeypatch) -> None:
    """The other side of the line: a failure before sending leaves nothing in doubt."""
    import airflow_provider_loyalty.hooks.xoxoday as hook_module

    def broken(values):
        raise RuntimeError("before sending")

    monkeypatch.setattr(hook_module, "point_items", broken)
    with pytest.raises(AirflowException):
        cancel("day1")
    assert requests_mock.call_count == 0
    assert rows(ledger)[-1][1:4] == ("failed", "transient", "not_sent")


@pytest.mark.parametrize("stray", ["\u00b2", "1" * 5000], ids=["superscript_two", "5000_digits"])
def test_a_stray_listing_does_not_hide_a_confirmed_success(requests_mock, xoxoday_conn, ledger, stray) -> None:
    """A listing with an id that is no JSON integer is no outcome of ours, and no reason to crash."""
    recipients = [{"unique_id": 1, "success": True, "message": "ok"}, {"unique_id": stray, "success": True}]
    requests_mock.post(API, json={"data": {"cancelBalance": {"error": False, "recipients": recipients}}})
    assert cancel("day1")["succeeded"] == 1
    assert rows(ledger)[-1][1:4] == ("succeeded", None, None)


def test_an_int_subclass_customer_id_is_sent_like_an_int(requests_mock, capillary_conn) -> None:
    """Database drivers and enums hand out int subclasses: the operator and the hook judge them alike."""

    class DriverInt(int):
        pass

    requests_mock.post(REVOKE, json=echo_revoke())
    summary = RevokeEarnOperator(task_id="r", earns=[(DriverInt(566881933), "P1", "E1")]).execute(context())
    assert summary["succeeded"] == 1
    assert requests_mock.last_request.json()["customerId"] == 566881933


def test_capillary_refusal_after_an_unanswered_attempt_keeps_the_earns_in_doubt(
    requests_mock, capillary_conn, ledger
) -> None:
    """The same rule in the other hook: a whole-request refusal after a timeout is no refusal of ours."""
    refusal = {"status_code": 400, "json": {"errors": [{"code": 8015, "message": "Customer not found"}]}}
    requests_mock.post(REVOKE, [TIMEOUT, refusal])
    op = RevokeEarnOperator(task_id="r", earns=[(5, "P1", "E1")], ledger_conn_id="ledger")
    with pytest.raises(AirflowException):
        op.execute(context("day1"))
    assert rows(ledger)[-1][1:4] == ("failed", "transient", "no_answer")
    requests_mock.post(REVOKE, json=echo_revoke({"E1": 731}))
    summary = RevokeEarnOperator(task_id="r", earns=[(5, "P1", "E1")], ledger_conn_id="ledger").execute(context("day2"))
    assert (summary["succeeded"], summary["reconciled"]) == (1, 1)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"status_code": 303, "headers": {"Location": "/elsewhere"}}, id="see_other"),
        pytest.param(BAD_GZIP, id="unreadable_2xx"),
    ],
)
def test_an_answer_saying_processed_keeps_the_item_in_doubt(requests_mock, xoxoday_conn, ledger, answer) -> None:
    """A 303 after a POST (processed, see there) or a 2xx we cannot decode: sent once, in doubt, not unsent."""
    requests_mock.post(API, [answer])
    with pytest.raises(AirflowException):
        cancel("day1")
    assert requests_mock.call_count == 1
    assert rows(ledger)[-1][1:4] == ("failed", "transient", "no_answer")
    day_two_reconciles(requests_mock, ledger)


def revoke_bad_earn(run_id: str) -> dict[str, Any]:
    return RevokeEarnOperator(task_id="r", earns=[(5, "P1", "E1")], ledger_conn_id="ledger").execute(context(run_id))


def test_a_tls_handshake_that_failed_sent_nothing_so_a_later_731_is_no_success(monkeypatch, ledger) -> None:
    """https:// on a plain-HTTP port: nothing left, so the next run's 731 ("invalid earn") stays a refusal."""
    with loopback(plain_http) as (port, received):
        set_connection(
            monkeypatch,
            "capillary_default",
            conn_type="capillary",
            host=f"https://127.0.0.1:{port}",
            login="till.one",
            password="till-password-PWD",
        )
        with pytest.raises(AirflowException, match="TLS handshake"):
            revoke_bad_earn("day1")
    assert received and not any(b"POST" in data for data in received)  # TLS ClientHellos only
    assert rows(ledger)[-1][1:4] == ("failed", "transient", "unavailable")
    set_connection(monkeypatch, "capillary_default", conn_type="capillary", host=CAPILLARY_URL, login="t", password="p")
    import requests_mock as mocking

    with mocking.Mocker() as vendor:
        vendor.post(REVOKE, json=echo_revoke({"E1": 731}))
        with pytest.raises(AirflowException, match="731"):
            revoke_bad_earn("day2")
        assert vendor.call_count == 1
    assert rows(ledger)[-1][1:4] == ("failed", "permanent", "731")


@pytest.mark.parametrize("before", [CERT_REFUSED, PROXY_DOWN], ids=["certificate_refused", "proxy_down"])
def test_a_resend_after_a_failure_before_sending_does_not_reconcile(
    requests_mock, capillary_conn, ledger, before
) -> None:
    """Nothing left on the first attempt: the resend's 731 is the vendor's word on the earn, a refusal."""
    requests_mock.post(REVOKE, [{"exc": before}, {"json": echo_revoke({"E1": 731})}])
    with pytest.raises(AirflowException, match="731"):
        revoke_bad_earn("day1")
    assert requests_mock.call_count == 2
    assert rows(ledger)[-1][1:4] == ("failed", "permanent", "731")
