"""The baseline: the loop a data engineer writes in a ``PythonOperator`` without this provider.

One ``requests.post`` per row, as the vendors' docs show the calls: one ``unique_id`` per cancel
request, one earn per revokeEarn request. No batching, no threads, no session. What a careful user
adds is kept: a timeout, ``raise_for_status()``, reading the per-item outcome, an optional pause
between calls to stay under a documented rate limit, and waiting out a 429 before trying the row
again. Nothing here imports the provider.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import requests

CANCEL_PATH = "/chef/v1/oauth/api"
REVOKE_PATH = "/api_gateway/v1/promotions/revokeEarn"


def _post(url: str, body: dict[str, Any], headers: dict[str, str], counts: dict[str, int]) -> dict[str, Any]:
    """POST ``body``; on 429 sleep ``Retry-After`` (or 60 s) and send the same row again."""
    while True:
        counts["requests"] += 1
        response = requests.post(url, json=body, headers=headers, timeout=30)
        if response.status_code == 429:
            counts["rate_limited"] += 1
            time.sleep(float(response.headers.get("Retry-After", 60)))
            continue
        response.raise_for_status()
        return response.json()


def cancel_points(base_url: str, access_token: str, unique_ids: Iterable[int], pause: float = 0.0) -> dict[str, int]:
    """Cancel Xoxoday points one ``unique_id`` at a time; return counts like the operator's summary.

    :param base_url: Xoxoday base URL.
    :param access_token: the bearer token from the dashboard.
    :param unique_ids: the ids to cancel (one request each).
    :param pause: seconds to sleep after each call (a hand-made rate limit).
    """
    headers = {"Authorization": f"Bearer {access_token}"}
    counts = {"requested": 0, "succeeded": 0, "failed": 0, "requests": 0, "rate_limited": 0}
    for unique_id in unique_ids:
        counts["requested"] += 1
        body = {
            "query": "storesAdmin.mutation.cancelBalance",
            "tag": "storeAdmin",
            "variables": {"recipients_data": {"recipients": [{"unique_id": int(unique_id)}]}},
        }
        answer = _post(base_url + CANCEL_PATH, body, headers, counts)
        recipients = answer["data"]["cancelBalance"]["recipients"]
        if recipients and recipients[0].get("success"):
            counts["succeeded"] += 1
        else:
            counts["failed"] += 1
        if pause:
            time.sleep(pause)
    return counts


def capillary_headers(till: str, password: str) -> dict[str, str]:
    """Capillary's basic auth: the till and the md5 of its password."""
    secret = hashlib.md5(password.encode()).hexdigest()
    return {"Authorization": "Basic " + base64.b64encode(f"{till}:{secret}".encode()).decode()}


def revoke_earns(
    base_url: str, till: str, password: str, earns: Iterable[Sequence[Any]], pause: float = 0.0
) -> dict[str, int]:
    """Revoke Capillary earns one row ``(customer_id, promotion_id, earn_id)`` at a time.

    :param base_url: Capillary cluster URL.
    :param till: till id; ``password`` is its password (sent md5-hashed, as Capillary documents).
    :param earns: the rows to revoke (one request each).
    :param pause: seconds to sleep after each call (a hand-made rate limit).
    """
    headers = capillary_headers(till, password)
    counts = {"requested": 0, "succeeded": 0, "failed": 0, "requests": 0, "rate_limited": 0}
    for customer_id, promotion_id, earn_id in earns:
        counts["requested"] += 1
        body = {
            "customerId": int(customer_id),
            "earnRevokeDetails": [{"promotionId": promotion_id, "earnIds": [earn_id]}],
        }
        answer = _post(base_url + REVOKE_PATH, body, headers, counts)
        revoked = [e for d in (answer.get("data") or {}).get("revokedDetails") or [] for e in d["revokedEarnIds"]]
        if earn_id in revoked:
            counts["succeeded"] += 1
        else:
            counts["failed"] += 1
        if pause:
            time.sleep(pause)
    return counts
