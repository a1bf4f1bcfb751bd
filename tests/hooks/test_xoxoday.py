"""XoxodayHook over requests-mock: exact bodies and headers, token rotation, no secrets leaked."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_loyalty.hooks._retry import RetryPolicy
from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore, TokenPair, fingerprint
from airflow_provider_loyalty.hooks.errors import CredentialsMissingError, VendorAuthError
from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
from tests.conftest import XOXODAY_URL, FakeClock, set_connection
from tests.hooks.conftest import success

API = f"{XOXODAY_URL}/chef/v1/oauth/api"
TOKEN = f"{XOXODAY_URL}/chef/v1/oauth/token/company"
VALIDATE = f"{XOXODAY_URL}/chef/v1/oauth/token"


def cancel_answer(*recipients: tuple[int, bool, str]) -> dict:
    return {
        "data": {
            "cancelBalance": {
                "error": not all(ok for _, ok, _ in recipients),
                "message": "Cancellation processed",
                "recipients": [{"unique_id": u, "success": ok, "message": m} for u, ok, m in recipients],
            }
        }
    }


def token_answer(access: str, refresh: str, expires_in: int = 1296000) -> dict:
    return {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": expires_in,
        "refresh_token": refresh,
        "access_token_expiry": 1_751_296_000_000,
        "refresh_token_expiry": 1_760_000_000_000,
    }


def make_hook(store: MemoryTokenStore | None = None, clock: FakeClock | None = None) -> XoxodayHook:
    return XoxodayHook(
        token_store=store or MemoryTokenStore(),
        clock=clock or FakeClock(),
        retry_policy=RetryPolicy(max_attempts=3),
    )


def test_cancel_points_sends_the_documented_request(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=cancel_answer((987654321, True, "Points cancelled successfully")))
    result = make_hook().cancel_points([987654321])
    sent = requests_mock.last_request
    assert sent.method == "POST"
    assert sent.url == API
    assert sent.headers["Authorization"] == "Bearer access-AAA"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "query": "storesAdmin.mutation.cancelBalance",
        "tag": "storeAdmin",
        "variables": {"recipients_data": {"recipients": [{"unique_id": 987654321}]}},
    }
    assert result.succeeded == [987654321]
    assert result.error is False


def test_partial_success_gives_per_id_outcomes(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=cancel_answer((1, True, "ok"), (2, False, "Transaction not found")))
    result = make_hook().cancel_points([1, 2, 3])
    assert [(o.item.unique_id, success(o), o.message) for o in result.outcomes] == [
        (1, True, "ok"),
        (2, False, "Transaction not found"),
        (3, None, "not mentioned in the vendor's answer"),
    ]
    assert result.error is True


def test_custom_api_path_and_host_without_scheme(requests_mock, monkeypatch) -> None:
    set_connection(
        monkeypatch,
        "xoxoday_default",
        conn_type="xoxoday",
        host="accounts.xoxoday.example",
        login="id",
        password="secret",
        extra={"access_token": "a", "refresh_token": "r", "api_path": "chef/v1/oauth/api/cancelPoints"},
    )
    requests_mock.post(
        "https://accounts.xoxoday.example/chef/v1/oauth/api/cancelPoints", json=cancel_answer((5, True, ""))
    )
    assert make_hook().cancel_points([5]).succeeded == [5]


def test_401_refreshes_once_retries_and_persists_the_rotated_pair(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(
        API, [{"status_code": 401, "json": {"error": "Unauthorized"}}, {"json": cancel_answer((7, True, "ok"))}]
    )
    requests_mock.post(TOKEN, json=token_answer("access-NEW", "refresh-NEW"))
    store = MemoryTokenStore()
    hook = make_hook(store)
    assert hook.cancel_points([7]).succeeded == [7]

    calls = [(r.method, r.url) for r in requests_mock.request_history]
    assert calls == [("POST", API), ("POST", TOKEN), ("POST", API)]
    assert requests_mock.request_history[1].json() == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-RRR",
        "client_id": "client-id-1",
        "client_secret": "client-secret-XYZ",
    }
    assert requests_mock.request_history[2].headers["Authorization"] == "Bearer access-NEW"
    assert store.pair is not None
    assert (store.pair.access_token, store.pair.refresh_token) == ("access-NEW", "refresh-NEW")
    assert store.pair.access_token_expiry == 1_751_296_000.0
    assert store.pair.origin == fingerprint("refresh-RRR")

    # the next hook instance (tomorrow's run) starts from the rotated pair, not the connection's
    requests_mock.post(API, json=cancel_answer((8, True, "ok")))
    make_hook(store).cancel_points([8])
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-NEW"


def test_second_401_after_refresh_fails_clearly(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, status_code=401, json={"error": "Unauthorized"})
    requests_mock.post(TOKEN, json=token_answer("access-NEW", "refresh-NEW"))
    with pytest.raises(VendorAuthError, match="refused right after a refresh"):
        make_hook().cancel_points([7])
    assert requests_mock.call_count == 3


def test_refused_refresh_recovers_from_a_pair_another_task_stored(requests_mock, xoxoday_conn) -> None:
    """Two tasks refreshed at once: ours is refused (invalid_grant), the other's pair is in the store."""
    store = MemoryTokenStore()
    requests_mock.post(
        API, [{"status_code": 401, "json": {"error": "Unauthorized"}}, {"json": cancel_answer((9, True, "ok"))}]
    )

    def refused(request, context):
        store.save(TokenPair("access-OTHER", "refresh-OTHER", origin=fingerprint("refresh-RRR")))
        context.status_code = 400
        return {"error": "invalid_grant", "error_description": "refresh token is invalid or expired"}

    requests_mock.post(TOKEN, json=refused)
    clock = FakeClock()
    assert make_hook(store, clock).cancel_points([9]).succeeded == [9]
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-OTHER"


def test_refused_refresh_without_newer_pair_names_the_fix(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, status_code=401, json={"error": "Unauthorized"})
    requests_mock.post(TOKEN, status_code=400, json={"error": "invalid_grant", "error_description": "expired"})
    clock = FakeClock()
    with pytest.raises(VendorAuthError) as info:
        make_hook(MemoryTokenStore(), clock).cancel_points([1])
    assert info.value.code == "invalid_grant"
    assert "put a new pair" in str(info.value)
    assert sum(clock.sleeps) >= 3  # waited a little for a concurrent task to store its pair


def test_connection_pair_replaces_a_stored_pair_of_another_lineage(requests_mock, xoxoday_conn) -> None:
    store = MemoryTokenStore(TokenPair("access-OLD", "refresh-OLD", origin=fingerprint("some-older-connection-token")))
    requests_mock.post(API, json=cancel_answer((1, True, "ok")))
    make_hook(store).cancel_points([1])
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-AAA"


def test_refreshes_proactively_before_expiry(requests_mock, xoxoday_conn) -> None:
    clock = FakeClock()
    store = MemoryTokenStore(
        TokenPair(
            "access-SOON", "refresh-RRR", access_token_expiry=clock.time() + 60, origin=fingerprint("refresh-RRR")
        )
    )
    requests_mock.post(TOKEN, json=token_answer("access-NEW", "refresh-NEW"))
    requests_mock.post(API, json=cancel_answer((1, True, "ok")))
    make_hook(store, clock).cancel_points([1])
    assert [r.url for r in requests_mock.request_history] == [TOKEN, API]
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-NEW"


def test_penalty_seconds_waits_then_succeeds(requests_mock, xoxoday_conn) -> None:
    clock = FakeClock()
    requests_mock.post(
        API,
        [
            {
                "status_code": 429,
                "json": {"errors": [{"message": "auth.request_limit_exceeded", "penaltySeconds": 60}]},
            },
            {"json": cancel_answer((1, True, "ok"))},
        ],
    )
    start = clock.monotonic()
    assert make_hook(clock=clock).cancel_points([1]).succeeded == [1]
    assert clock.monotonic() - start == pytest.approx(60.0)


def test_missing_credentials_are_named(monkeypatch) -> None:
    set_connection(monkeypatch, "xoxoday_default", conn_type="xoxoday", host=XOXODAY_URL, login="id")
    with pytest.raises(CredentialsMissingError, match=r"password \(client_secret\).*refresh_token"):
        make_hook().cancel_points([1])


def test_no_secret_in_logs_or_errors(requests_mock, xoxoday_conn, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    requests_mock.post(API, status_code=401, json={"error": "Unauthorized"})
    requests_mock.post(TOKEN, json=token_answer("access-NEW-SECRET", "refresh-NEW-SECRET"))
    hook = make_hook()
    with pytest.raises(VendorAuthError) as info:
        hook.cancel_points([1])
    text = caplog.text + str(info.value) + repr(info.value) + repr(hook.credentials) + repr(hook._pair)
    for secret in ("client-secret-XYZ", "access-AAA", "refresh-RRR", "access-NEW-SECRET", "refresh-NEW-SECRET"):
        assert secret not in text


def test_validate_token_and_test_connection(requests_mock, xoxoday_conn) -> None:
    requests_mock.get(
        VALIDATE,
        json={
            "access_token": "access-AAA",
            "token_type": "bearer",
            "expires_in": 1200,
            "access_token_expiry": 1,
            "refresh_token_expiry": 2,
        },
    )
    ok, message = make_hook().test_connection()
    assert ok and "valid" in message
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-AAA"
    requests_mock.get(VALIDATE, status_code=401, json={"error": "Unauthorized"})
    ok, message = make_hook().test_connection()
    assert not ok and "refused" in message
    assert "access-AAA" not in message


def test_request_body_validates_against_the_openapi_excerpt(requests_mock, xoxoday_conn) -> None:
    """What we send is checked against the published schema's constraints (enum, integer unique_id)."""
    import pathlib

    import yaml  # shipped with Airflow

    spec_path = pathlib.Path(__file__).resolve().parents[1] / "data" / "xoxoday-points-openapi-excerpt.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    schema = spec["paths"]["/cancelPoints"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    requests_mock.post(API, json=cancel_answer((11, True, ""), (12, True, "")))
    make_hook().cancel_points([11, 12])
    body = json.loads(requests_mock.last_request.body)
    assert set(schema["required"]) <= set(body)
    assert body["query"] in schema["properties"]["query"]["enum"]
    assert body["tag"] in schema["properties"]["tag"]["enum"]
    recipients = body["variables"]["recipients_data"]["recipients"]
    assert all(type(r["unique_id"]) is int and set(r) == {"unique_id"} for r in recipients)


def spec_token_answer(access: str, refresh: str) -> dict:
    """The OpenAPI excerpt's own example: its access_token_expiry (epoch ms) lies in the past."""
    return {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": 1296000,
        "refresh_token": refresh,
        "access_token_expiry": 1718000000000,
        "refresh_token_expiry": 1720000000000,
    }


def test_spec_example_expiry_does_not_cause_refresh_storms(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(
        API, [{"status_code": 401, "json": {"error": "Unauthorized"}}, {"json": cancel_answer((1, True, ""))}]
    )
    requests_mock.post(TOKEN, json=spec_token_answer("access-NEW", "refresh-NEW"))
    hook = make_hook()
    hook.cancel_points([1])
    requests_mock.post(API, json=cancel_answer((2, True, "")))
    hook.cancel_points([2])
    assert [r.url for r in requests_mock.request_history].count(TOKEN) == 1
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-NEW"


def test_rotated_pair_goes_to_the_airflow_variable(requests_mock, xoxoday_conn, monkeypatch) -> None:
    """The default store writes Variable loyalty_xoxoday_token__<conn_id>; the next hook reads it back."""
    from airflow.sdk import Variable

    variables: dict[str, str] = {}
    monkeypatch.setattr(Variable, "set", classmethod(lambda cls, key, value, **kw: variables.__setitem__(key, value)))
    monkeypatch.setattr(Variable, "get", classmethod(lambda cls, key, default=None, **kw: variables.get(key, default)))
    requests_mock.post(
        API, [{"status_code": 401, "json": {"error": "Unauthorized"}}, {"json": cancel_answer((1, True, ""))}]
    )
    requests_mock.post(TOKEN, json=token_answer("access-NEW", "refresh-NEW"))
    XoxodayHook(clock=FakeClock()).cancel_points([1])
    stored = json.loads(variables["loyalty_xoxoday_token__xoxoday_default"])
    assert (stored["access_token"], stored["refresh_token"]) == ("access-NEW", "refresh-NEW")
    requests_mock.post(API, json=cancel_answer((2, True, "")))
    XoxodayHook(clock=FakeClock()).cancel_points([2])  # a new instance, as in tomorrow's task
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-NEW"


def test_a_pair_that_cannot_be_stored_is_still_used_and_reported(
    requests_mock, xoxoday_conn, monkeypatch, caplog
) -> None:
    from airflow.sdk import Variable

    def refuse(cls, key, value, **kw):
        raise RuntimeError("API server down")

    from airflow.models.variable import Variable as MetastoreVariable

    monkeypatch.setattr(Variable, "set", classmethod(refuse))
    monkeypatch.setattr(Variable, "get", classmethod(lambda cls, key, default=None, **kw: default))
    monkeypatch.setattr(MetastoreVariable, "set", staticmethod(lambda *a, **kw: refuse(None, *a)))
    monkeypatch.setattr(MetastoreVariable, "get", classmethod(lambda cls, key, default_var=None, **kw: default_var))
    requests_mock.post(
        API, [{"status_code": 401, "json": {"error": "Unauthorized"}}, {"json": cancel_answer((1, True, ""))}]
    )
    requests_mock.post(TOKEN, json=token_answer("access-NEW", "refresh-NEW"))
    assert XoxodayHook(clock=FakeClock()).cancel_points([1]).succeeded == [1]
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-NEW"
    assert "could NOT be stored" in caplog.text and "refresh-NEW" not in caplog.text


def test_uses_a_pair_another_task_stored_instead_of_spending_a_refresh(requests_mock, xoxoday_conn) -> None:
    store = MemoryTokenStore()
    hook = make_hook(store)
    requests_mock.post(API, json=cancel_answer((1, True, "")))
    hook.cancel_points([1])
    # meanwhile another worker rotated the pair; our access token is now refused
    store.save(TokenPair("access-OTHER", "refresh-OTHER", origin=fingerprint("refresh-RRR")))
    requests_mock.post(
        API, [{"status_code": 401, "json": {"error": "Unauthorized"}}, {"json": cancel_answer((2, True, ""))}]
    )
    hook.cancel_points([2])
    assert TOKEN not in [r.url for r in requests_mock.request_history]
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-OTHER"


def test_missing_success_is_unknown_and_digit_strings_are_accepted(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(
        API,
        json={
            "data": {
                "cancelBalance": {
                    "error": False,
                    "recipients": [{"unique_id": 1, "message": "queued"}, {"unique_id": 2, "success": None}],
                }
            }
        },
    )
    result = make_hook().cancel_points(["1", 2])
    assert [(o.item.unique_id, success(o)) for o in result.outcomes] == [(1, None), (2, None)]
    assert requests_mock.last_request.json()["variables"]["recipients_data"]["recipients"] == [
        {"unique_id": 1},
        {"unique_id": 2},
    ]
    with pytest.raises(ValueError, match=r"2 invalid unique_ids: 'x' \(not an integer\); -2 \(must be positive\)"):
        make_hook().cancel_points([1, "x", -2])
