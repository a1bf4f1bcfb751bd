"""Where a connection's host sends credentials: https, or plain HTTP only to this machine; nothing two parsers read apart."""

from __future__ import annotations

import pytest

from airflow_provider_loyalty.hooks._urls import base_url, is_loopback
from airflow_provider_loyalty.hooks.capillary import CapillaryHook
from airflow_provider_loyalty.hooks.errors import VendorConfigError
from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_operators import context


@pytest.mark.parametrize(
    ("host", "message"),
    [
        pytest.param("http://accounts.xoxoday.com", "plain HTTP to another machine", id="http_elsewhere"),
        pytest.param("http://10.0.0.7:8080", "plain HTTP to another machine", id="http_private_ip"),
        pytest.param("http://127.0.0.1:8080\\@vendor.invalid", "backslash", id="backslash_parsers_disagree"),
        pytest.param("https://user:pw-SECRET@accounts.xoxoday.com", "holds credentials", id="userinfo"),
        pytest.param("https://accounts .xoxoday.com", "blank", id="blank_inside"),
        pytest.param("ftp://accounts.xoxoday.com", "scheme must be https", id="other_scheme"),
    ],
)
def test_hosts_that_would_leak_or_mislead_are_refused(host, message) -> None:
    with pytest.raises(VendorConfigError, match=message) as info:
        base_url(host, None, "https://default.example")
    assert info.value.fatal
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize(
    "host",
    ["http://127.0.0.1:8099", "http://localhost:8099", "http://[::1]:8099", "http://127.8.9.10", "https://h.example"],
)
def test_https_anywhere_and_plain_http_on_this_machine_are_accepted(host) -> None:
    assert base_url(host, None, "https://default.example") == host


def test_allow_http_lets_a_trusted_proxy_through() -> None:
    assert base_url("http://proxy.internal:8080", None, "", allow_http=True) == "http://proxy.internal:8080"


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("LOCALHOST")
    assert not is_loopback("10.0.0.1") and not is_loopback("localhost.evil.example")


def test_the_hooks_refuse_plain_http_elsewhere_before_any_request(requests_mock, monkeypatch) -> None:
    set_connection(
        monkeypatch,
        "xoxoday_default",
        conn_type="xoxoday",
        host="http://accounts.xoxoday.com",
        login="id",
        password="secret",
        extra={"refresh_token": "r"},
    )
    set_connection(
        monkeypatch,
        "capillary_default",
        conn_type="capillary",
        host="http://eu.api.capillarytech.com",
        login="t",
        password="p",
    )
    with pytest.raises(VendorConfigError, match="plain HTTP"):
        XoxodayHook().credentials  # noqa: B018
    with pytest.raises(VendorConfigError, match="plain HTTP"):
        CapillaryHook().credentials  # noqa: B018
    with pytest.raises(Exception, match="plain HTTP"):
        CancelPointsOperator(task_id="c", unique_ids=[5]).execute(context())
    assert requests_mock.call_count == 0


def test_the_hooks_read_allow_http_from_the_extra(monkeypatch) -> None:
    set_connection(
        monkeypatch,
        "xoxoday_default",
        conn_type="xoxoday",
        host="http://proxy.internal:8080",
        login="id",
        password="secret",
        extra={"refresh_token": "r", "allow_http": "true"},
    )
    assert XoxodayHook().credentials.base_url == "http://proxy.internal:8080"


def test_allow_http_that_is_no_flag_is_refused() -> None:
    from airflow_provider_loyalty.hooks._urls import allows_http

    assert allows_http({}) is False and allows_http({"allow_http": "on"}) is True
    with pytest.raises(VendorConfigError, match="allow_http must be true or false"):
        allows_http({"allow_http": "maybe"}, "xoxoday")
