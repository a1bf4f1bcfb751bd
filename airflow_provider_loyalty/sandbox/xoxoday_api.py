"""The Xoxoday Plum endpoints the provider calls: cancel points (cancelBalance), token validate, refresh."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from airflow_provider_loyalty.sandbox.config import XOXODAY_CLIENT_ID, XOXODAY_CLIENT_SECRET, SandboxConfig
from airflow_provider_loyalty.sandbox.limits import RateLimited
from airflow_provider_loyalty.sandbox.replies import INVALID_JSON, Reply, Request, VendorApi, html_error, json_reply
from airflow_provider_loyalty.sandbox.vendors import XOXODAY

CANCEL_BALANCE_QUERY = "storesAdmin.mutation.cancelBalance"
STORE_ADMIN_TAG = "storeAdmin"


def _unauthorized() -> Reply:
    return json_reply(401, {"error": "Unauthorized"})


def _bad_request(message: str) -> Reply:
    return json_reply(400, {"error": "bad_request", "message": message})


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description})


def _bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _validate_cancel(payload: Any) -> list[int] | str:
    """Return the unique ids of a cancelBalance body, or what is wrong with it."""
    if not isinstance(payload, dict):
        return "Request body must be a JSON object"
    for field in ("query", "tag", "variables"):
        if field not in payload:
            return f"{field} is required"
    if payload["query"] != CANCEL_BALANCE_QUERY:
        return f"Unsupported query {payload['query']!r}; expected {CANCEL_BALANCE_QUERY!r}"
    if payload["tag"] != STORE_ADMIN_TAG:
        return f"Unsupported tag {payload['tag']!r}; expected {STORE_ADMIN_TAG!r}"
    variables = payload["variables"]
    if not isinstance(variables, dict):
        return "variables must be an object"
    data = variables.get("recipients_data")
    if not isinstance(data, dict):
        return "variables.recipients_data is required and must be an object"
    recipients = data.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        return "variables.recipients_data.recipients must be a non-empty array"
    ids: list[int] = []
    for i, recipient in enumerate(recipients):
        if not isinstance(recipient, dict) or "unique_id" not in recipient:
            return f"recipients[{i}].unique_id is required"
        uid = recipient["unique_id"]
        if type(uid) is not int:
            return f"recipients[{i}].unique_id must be an integer, got {json.dumps(uid)}"
        ids.append(uid)
    return ids


def _cancel(request: Request, payload: Any) -> tuple[Reply, bool]:
    state = request.sandbox.state
    token = _bearer(request)
    if token is None or state.xoxoday_access_expiry(token) is None:
        return _unauthorized(), False
    if not request.is_json():
        return _bad_request("Content-Type must be application/json"), False
    if payload is INVALID_JSON:
        return _bad_request("Request body must be valid JSON"), False
    ids = _validate_cancel(payload)
    if isinstance(ids, str):
        return _bad_request(ids), False
    results = state.cancel_points(ids)
    failed = sum(1 for _, ok, _ in results if not ok)
    if not failed:
        message = "Cancellation processed successfully"
    elif failed == len(results):
        message = "Cancellation failed"
    else:
        message = "Cancellation processed with errors"
    recipients = [{"unique_id": uid, "success": ok, "message": msg} for uid, ok, msg in results]
    body = {"data": {"cancelBalance": {"error": failed > 0, "message": message, "recipients": recipients}}}
    return json_reply(200, body), True


def _validate_token(request: Request, payload: Any) -> tuple[Reply, bool]:
    state = request.sandbox.state
    fault = state.next_token_fault()
    if fault == "error_page":
        return html_error(503), False
    if fault == "refused":
        return _unauthorized(), False
    token = _bearer(request)
    expiry = None if token is None else state.xoxoday_access_expiry(token)
    if token is None or expiry is None:
        return _unauthorized(), False
    body = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": max(0, int(expiry - time.time())) if fault != "unreadable" else "15 days",
        "access_token_expiry": int(expiry * 1000),
        "refresh_token_expiry": int(state.xoxoday_refresh_expiry() * 1000),
    }
    return json_reply(200, body), True


def _refresh(request: Request, payload: Any) -> tuple[Reply, bool]:
    fault = request.sandbox.state.next_token_fault()
    if fault == "error_page":
        return html_error(503), False
    if not request.is_json() or not isinstance(payload, dict):
        return _oauth_error(400, "invalid_request", "Request body must be a JSON object"), False
    for field in ("grant_type", "refresh_token", "client_id", "client_secret"):
        value = payload.get(field)
        if not isinstance(value, str) or not value:
            return _oauth_error(400, "invalid_request", f"Missing required parameter: {field}"), False
    if payload["grant_type"] != "refresh_token":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be refresh_token"), False
    client_ok = hmac.compare_digest(payload["client_id"], XOXODAY_CLIENT_ID) and hmac.compare_digest(
        payload["client_secret"], XOXODAY_CLIENT_SECRET
    )
    if not client_ok:
        return _oauth_error(401, "invalid_client", "Client authentication failed"), False
    tokens = None
    if fault != "refused":
        tokens = request.sandbox.state.refresh_xoxoday(payload["refresh_token"], expired=fault == "expired")
    if tokens is None:
        return _oauth_error(400, "invalid_grant", "refresh token is invalid or expired"), False
    if fault == "unreadable":  # the pair is rotated and sent, next to a lifetime the docs do not allow
        tokens = {**tokens, "expires_in": f"{int(tokens['expires_in']) // 86400} days"}
    if fault == "garbled":  # the pair is rotated, and its access token sent with a line break after it
        tokens = {**tokens, "access_token": f"{tokens['access_token']}\r\n"}
    return json_reply(200, tokens), True


def _limited_reply(config: SandboxConfig, limited: RateLimited) -> Reply:
    # The status is configurable: Xoxoday documents the body of its rate-limit answer, not the status.
    body = {"errors": [{"message": "auth.request_limit_exceeded", "penaltySeconds": limited.wait_seconds}]}
    return json_reply(config.xoxoday_limit_status, body)


def _item_count(payload: Any) -> int:
    """Count the recipients of a cancelBalance body, tolerating any shape."""
    try:
        return len(payload["variables"]["recipients_data"]["recipients"])
    except (KeyError, TypeError, IndexError):
        return 0


API = VendorApi(
    vendor=XOXODAY,
    routes={
        # The provider's default path, and the docs' spelling with a (virtual) /cancelPoints suffix.
        "/chef/v1/oauth/api": {"POST": ("cancel_points", _cancel)},
        "/chef/v1/oauth/api/cancelPoints": {"POST": ("cancel_points", _cancel)},
        "/chef/v1/oauth/token": {"GET": ("token_validate", _validate_token)},
        "/chef/v1/oauth/token/company": {"POST": ("token_refresh", _refresh)},
    },
    item_count=_item_count,
    limited_reply=_limited_reply,
)
