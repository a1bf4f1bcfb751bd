"""The Capillary endpoints the provider calls: revokeEarn and OAuth token generation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

from airflow_provider_loyalty.sandbox.config import (
    CAPILLARY_OAUTH_KEY,
    CAPILLARY_OAUTH_SECRET,
    CAPILLARY_PASSWORD,
    CAPILLARY_TILL,
    SandboxConfig,
)
from airflow_provider_loyalty.sandbox.earns import ERROR_MESSAGES
from airflow_provider_loyalty.sandbox.limits import RateLimited
from airflow_provider_loyalty.sandbox.replies import INVALID_JSON, Reply, Request, VendorApi, html_error, json_reply
from airflow_provider_loyalty.sandbox.vendors import CAPILLARY

MAX_EARN_IDS = 1000
# Basic auth carries ``till:md5(password)`` (hex): Capillary hashes the password first.
_BASIC_SECRET = hashlib.md5(CAPILLARY_PASSWORD.encode()).hexdigest()


def _error(status: int, message: str, with_data: bool = True) -> Reply:
    body: dict[str, Any] = {"errors": [{"code": status, "message": message}]}
    if with_data:
        body = {"data": None, **body}
    return json_reply(status, body)


def _auth(request: Request) -> Reply | None:
    """Return the refusal for a request that is not authenticated, else ``None``."""
    oauth = request.headers.get("X-CAP-API-OAUTH-TOKEN")
    if oauth is not None:
        status = request.sandbox.state.capillary_token_status(oauth.strip())
        if status == "expired":
            return _error(498, "Token expired", with_data=False)
        return None if status == "valid" else _error(401, "Unauthorized", with_data=False)
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return _error(401, "Unauthorized", with_data=False)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return _error(401, "Unauthorized", with_data=False)
    till, _, secret = decoded.partition(":")
    till_ok = hmac.compare_digest(till, CAPILLARY_TILL)
    if till_ok and hmac.compare_digest(secret.lower(), _BASIC_SECRET):
        return None
    return _error(401, "Unauthorized", with_data=False)


def _validate_revoke(payload: Any) -> tuple[int, list[tuple[str, list[str]]]] | str:
    """Return ``(customer_id, [(promotion_id, earn_ids)])`` of a revokeEarn body, or what is wrong with it."""
    if not isinstance(payload, dict):
        return "Request body must be a JSON object"
    if "customerId" not in payload or payload["customerId"] is None:
        return "customerId is required"
    customer_id = payload["customerId"]
    if type(customer_id) is not int or customer_id <= 0:
        return "customerId must be a positive number"
    details = payload.get("earnRevokeDetails")
    if details is None:
        return "earnRevokeDetails is required"
    if not isinstance(details, list) or not details:
        return "earnRevokeDetails must be a non-empty array"
    out: list[tuple[str, list[str]]] = []
    total = 0
    for i, item in enumerate(details):
        if not isinstance(item, dict):
            return f"earnRevokeDetails[{i}] must be an object"
        promo_id = item.get("promotionId")
        if not isinstance(promo_id, str) or not promo_id:
            return f"earnRevokeDetails[{i}].promotionId is required and must be a string"
        earn_ids = item.get("earnIds")
        if not isinstance(earn_ids, list) or not earn_ids:
            return f"earnRevokeDetails[{i}].earnIds must be a non-empty array"
        for earn_id in earn_ids:
            if not isinstance(earn_id, str) or not earn_id:
                return f"earnRevokeDetails[{i}].earnIds must contain non-empty strings"
        total += len(earn_ids)
        out.append((promo_id, earn_ids))
    if total > MAX_EARN_IDS:
        return f"Maximum earnIds supported in a single request : {MAX_EARN_IDS} (got {total})"
    return customer_id, out


def _revoke(request: Request, payload: Any) -> tuple[Reply, bool]:
    refusal = _auth(request)
    if refusal is not None:
        return refusal, False
    if not request.is_json():
        return _error(400, "Content-Type must be application/json"), False
    if payload is INVALID_JSON:
        return _error(400, "Request body must be valid JSON"), False
    parsed = _validate_revoke(payload)
    if isinstance(parsed, str):
        return _error(400, parsed), False
    customer_id, details = parsed
    revoked, requested, grouped = request.sandbox.state.revoke_earns(customer_id, details)
    errors = [
        {"code": code, "message": ERROR_MESSAGES[code], "promotionId": promo_id, "earnIds": earn_ids}
        for (code, promo_id), earn_ids in grouped.items()
    ]
    if revoked:
        revoked_details = [
            {
                "promotionId": promo_id,
                "revokedEarnIds": earn_ids,
                "status": "SUCCESS" if len(earn_ids) == requested[promo_id] else "PARTIAL_SUCCESS",
            }
            for promo_id, earn_ids in revoked.items()
        ]
        body: dict[str, Any] = {
            "data": {"customerId": customer_id, "revokedDetails": revoked_details},
            "errors": errors,
        }
    else:
        # Nothing revoked: the vendor answers 200 with the first error in ``data``.
        body = {"data": {"code": errors[0]["code"], "message": errors[0]["message"]}, "errors": errors}
    return json_reply(200, body), True


def _token(request: Request, payload: Any) -> tuple[Reply, bool]:
    fault = request.sandbox.state.next_token_fault()
    if fault == "error_page":
        return html_error(503), False
    if not request.is_json() or not isinstance(payload, dict):
        return _error(400, "Request body must be a JSON object"), False
    key, secret = payload.get("key"), payload.get("secret")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        return _error(400, "key and secret are required"), False
    key_ok = hmac.compare_digest(key, CAPILLARY_OAUTH_KEY)
    if fault == "refused" or not (key_ok and hmac.compare_digest(secret, CAPILLARY_OAUTH_SECRET)):
        return _error(401, "Invalid key or secret"), False
    token, ttl = request.sandbox.state.new_capillary_token(expired=fault == "expired")
    # "unreadable": the token is issued and sent, next to a lifetime the docs do not allow
    lifetime: int | str = f"{ttl // 60}m" if fault == "unreadable" else ttl
    sent = token + "\r\n" if fault == "garbled" else token  # "garbled": issued, then sent broken
    return json_reply(200, {"data": {"accessToken": sent, "ttlSeconds": lifetime}, "errors": []}), True


def _limited_reply(config: SandboxConfig, limited: RateLimited) -> Reply:
    headers: tuple[tuple[str, str], ...] = ()
    if config.capillary_retry_after:
        headers = (("Retry-After", str(limited.wait_seconds)),)
    return json_reply(429, {"errors": [{"code": 429, "message": "Too many requests"}]}, headers)


def _item_count(payload: Any) -> int:
    """Count the earn ids of a revokeEarn body, tolerating any shape."""
    try:
        return sum(len(item["earnIds"]) for item in payload["earnRevokeDetails"])
    except (KeyError, TypeError, IndexError):
        return 0


API = VendorApi(
    vendor=CAPILLARY,
    routes={
        "/v3/oauth/token/generate": {"POST": ("token_generate", _token)},
        "/api_gateway/v1/promotions/revokeEarn": {"POST": ("revoke_earn", _revoke)},
    },
    item_count=_item_count,
    limited_reply=_limited_reply,
)
