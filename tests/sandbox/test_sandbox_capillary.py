"""Capillary emulation: Basic (md5) and OAuth auth, revokeEarn outcomes, both response shapes, limits."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from airflow_provider_loyalty.sandbox import (
    CAPILLARY_OAUTH_KEY,
    CAPILLARY_OAUTH_SECRET,
    CAPILLARY_PASSWORD,
    CAPILLARY_TILL,
    Dataset,
    Sandbox,
    SandboxConfig,
)
from tests.sandbox.helpers import REVOKE_PATH, basic_header, group_by_customer, revoke, rows_with_outcome

GENERATE_PATH = "/v3/oauth/token/generate"
UNAUTHORIZED = {"errors": [{"code": 401, "message": "Unauthorized"}]}
CREDENTIALS = {"key": CAPILLARY_OAUTH_KEY, "secret": CAPILLARY_OAUTH_SECRET}


def _customer_with_promotions(dataset: Dataset, outcome: int, promotions: int = 2) -> tuple[int, dict]:
    """Return an ordinary customer with revocable earns in at least ``promotions`` promotions."""
    grouped = group_by_customer(rows_with_outcome(dataset, outcome))
    for customer, by_promo in grouped.items():
        if customer != dataset.big_customer_id and len(by_promo) >= promotions:
            return customer, by_promo
    raise AssertionError("dataset has no such customer")


def _one(dataset: Dataset, outcome: int, skip: int = 0) -> tuple[int, str, str, str]:
    return rows_with_outcome(dataset, outcome)[skip]


def _token(http: requests.Session, url: str) -> str:
    response = http.post(url + GENERATE_PATH, json=CREDENTIALS)
    assert response.status_code == 200
    return response.json()["data"]["accessToken"]


def test_revoke_shape_a(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """Revocable earns over two promotions are revoked; the answer is the documented shape."""
    customer, by_promo = _customer_with_promotions(dataset, 0)
    details = [(promo, ids) for promo, ids in list(by_promo.items())[:2]]
    response = revoke(http, sb.url, customer, details)
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "customerId": customer,
            "revokedDetails": [
                {"promotionId": promo, "revokedEarnIds": ids, "status": "SUCCESS"} for promo, ids in details
            ],
        },
        "errors": [],
    }
    for _, ids in details:
        assert all(sb.state.earn(earn_id)[2] == "revoked" for earn_id in ids)


def test_partial_success_groups_errors(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """A redeemed earn in the same promotion makes it PARTIAL_SUCCESS, with a 729 error naming it."""
    customer, promo, redeemed, _ = _one(dataset, 729)
    known = sb.state.earn(redeemed)
    assert known is not None and known[2] == "redeemed"
    sb.state.add_earns([(customer, promo, "0" * 24, False)])  # a revocable earn in the same promotion
    response = revoke(http, sb.url, customer, [(promo, ["0" * 24, redeemed, "f" * 24])])
    assert response.json() == {
        "data": {
            "customerId": customer,
            "revokedDetails": [
                {"promotionId": promo, "revokedEarnIds": ["0" * 24], "status": "PARTIAL_SUCCESS"},
            ],
        },
        "errors": [
            {"code": 729, "message": "Earn already redeemed", "promotionId": promo, "earnIds": [redeemed]},
            {"code": 731, "message": "Invalid earn id", "promotionId": promo, "earnIds": ["f" * 24]},
        ],
    }


def test_shape_b_when_nothing_revoked(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """With nothing revoked the answer is ``data: {code, message}`` plus the grouped errors."""
    customer, promo, earn_id, _ = _one(dataset, 729)
    response = revoke(http, sb.url, customer, [(promo, [earn_id])])
    assert response.status_code == 200
    assert response.json() == {
        "data": {"code": 729, "message": "Earn already redeemed"},
        "errors": [
            {"code": 729, "message": "Earn already redeemed", "promotionId": promo, "earnIds": [earn_id]},
        ],
    }


def test_pos_promotion_not_revocable(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """Earns of POS/CODE promotions get 730."""
    customer, promo, earn_id, _ = _one(dataset, 730)
    assert dataset.promotions[promo] in ("POS", "CODE")
    body = revoke(http, sb.url, customer, [(promo, [earn_id])]).json()
    assert body["data"]["code"] == 730
    assert body["errors"] == [
        {
            "code": 730,
            "message": "Promotion of type POS/CODE cannot be revoked",
            "promotionId": promo,
            "earnIds": [earn_id],
        }
    ]
    assert sb.state.earn(earn_id)[2] == "unredeemed"


def test_invalid_earn_ids(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """Unknown ids, another customer's or promotion's earns, and revoked earns all get 731."""
    invalid_rows = rows_with_outcome(dataset, 731)
    assert len(invalid_rows) >= 3
    kinds = set()
    for customer, promo, earn_id, _ in invalid_rows:
        known = sb.state.earn(earn_id)
        if known is None:
            kinds.add("unknown")
        else:
            kinds.add("other_customer" if known[0] != customer else "other_promotion")
        body = revoke(http, sb.url, customer, [(promo, [earn_id])]).json()
        assert body["errors"][0]["code"] == 731, body
        assert body["data"] == {"code": 731, "message": "Invalid earn id"}
    assert kinds == {"unknown", "other_customer", "other_promotion"}

    customer, promo, earn_id, _ = _one(dataset, 0)
    assert "revokedDetails" in revoke(http, sb.url, customer, [(promo, [earn_id])]).json()["data"]
    assert revoke(http, sb.url, customer, [(promo, [earn_id])]).json()["errors"][0]["code"] == 731


def test_duplicate_earn_in_one_request(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """The second occurrence of an earn id in one request is already revoked: 731."""
    customer, promo, earn_id, _ = _one(dataset, 0)
    body = revoke(http, sb.url, customer, [(promo, [earn_id, earn_id])]).json()
    assert body["data"]["revokedDetails"] == [
        {"promotionId": promo, "revokedEarnIds": [earn_id], "status": "PARTIAL_SUCCESS"}
    ]
    assert body["errors"][0]["earnIds"] == [earn_id]
    assert sb.state.earn_attempts([earn_id])[earn_id] == {"attempts": 2, "revoked": 1, "state": "revoked"}


def test_more_than_1000_earn_ids_rejected(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """Over 1000 earn ids in total (across promotions) is a 400 and revokes nothing; 1000 is fine."""
    big = dataset.big_customer_id
    by_promo = group_by_customer(rows_with_outcome(dataset, 0))[big]
    assert sum(len(ids) for ids in by_promo.values()) > 1000
    details, total = [], 0
    for promo, ids in by_promo.items():
        take = ids[: 1001 - total]
        details.append((promo, take))
        total += len(take)
        if total == 1001:
            break
    assert len(details) > 1
    response = revoke(http, sb.url, big, details)
    assert response.status_code == 400
    assert response.json()["data"] is None
    assert "1000" in response.json()["errors"][0]["message"]
    assert sb.state.counts()["earns_revoked"] == 0
    assert sb.state.stats()["capillary"]["attempted_ids"] == 0

    details[-1] = (details[-1][0], details[-1][1][:-1])
    body = revoke(http, sb.url, big, details).json()
    assert sum(len(d["revokedEarnIds"]) for d in body["data"]["revokedDetails"]) == 1000
    assert body["errors"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"earnRevokeDetails": [{"promotionId": "p", "earnIds": ["e"]}]},
        {"customerId": None, "earnRevokeDetails": [{"promotionId": "p", "earnIds": ["e"]}]},
        {"customerId": "566881933", "earnRevokeDetails": [{"promotionId": "p", "earnIds": ["e"]}]},
        {"customerId": 5.5, "earnRevokeDetails": [{"promotionId": "p", "earnIds": ["e"]}]},
        {"customerId": 1},
        {"customerId": 1, "earnRevokeDetails": []},
        {"customerId": 1, "earnRevokeDetails": {"promotionId": "p", "earnIds": ["e"]}},
        {"customerId": 1, "earnRevokeDetails": [{"earnIds": ["e"]}]},
        {"customerId": 1, "earnRevokeDetails": [{"promotionId": 7, "earnIds": ["e"]}]},
        {"customerId": 1, "earnRevokeDetails": [{"promotionId": "p"}]},
        {"customerId": 1, "earnRevokeDetails": [{"promotionId": "p", "earnIds": []}]},
        {"customerId": 1, "earnRevokeDetails": [{"promotionId": "p", "earnIds": [123]}]},
        {"customerId": 1, "earnRevokeDetails": [{"promotionId": "p", "earnIds": "e"}]},
    ],
    ids=[
        "missing_customer",
        "null_customer",
        "string_customer",
        "float_customer",
        "missing_details",
        "empty_details",
        "details_not_array",
        "missing_promotion",
        "numeric_promotion",
        "missing_earn_ids",
        "empty_earn_ids",
        "numeric_earn_id",
        "earn_ids_not_array",
    ],
)
def test_invalid_bodies_rejected(sb: Sandbox, http: requests.Session, body: dict[str, Any]) -> None:
    """Bodies that break the documented request schema get a 400 in Capillary's error shape."""
    response = http.post(sb.url + REVOKE_PATH, json=body, headers=basic_header())
    assert response.status_code == 400
    payload = response.json()
    assert payload["data"] is None
    assert payload["errors"][0]["code"] == 400
    assert payload["errors"][0]["message"]


def test_basic_auth_requires_md5(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """``base64(till:md5(password))`` is accepted; the plain password is rejected."""
    customer, promo, earn_id, _ = _one(dataset, 0)
    plain = revoke(http, sb.url, customer, [(promo, [earn_id])], headers=basic_header(md5=False))
    assert plain.status_code == 401
    assert plain.json() == UNAUTHORIZED
    assert sb.state.earn(earn_id)[2] == "unredeemed"
    md5_header = basic_header(password=CAPILLARY_PASSWORD)
    hashed = revoke(http, sb.url, customer, [(promo, [earn_id])], headers=md5_header)
    assert hashed.status_code == 200
    assert sb.state.earn(earn_id)[2] == "revoked"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic_header(till="other.till"),
        basic_header(password="wrong-password"),
        {"Authorization": "Basic !!not-base64!!"},
        {"Authorization": f"Bearer {CAPILLARY_TILL}"},
        {"X-CAP-API-OAUTH-TOKEN": "never-issued"},
    ],
    ids=["none", "wrong_till", "wrong_password", "bad_base64", "bearer", "unknown_oauth_token"],
)
def test_unauthorized(sb: Sandbox, http: requests.Session, headers: dict[str, str]) -> None:
    """Missing or wrong credentials get 401 before the body is looked at."""
    response = http.post(sb.url + REVOKE_PATH, json={"customerId": 1}, headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_oauth_flow(config: SandboxConfig, sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """Generated tokens authenticate via X-CAP-API-OAUTH-TOKEN and get 498 once expired."""
    config.capillary_token_ttl = 0.1
    response = http.post(sb.url + GENERATE_PATH, json=CREDENTIALS)
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"data", "errors"} and body["errors"] == []
    assert set(body["data"]) == {"accessToken", "ttlSeconds"}
    token = body["data"]["accessToken"]
    customer, promo, earn_id, _ = _one(dataset, 0)
    ok = revoke(http, sb.url, customer, [(promo, [earn_id])], headers={"X-CAP-API-OAUTH-TOKEN": token})
    assert ok.status_code == 200
    time.sleep(0.15)
    expired = revoke(http, sb.url, customer, [(promo, [earn_id])], headers={"X-CAP-API-OAUTH-TOKEN": token})
    assert expired.status_code == 498
    assert expired.json() == {"errors": [{"code": 498, "message": "Token expired"}]}
    assert http.get(sb.url + "/_sandbox/stats").json()["capillary"]["tokens_generated"] == 1


def test_expire_capillary_tokens_helper(sb: Sandbox, http: requests.Session) -> None:
    """``expire_capillary_tokens()`` turns live tokens into 498s; a new token works again."""
    token = _token(http, sb.url)
    sb.expire_capillary_tokens()
    headers = {"X-CAP-API-OAUTH-TOKEN": token}
    assert http.post(sb.url + REVOKE_PATH, json={"customerId": 1}, headers=headers).status_code == 498
    headers = {"X-CAP-API-OAUTH-TOKEN": _token(http, sb.url)}
    assert http.post(sb.url + REVOKE_PATH, json={"customerId": 1}, headers=headers).status_code == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"key": CAPILLARY_OAUTH_KEY, "secret": "wrong"}, 401),
        ({"key": "wrong", "secret": CAPILLARY_OAUTH_SECRET}, 401),
        ({"key": CAPILLARY_OAUTH_KEY}, 400),
        ({"client_id": CAPILLARY_OAUTH_KEY, "client_secret": CAPILLARY_OAUTH_SECRET}, 400),
    ],
    ids=["wrong_secret", "wrong_key", "missing_secret", "oauth2_field_names"],
)
def test_token_generate_errors(
    sb: Sandbox,
    http: requests.Session,
    body: dict[str, str],
    status: int,
) -> None:
    """Wrong key/secret is a 401 with Capillary's error body; missing fields a 400."""
    response = http.post(sb.url + GENERATE_PATH, json=body)
    assert response.status_code == status
    payload = response.json()
    assert payload["data"] is None
    assert payload["errors"][0]["code"] == status
    if status == 401:
        assert payload["errors"] == [{"code": 401, "message": "Invalid key or secret"}]


def test_full_dataset_outcomes_match_expectations(
    sb: Sandbox,
    http: requests.Session,
    dataset: Dataset,
) -> None:
    """Reversing every warehouse row once (split at 1000 ids) yields exactly ``dataset.expected()``."""
    codes: dict[int, int] = {}
    requests_sent = 0
    for customer, by_promo in group_by_customer(dataset.earn_reversals).items():
        flat = [(promo, earn_id) for promo, ids in by_promo.items() for earn_id in ids]
        for start in range(0, len(flat), 1000):
            chunk: dict[str, list[str]] = {}
            for promo, earn_id in flat[start : start + 1000]:
                chunk.setdefault(promo, []).append(earn_id)
            body = revoke(http, sb.url, customer, list(chunk.items())).json()
            requests_sent += 1
            revoked = body["data"].get("revokedDetails", [])
            codes[0] = codes.get(0, 0) + sum(len(d["revokedEarnIds"]) for d in revoked)
            for error in body["errors"]:
                codes[error["code"]] = codes.get(error["code"], 0) + len(error["earnIds"])
    expected = dataset.expected()["earns"]
    assert codes == {0: expected["revoked"], 729: expected["729"], 730: expected["730"], 731: expected["731"]}
    assert requests_sent == expected["min_requests"]
    stats = sb.stats()["capillary"]
    assert stats["revoked"] == expected["revoked"]
    assert stats["duplicate_attempts"] == 0
