"""CapillaryHook over requests-mock: md5 Basic, OAuth lifecycle, both response shapes, unknown earns."""

from __future__ import annotations

import base64
import hashlib
import logging

import pytest

from airflow_provider_loyalty.hooks._retry import RetryPolicy
from airflow_provider_loyalty.hooks.capillary import CapillaryHook
from airflow_provider_loyalty.hooks.errors import CredentialsMissingError, VendorAuthError, VendorRequestError
from airflow_provider_loyalty.items import EarnItem
from tests.conftest import CAPILLARY_URL, FakeClock, set_connection
from tests.hooks.conftest import verdict

REVOKE = f"{CAPILLARY_URL}/api_gateway/v1/promotions/revokeEarn"
TOKEN = f"{CAPILLARY_URL}/v3/oauth/token/generate"
P1, P2 = "69117663b1cfc114606fd7fb", "69058646b1cfc114606f7bbe"
E1, E2, E3 = "6911eaf1f57b486147effac0", "68f869d94a314550c4b46047", "68f869d94a314550c4b46048"


def make_hook(conn_id: str = "capillary_default", clock: FakeClock | None = None) -> CapillaryHook:
    return CapillaryHook(conn_id, clock=clock or FakeClock(), retry_policy=RetryPolicy(max_attempts=3))


def shape_a(*details: tuple[str, list[str]], errors: list | None = None, customer: int = 566881933) -> dict:
    return {
        "data": {
            "customerId": customer,
            "revokedDetails": [{"promotionId": p, "revokedEarnIds": e, "status": "SUCCESS"} for p, e in details],
        },
        "errors": errors or [],
    }


def test_basic_auth_is_till_and_md5_of_password(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, json=shape_a((P1, [E1]), (P2, [E2])))
    result = make_hook().revoke_earn(566881933, {P1: [E1], P2: [E2]})
    sent = requests_mock.last_request
    digest = hashlib.md5(b"till-password-PWD").hexdigest()  # noqa: S324
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(f"till.one:{digest}".encode()).decode()
    assert sent.json() == {
        "customerId": 566881933,
        "earnRevokeDetails": [{"promotionId": P1, "earnIds": [E1]}, {"promotionId": P2, "earnIds": [E2]}],
    }
    assert [(o.item.promotion_id, o.item.earn_id, verdict(o)) for o in result.outcomes] == [
        (P1, E1, "revoked"),
        (P2, E2, "revoked"),
    ]


def test_partial_success_with_codes(requests_mock, capillary_conn) -> None:
    requests_mock.post(
        REVOKE,
        json=shape_a(
            (P1, [E1]),
            errors=[
                {"code": 729, "message": "Earn already redeemed", "promotionId": P1, "earnIds": [E2]},
            ],
            customer=5,
        ),
    )
    result = make_hook().revoke_earn(5, {P1: [E1, E2, E3]})
    assert [(o.item.earn_id, verdict(o), o.code) for o in result.outcomes] == [
        (E1, "revoked", None),
        (E2, "failed", "729"),
        (E3, "unknown", "unknown"),
    ]


def test_second_documented_shape(requests_mock, capillary_conn) -> None:
    requests_mock.post(
        REVOKE,
        json={
            "data": {"code": 731, "message": "Invalid earn id"},
            "errors": [
                {"code": 731, "message": "Invalid earn id", "promotionId": P1, "earnIds": [E1]},
                {"code": 730, "message": "POS promotion", "promotionId": P2},
            ],
        },
    )
    result = make_hook().revoke_earn(5, {P1: [E1, E2], P2: [E3]})
    assert [(o.item.earn_id, verdict(o), o.code) for o in result.outcomes] == [
        (E1, "failed", "731"),
        (E2, "unknown", "unknown"),
        (E3, "failed", "730"),
    ]


def test_request_level_error_without_ids_fails_every_earn(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, json={"data": None, "errors": [{"code": 8015, "message": "Customer not found"}]})
    result = make_hook().revoke_earn(5, {P1: [E1, E2]})
    assert {(verdict(o), o.code, o.message) for o in result.outcomes} == {("failed", "8015", "Customer not found")}


def test_empty_answer_is_unknown_not_success(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, json={"data": {"customerId": 5, "revokedDetails": []}, "errors": []})
    assert {verdict(o) for o in make_hook().revoke_earn(5, {P1: [E1]}).outcomes} == {"unknown"}


def test_refuses_more_than_1000_earn_ids_before_sending(requests_mock, capillary_conn) -> None:
    details = {P1: [f"e{i}" for i in range(600)], P2: [f"f{i}" for i in range(401)]}
    with pytest.raises(ValueError, match="1001 earn ids"):
        make_hook().revoke_earn(5, details)
    assert requests_mock.call_count == 0


def test_400_is_not_retried_and_carries_the_vendor_code(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, status_code=400, json={"data": None, "errors": [{"code": 400, "message": "bad body"}]})
    with pytest.raises(VendorRequestError) as info:
        make_hook().revoke_earn(5, {P1: [E1]})
    assert (info.value.status_code, info.value.code, info.value.transient) == (400, "400", False)
    assert requests_mock.call_count == 1


def test_oauth_token_generated_cached_and_sent(requests_mock, capillary_oauth_conn) -> None:
    requests_mock.post(TOKEN, json={"data": {"accessToken": "cap-token-1", "ttlSeconds": 3600}, "errors": []})
    requests_mock.post(REVOKE, json=shape_a((P1, [E1])))
    hook = make_hook("capillary_oauth")
    hook.revoke_earn(5, {P1: [E1]})
    hook.revoke_earn(6, {P1: [E1]})
    assert [r.url for r in requests_mock.request_history] == [TOKEN, REVOKE, REVOKE]
    assert requests_mock.request_history[0].json() == {"key": "oauth-key", "secret": "oauth-secret-SSS"}
    assert requests_mock.last_request.headers["X-CAP-API-OAUTH-TOKEN"] == "cap-token-1"
    assert "Authorization" not in requests_mock.last_request.headers


def test_oauth_regenerated_before_expiry(requests_mock, capillary_oauth_conn) -> None:
    clock = FakeClock()
    requests_mock.post(
        TOKEN,
        [
            {"json": {"data": {"accessToken": "t1", "ttlSeconds": 100}}},
            {"json": {"data": {"accessToken": "t2", "ttlSeconds": 100}}},
        ],
    )
    requests_mock.post(REVOKE, json=shape_a((P1, [E1])))
    hook = make_hook("capillary_oauth", clock)
    hook.revoke_earn(5, {P1: [E1]})
    clock.now += 91  # within the renewal margin (10 % of the lifetime)
    hook.revoke_earn(5, {P1: [E1]})
    assert requests_mock.last_request.headers["X-CAP-API-OAUTH-TOKEN"] == "t2"


@pytest.mark.parametrize("status", [401, 498], ids=["status_401", "status_498"])
def test_oauth_regenerated_once_on_rejection(requests_mock, capillary_oauth_conn, status) -> None:
    requests_mock.post(
        TOKEN,
        [
            {"json": {"data": {"accessToken": "t1", "ttlSeconds": 3600}}},
            {"json": {"data": {"accessToken": "t2", "ttlSeconds": 3600}}},
        ],
    )
    requests_mock.post(
        REVOKE,
        [
            {"status_code": status, "json": {"errors": [{"code": status, "message": "expired"}]}},
            {"json": shape_a((P1, [E1]), customer=5)},
        ],
    )
    result = make_hook("capillary_oauth").revoke_earn(5, {P1: [E1]})
    assert verdict(result.outcomes[0]) == "revoked"
    assert [r.headers.get("X-CAP-API-OAUTH-TOKEN") for r in requests_mock.request_history if r.url == REVOKE] == [
        "t1",
        "t2",
    ]


def test_basic_auth_rejection_is_final(requests_mock, capillary_conn) -> None:
    requests_mock.post(REVOKE, status_code=401, json={"errors": [{"code": 401, "message": "Unauthorized"}]})
    with pytest.raises(VendorAuthError):
        make_hook().revoke_earn(5, {P1: [E1]})
    assert requests_mock.call_count == 1


def test_missing_and_invalid_settings_are_named(monkeypatch) -> None:
    set_connection(monkeypatch, "capillary_default", conn_type="capillary", host=CAPILLARY_URL, login="till")
    with pytest.raises(CredentialsMissingError, match="till password"):
        make_hook().credentials  # noqa: B018
    set_connection(
        monkeypatch,
        "capillary_default",
        conn_type="capillary",
        host=CAPILLARY_URL,
        login="a",
        password="b",
        extra={"auth_type": "jwt"},
    )
    with pytest.raises(CredentialsMissingError, match="'basic' or 'oauth'"):
        make_hook().credentials  # noqa: B018


def test_test_connection(requests_mock, capillary_conn, capillary_oauth_conn) -> None:
    requests_mock.post(REVOKE, status_code=400, json={"errors": [{"code": 400, "message": "earnRevokeDetails empty"}]})
    assert make_hook().test_connection()[0] is True
    requests_mock.post(REVOKE, status_code=401, json={"errors": [{"code": 401, "message": "Unauthorized"}]})
    assert make_hook().test_connection()[0] is False
    requests_mock.post(TOKEN, status_code=401, json={"errors": [{"code": 401, "message": "Invalid key or secret"}]})
    ok, message = make_hook("capillary_oauth").test_connection()
    # the token endpoint's body is never quoted, not even a readable refusal: the status says it
    assert not ok and "refused by token generation" in message and "HTTP 401" in message
    assert "Invalid key or secret" not in message


def test_no_secret_in_logs_or_errors(requests_mock, capillary_oauth_conn, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    requests_mock.post(TOKEN, json={"data": {"accessToken": "cap-token-SECRET", "ttlSeconds": 3600}})
    requests_mock.post(REVOKE, status_code=498, json={"errors": [{"code": 498, "message": "expired"}]})
    hook = make_hook("capillary_oauth")
    with pytest.raises(VendorAuthError) as info:
        hook.revoke_earn(5, {P1: [E1]})
    text = caplog.text + str(info.value) + repr(hook.credentials)
    for secret in ("oauth-secret-SSS", "cap-token-SECRET"):
        assert secret not in text


@pytest.mark.parametrize(
    "details",
    [
        pytest.param({P1: [E1], P2: [E2]}, id="mapping"),
        pytest.param([EarnItem(9, P1, E1), EarnItem(9, P2, E2)], id="items"),
    ],
)
def test_revoke_details_shapes(requests_mock, capillary_conn, details) -> None:
    requests_mock.post(REVOKE, json=shape_a((P1, [E1]), (P2, [E2])))
    make_hook().revoke_earn(9, details)
    assert requests_mock.last_request.json()["earnRevokeDetails"] == [
        {"promotionId": P1, "earnIds": [E1]},
        {"promotionId": P2, "earnIds": [E2]},
    ]


@pytest.mark.parametrize(
    ("details", "message"),
    [
        pytest.param({P1: E1}, "must be a list", id="string_not_list"),
        pytest.param({P1: []}, "no earn to revoke", id="empty_earns"),
        pytest.param([], "no earn to revoke", id="no_details"),
        pytest.param({P1: [None]}, r"earn_id missing", id="missing_earn"),
        pytest.param({P1: ["e\r"]}, "control character", id="control_character"),
        pytest.param({"p/1": [E1]}, "promotion_id contains '/'", id="slash_in_promotion"),
        pytest.param([EarnItem(8, P1, E1)], "not customer 9's", id="another_customer"),
        pytest.param([EarnItem(9, P1, E1), EarnItem(9, P1, E1)], "given twice", id="duplicate"),
        pytest.param([(P1, [E1])], "expected EarnItems", id="pairs_not_items"),
    ],
)
def test_invalid_details_are_refused_before_sending(requests_mock, capillary_conn, details, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_hook().revoke_earn(9, details)
    assert requests_mock.call_count == 0
