"""Xoxoday Plum emulation: cancel points, bearer auth, token validation and refresh rotation."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from airflow_provider_loyalty.sandbox import (
    XOXODAY_ACCESS_TOKEN,
    XOXODAY_CLIENT_ID,
    XOXODAY_CLIENT_SECRET,
    XOXODAY_REFRESH_TOKEN,
    Dataset,
    Sandbox,
    SandboxConfig,
)
from tests.sandbox.helpers import API_PATH, cancel, cancel_body

TOKEN_PATH = "/chef/v1/oauth/token"
BEARER = {"Authorization": f"Bearer {XOXODAY_ACCESS_TOKEN}"}
REFRESH_PATH = "/chef/v1/oauth/token/company"


def _issued(dataset: Dataset, n: int, skip: int = 0) -> list[int]:
    ids = [
        uid
        for (uid, _), outcome in zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
        if outcome == "cancel"
    ]
    return ids[skip : skip + n]


def _unknown(dataset: Dataset) -> int:
    rows = zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
    return next(uid for (uid, _), outcome in rows if outcome == "not_found")


def _refresh(http: requests.Session, url: str, token: str, **overrides: Any) -> requests.Response:
    body = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": XOXODAY_CLIENT_ID,
        "client_secret": XOXODAY_CLIENT_SECRET,
        **overrides,
    }
    body = {key: value for key, value in body.items() if value is not None}
    return http.post(url + REFRESH_PATH, json=body, timeout=10)


@pytest.mark.parametrize("path", [API_PATH, API_PATH + "/cancelPoints"], ids=["real_path", "virtual_path"])
def test_cancel_points_happy_path(sb: Sandbox, http: requests.Session, dataset: Dataset, path: str) -> None:
    """A known issued id is cancelled and the answer has the documented shape."""
    uid = _issued(dataset, 1)[0]
    response = cancel(http, sb.url, [uid], path=path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "data": {
            "cancelBalance": {
                "error": False,
                "message": "Cancellation processed successfully",
                "recipients": [
                    {"unique_id": uid, "success": True, "message": "Points cancelled successfully"},
                ],
            }
        }
    }
    assert sb.state.point_status(uid) == "cancelled"


def test_second_cancel_fails_and_mixed_batch(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """A cancelled id fails as already cancelled; unknown ids fail as not found; order is kept."""
    first, second = _issued(dataset, 2)
    unknown = _unknown(dataset)
    assert cancel(http, sb.url, [first]).status_code == 200
    body = cancel(http, sb.url, [second, first, unknown, second]).json()["data"]["cancelBalance"]
    assert body["error"] is True
    assert body["message"] == "Cancellation processed with errors"
    assert [(r["unique_id"], r["success"], r["message"]) for r in body["recipients"]] == [
        (second, True, "Points cancelled successfully"),
        (first, False, "Points already cancelled"),
        (unknown, False, "Transaction not found"),
        (second, False, "Points already cancelled"),
    ]
    attempts = http.get(f"{sb.url}/_sandbox/xoxoday/attempts?ids={first},{second},{unknown}").json()
    assert attempts == {
        str(first): {"attempts": 2, "cancelled": 1, "status": "cancelled"},
        str(second): {"attempts": 2, "cancelled": 1, "status": "cancelled"},
        str(unknown): {"attempts": 1, "cancelled": 0, "status": None},
    }
    stats = http.get(f"{sb.url}/_sandbox/stats").json()["xoxoday"]
    assert (stats["cancelled"], stats["duplicate_attempts"], stats["items_received"]) == (2, 2, 5)


def test_all_failed_message(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """When every recipient fails the overall error flag is set."""
    body = cancel(http, sb.url, [_unknown(dataset)]).json()["data"]["cancelBalance"]
    assert body["error"] is True
    assert body["recipients"][0]["success"] is False


def _body(**changes: Any) -> dict[str, Any]:
    body = cancel_body([123456789])
    for key, value in changes.items():
        if value is _DROP:
            del body[key]
        else:
            body[key] = value
    return body


_DROP = object()


@pytest.mark.parametrize(
    "body",
    [
        cancel_body(["1234567890"]),
        cancel_body([1234567890.0]),
        cancel_body([True]),
        cancel_body([None]),
        {**cancel_body([]), "variables": {"recipients_data": {"recipients": [{"id": 1}]}}},
        cancel_body([]),
        {**cancel_body([]), "variables": {"recipients_data": {"recipients": {"unique_id": 1}}}},
        {**cancel_body([]), "variables": {}},
        _body(query="storesAdmin.mutation.sendPoints"),
        _body(query=_DROP),
        _body(tag="stores"),
        _body(tag=_DROP),
        _body(variables=_DROP),
        [cancel_body([1])],
    ],
    ids=[
        "string_unique_id",
        "float_unique_id",
        "bool_unique_id",
        "null_unique_id",
        "missing_unique_id",
        "empty_recipients",
        "recipients_not_array",
        "missing_recipients_data",
        "other_query",
        "missing_query",
        "wrong_tag",
        "missing_tag",
        "missing_variables",
        "array_body",
    ],
)
def test_invalid_bodies_rejected(sb: Sandbox, http: requests.Session, body: Any) -> None:
    """Bodies that break the OpenAPI schema get 400 and change nothing."""
    response = http.post(sb.url + API_PATH, json=body, headers=BEARER)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "bad_request"
    assert payload["message"]
    assert sb.state.stats()["xoxoday"]["attempted_ids"] == 0


def test_string_unique_id_is_named(sb: Sandbox, http: requests.Session) -> None:
    """The 400 message says which recipient is wrong."""
    response = cancel(http, sb.url, [1, "2"])
    assert response.status_code == 400
    assert "recipients[1].unique_id" in response.json()["message"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b"{not json", "application/json"), (b'{"query": 1}', "text/plain"), (b"", "application/json")],
    ids=["invalid_json", "not_declared_json", "empty_body"],
)
def test_non_json_rejected(sb: Sandbox, http: requests.Session, data: bytes, content_type: str) -> None:
    """Anything but a JSON body is a 400."""
    headers = {"Authorization": f"Bearer {XOXODAY_ACCESS_TOKEN}", "Content-Type": content_type}
    assert http.post(sb.url + API_PATH, data=data, headers=headers).status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": XOXODAY_ACCESS_TOKEN},
        {"Authorization": f"Basic {XOXODAY_ACCESS_TOKEN}"},
    ],
    ids=["missing", "unknown_token", "no_scheme", "basic_scheme"],
)
def test_bearer_required(sb: Sandbox, http: requests.Session, headers: dict[str, str]) -> None:
    """Without a known bearer token the API answers 401 and cancels nothing."""
    response = http.post(sb.url + API_PATH, json=cancel_body([1]), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


def test_expired_access_token(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """Expired access tokens get 401 (on the API and on validation)."""
    sb.expire_xoxoday_access_tokens()
    assert cancel(http, sb.url, _issued(dataset, 1)).status_code == 401
    assert http.get(sb.url + TOKEN_PATH, headers=BEARER).status_code == 401


def test_initial_access_token_ttl(config: SandboxConfig, sb: Sandbox, http: requests.Session) -> None:
    """The initial access token lives ``xoxoday_token_ttl`` seconds."""
    config.xoxoday_token_ttl = 0.05
    sb.reset_tokens()
    assert cancel(http, sb.url, [1]).status_code == 200
    time.sleep(0.1)
    assert cancel(http, sb.url, [1]).status_code == 401


def test_validate_token(sb: Sandbox, http: requests.Session) -> None:
    """GET /token describes a valid bearer token with epoch-ms expiries."""
    before_ms = time.time() * 1000
    response = http.get(sb.url + TOKEN_PATH, headers={"Authorization": f"Bearer {XOXODAY_ACCESS_TOKEN}"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "access_token_expiry",
        "refresh_token_expiry",
    }
    assert body["access_token"] == XOXODAY_ACCESS_TOKEN
    assert body["token_type"] == "bearer"
    assert 1295990 <= body["expires_in"] <= 1296000
    assert body["access_token_expiry"] > before_ms + 1_000_000_000
    assert http.get(sb.url + TOKEN_PATH).status_code == 401


def test_refresh_rotates_pair(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """A refresh issues a new pair; the old refresh token is refused at once, old access tokens live on."""
    response = _refresh(http, sb.url, XOXODAY_REFRESH_TOKEN)
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "access_token_expiry",
        "refresh_token_expiry",
    }
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 1296000
    assert tokens["refresh_token"] != XOXODAY_REFRESH_TOKEN
    assert tokens["access_token"] != XOXODAY_ACCESS_TOKEN
    assert tokens["refresh_token_expiry"] > tokens["access_token_expiry"] > time.time() * 1000

    first, second = _issued(dataset, 2)
    assert cancel(http, sb.url, [first], token=tokens["access_token"]).status_code == 200
    assert cancel(http, sb.url, [second], token=XOXODAY_ACCESS_TOKEN).status_code == 200

    stale = _refresh(http, sb.url, XOXODAY_REFRESH_TOKEN)
    assert stale.status_code == 400
    assert stale.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token is invalid or expired",
    }

    admin = http.get(sb.url + "/_sandbox/tokens/xoxoday").json()
    assert admin["access_token"] == tokens["access_token"]
    assert admin["refresh_token"] == tokens["refresh_token"]

    again = _refresh(http, sb.url, tokens["refresh_token"])
    assert again.status_code == 200
    assert http.get(sb.url + "/_sandbox/stats").json()["xoxoday"]["token_refreshes"] == 2


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"client_secret": None}, 400, "invalid_request"),
        ({"grant_type": None}, 400, "invalid_request"),
        ({"refresh_token": None}, 400, "invalid_request"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"refresh_token": "never-issued"}, 400, "invalid_grant"),
    ],
    ids=[
        "wrong_secret",
        "wrong_client",
        "missing_secret",
        "missing_grant",
        "missing_refresh",
        "other_grant",
        "unknown_refresh",
    ],
)
def test_refresh_errors(
    sb: Sandbox, http: requests.Session, overrides: dict[str, Any], status: int, error: str
) -> None:
    """Refresh refusals use OAuth error bodies and keep the current pair."""
    response = _refresh(http, sb.url, XOXODAY_REFRESH_TOKEN, **overrides)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert sb.xoxoday_tokens()["refresh_token"] == XOXODAY_REFRESH_TOKEN


def test_refresh_requires_json(sb: Sandbox, http: requests.Session) -> None:
    """A form-encoded refresh is refused (the spec's body is application/json)."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": XOXODAY_REFRESH_TOKEN,
        "client_id": XOXODAY_CLIENT_ID,
        "client_secret": XOXODAY_CLIENT_SECRET,
    }
    response = http.post(sb.url + REFRESH_PATH, data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_refresh_grace(config: SandboxConfig, sb: Sandbox, http: requests.Session) -> None:
    """With a grace period the rotated refresh token keeps working until the grace ends."""
    config.xoxoday_refresh_grace = 0.15
    assert _refresh(http, sb.url, XOXODAY_REFRESH_TOKEN).status_code == 200
    assert _refresh(http, sb.url, XOXODAY_REFRESH_TOKEN).status_code == 200
    time.sleep(0.2)
    assert _refresh(http, sb.url, XOXODAY_REFRESH_TOKEN).json()["error"] == "invalid_grant"
    current = sb.xoxoday_tokens()["refresh_token"]
    assert _refresh(http, sb.url, current).status_code == 200


def test_set_and_reset_tokens(sb: Sandbox, http: requests.Session) -> None:
    """Tests can install a pair (in process or over the admin endpoint) and reset to the initial one."""
    sb.set_xoxoday_tokens("access-x", "refresh-x")
    assert cancel(http, sb.url, [1], token="access-x").status_code == 200
    assert _refresh(http, sb.url, XOXODAY_REFRESH_TOKEN).status_code == 400
    installed = http.post(
        sb.url + "/_sandbox/tokens/xoxoday", json={"access_token": "access-y", "refresh_token": "refresh-y"}
    ).json()
    assert (installed["access_token"], installed["refresh_token"]) == ("access-y", "refresh-y")
    assert _refresh(http, sb.url, "refresh-x").status_code == 400
    assert _refresh(http, sb.url, "refresh-y").status_code == 200
    http.post(sb.url + "/_sandbox/tokens/reset")
    assert sb.xoxoday_tokens()["refresh_token"] == XOXODAY_REFRESH_TOKEN
    assert cancel(http, sb.url, [1], token=XOXODAY_ACCESS_TOKEN).status_code == 200
