"""Secrets never reach the ledger, the summary, exception texts or the Test button's message."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_loyalty.hooks.errors import VendorConfigError
from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import XOXODAY_URL, set_connection
from tests.operators.test_operators import context, echo_cancel

API = f"{XOXODAY_URL}/chef/v1/oauth/api"
SECRET = "SECRET-ACCESS-123"


def xoxoday(monkeypatch, **extra) -> None:
    set_connection(
        monkeypatch, "xoxoday_default", conn_type="xoxoday", host=XOXODAY_URL, login="id", password="pw", extra=extra
    )


def test_a_pasted_trailing_newline_is_dropped_and_the_token_works(requests_mock, monkeypatch) -> None:
    xoxoday(monkeypatch, access_token=f" {SECRET}\n", access_token_expiry=4102444800000)
    requests_mock.post(API, json=echo_cancel())
    summary = CancelPointsOperator(task_id="c", unique_ids=[5]).execute(context())
    assert summary["succeeded"] == 1
    assert requests_mock.request_history[0].headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("token", [f"{SECRET}\nX", "SECRET ACCESS", "SECRET\x00", "SECRÉT"])
def test_a_token_no_header_can_carry_is_a_config_error_that_never_quotes_it(requests_mock, monkeypatch, token) -> None:
    xoxoday(monkeypatch, access_token=token, access_token_expiry=4102444800000)
    with pytest.raises(VendorConfigError) as caught:
        XoxodayHook().credentials  # noqa: B018
    assert "access_token" in str(caught.value) and "SECRET" not in str(caught.value)
    with pytest.raises(AirflowException) as failed:
        CancelPointsOperator(task_id="c", unique_ids=[5]).execute(context())
    assert "SECRET" not in str(failed.value)
    assert requests_mock.call_count == 0
    ok, message = XoxodayHook().test_connection()
    assert not ok and "access_token" in message and "SECRET" not in message


def test_a_numeric_refresh_token_is_named(monkeypatch) -> None:
    xoxoday(monkeypatch, refresh_token=123456789)
    with pytest.raises(VendorConfigError, match="refresh_token must be a string, got a int"):
        XoxodayHook().credentials  # noqa: B018


def test_an_unforeseen_error_after_sending_is_stored_without_its_text(requests_mock, xoxoday_conn, monkeypatch) -> None:
    """An error whose text quotes the request (as http.client's does for a bad header) is recorded by type only."""

    def explode(request, ctx):
        raise ValueError(f"Invalid header value b'Bearer {SECRET}\\n'")

    requests_mock.post(API, json=explode)
    op = CancelPointsOperator(task_id="c", unique_ids=[5], max_failed_ratio=1.0)
    summary = op.execute(context())
    assert summary["failed"] == 1 and summary["failure_codes"] == {"unknown": 1}
    assert SECRET not in repr(summary)
    assert all(SECRET not in str(f) for f in summary.get("failures", []))


def test_a_blank_token_counts_as_missing(monkeypatch) -> None:
    from airflow_provider_loyalty.hooks.errors import CredentialsMissingError

    xoxoday(monkeypatch, access_token="  \n")
    with pytest.raises(CredentialsMissingError, match="lacks: extra access_token or refresh_token"):
        XoxodayHook().credentials  # noqa: B018
