"""Small HTTP helpers shared by the sandbox tests (plain ``requests``, never the provider's hooks)."""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import requests

from airflow_provider_loyalty.sandbox import (
    CAPILLARY_PASSWORD,
    CAPILLARY_TILL,
    XOXODAY_ACCESS_TOKEN,
    Dataset,
    Sandbox,
    SandboxConfig,
    connection_env,
    generate_dataset,
)

API_PATH = "/chef/v1/oauth/api"
REVOKE_PATH = "/api_gateway/v1/promotions/revokeEarn"


def cancel_body(ids: Iterable[Any]) -> dict[str, Any]:
    """Build a cancelBalance body as the OpenAPI excerpt shows it."""
    return {
        "query": "storesAdmin.mutation.cancelBalance",
        "tag": "storeAdmin",
        "variables": {"recipients_data": {"recipients": [{"unique_id": uid} for uid in ids]}},
    }


def cancel(
    http: requests.Session,
    url: str,
    ids: Iterable[Any],
    token: str = XOXODAY_ACCESS_TOKEN,
    path: str = API_PATH,
) -> requests.Response:
    """Post a cancel-points request."""
    headers = {"Authorization": f"Bearer {token}"}
    return http.post(url + path, json=cancel_body(ids), headers=headers, timeout=10)


def basic_header(till: str = CAPILLARY_TILL, password: str = CAPILLARY_PASSWORD, md5: bool = True) -> dict:
    """Return Capillary's Basic header: ``base64(till:md5(password))`` (or the plain password)."""
    secret = hashlib.md5(password.encode()).hexdigest() if md5 else password
    return {"Authorization": "Basic " + base64.b64encode(f"{till}:{secret}".encode()).decode()}


def revoke(
    http: requests.Session,
    url: str,
    customer_id: Any,
    details: Sequence[tuple[str, Sequence[str]]],
    headers: dict | None = None,
) -> requests.Response:
    """Post a revokeEarn request with md5 Basic auth unless other headers are given."""
    body = {
        "customerId": customer_id,
        "earnRevokeDetails": [{"promotionId": promo, "earnIds": list(ids)} for promo, ids in details],
    }
    return http.post(url + REVOKE_PATH, json=body, headers=headers or basic_header(), timeout=10)


def rows_with_outcome(dataset: Dataset, outcome: int) -> list[tuple[int, str, str, str]]:
    """Return the earn reversal rows whose first attempt yields ``outcome`` (0 = revoked)."""
    rows = zip(dataset.earn_reversals, dataset.earn_outcomes, strict=True)
    return [row for row, code in rows if code == outcome]


def group_by_customer(rows: Iterable[tuple[int, str, str, str]]) -> dict[int, dict[str, list[str]]]:
    """Group earn rows as ``customer -> promotion -> [earn ids]``, keeping row order."""
    grouped: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for customer, promo, earn_id, _ in rows:
        grouped[customer][promo].append(earn_id)
    return grouped


@contextmanager
def points_vendor(monkeypatch: Any, *, seed: int, points: int) -> Iterator[tuple[Sandbox, list[int]]]:
    """A sandbox holding ``points`` point reversals, its connections set; yields it and the ids it cancels."""
    dataset = generate_dataset(seed=seed, points=points, earns=0, big_customer_earns=0, customers=1)
    with Sandbox(SandboxConfig(), dataset) as sandbox:
        for name, value in connection_env(sandbox.url).items():
            monkeypatch.setenv(name, value)
        known = [
            uid
            for (uid, _), outcome in zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
            if outcome == "cancel"
        ]
        yield sandbox, known
