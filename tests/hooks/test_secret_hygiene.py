"""Secrets never reach the ledger, the summary, exception texts or the Test button's message."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_loyalty.hooks.errors import VendorConfigError
from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import CAPILLARY_URL, XOXODAY_URL, set_connection
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


# ------------------------------------------------------------------ token answers are never quoted
LIVE = "LIVE-TOKEN-9f8e7d"
#: Field names of both vendors' token answers (and a few others), so that shapes near the real ones come up.
FIELD_NAMES = [
    "data",
    "errors",
    "accessToken",
    "ttlSeconds",
    "code",
    "message",
    "access_token",
    "refresh_token",
    "expires_in",
    "token_type",
    "error",
    "error_description",
    "access_token_expiry",
    LIVE,
]
_json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.just(LIVE), st.text(max_size=8)
)
_json = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=4),
    max_leaves=8,
)


def _token_answers():
    """A token endpoint's answer of any status and shape, the live token somewhere in it (or as its text)."""
    body = st.one_of(
        _json.map(lambda value: {"json": value}),
        st.sampled_from([LIVE, f"<html>{LIVE}</html>", f'{{"data": {{"accessToken": "{LIVE}"', ""]).map(
            lambda text: {"text": text}
        ),
    )
    status = st.sampled_from([200, 201, 400, 401, 403, 404, 418, 500, 502])
    return st.tuples(status, body)


def _assert_not_quoted(error: BaseException) -> None:
    texts = [str(error), repr(error), getattr(error, "message", ""), str(getattr(error, "code", ""))]
    assert not [t for t in texts if LIVE in t], texts
    assert getattr(error, "response", None) is None  # nothing downstream can read the body off it
    assert getattr(error, "token_exchange", False) is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=_token_answers())
def test_capillary_token_answers_are_never_quoted(requests_mock, capillary_oauth_conn, monkeypatch, answer) -> None:
    from airflow_provider_loyalty.hooks import _clock
    from airflow_provider_loyalty.hooks._retry import RetryPolicy
    from airflow_provider_loyalty.hooks.capillary import CapillaryHook
    from airflow_provider_loyalty.hooks.errors import VendorError

    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda seconds: None)
    status, body = answer
    requests_mock.post(f"{CAPILLARY_URL}/v3/oauth/token/generate", status_code=status, **body)
    hook = CapillaryHook("capillary_oauth", retry_policy=RetryPolicy(max_attempts=1))
    try:
        hook.oauth_token()
    except VendorError as error:
        _assert_not_quoted(error)
        ok, message = CapillaryHook("capillary_oauth", retry_policy=RetryPolicy(max_attempts=1)).test_connection()
        assert not ok and LIVE not in message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=_token_answers())
def test_xoxoday_token_answers_are_never_quoted(requests_mock, xoxoday_conn, monkeypatch, answer) -> None:
    from airflow_provider_loyalty.hooks import _clock
    from airflow_provider_loyalty.hooks._retry import RetryPolicy
    from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore, TokenPair
    from airflow_provider_loyalty.hooks.errors import VendorError

    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda seconds: None)
    status, body = answer
    requests_mock.post(f"{XOXODAY_URL}/chef/v1/oauth/token/company", status_code=status, **body)
    requests_mock.get(f"{XOXODAY_URL}/chef/v1/oauth/token", status_code=status, **body)
    hook = XoxodayHook(token_store=MemoryTokenStore(), retry_policy=RetryPolicy(max_attempts=1))
    hook._await_newer_stored_pair = lambda stale, attempts=4, pause=1.0: None  # type: ignore[method-assign]
    for exchange in (lambda: hook.refresh(TokenPair("old", "refresh-RRR")), hook.validate_token):
        try:
            exchange()
        except VendorError as error:
            _assert_not_quoted(error)
