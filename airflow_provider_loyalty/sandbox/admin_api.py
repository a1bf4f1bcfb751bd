"""The ``/_sandbox/...`` admin API that tests and demos steer the sandbox with; routes come from a table.

Not a vendor endpoint: admin calls are neither rate limited, nor faulted, nor logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_loyalty.sandbox.replies import Reply, Request, Served, json_reply
from airflow_provider_loyalty.sandbox.vendors import CAPILLARY, XOXODAY

PREFIX = "/_sandbox/"


class AdminCall:
    """One admin call: the sandbox, its state, the query parameters and the raw body."""

    __slots__ = ("_body", "_params", "sandbox", "state")

    def __init__(self, sandbox: Served, query: str, body: bytes) -> None:
        self.sandbox = sandbox
        self.state = sandbox.state
        self._params = parse_qs(query)
        self._body = body

    def param(self, name: str) -> str | None:
        """Return the last value of a query parameter, else ``None``."""
        values = self._params.get(name)
        return values[-1] if values else None

    def ids(self, name: str) -> list[str]:
        """Return the non-empty parts of a comma-separated query parameter."""
        return [part for part in (self.param(name) or "").split(",") if part]

    def json_body(self) -> dict[str, Any]:
        """Return the JSON object in the body (``{}`` when empty); parsed only by the routes that take one."""
        if not self._body:
            return {}
        data = json.loads(self._body)
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data


AdminHandler = Callable[[AdminCall], Reply]


def _ok(call: AdminCall) -> Reply:
    return json_reply(200, {"status": "ok"})


def _stats(call: AdminCall) -> Reply:
    window = call.param("window")
    return json_reply(200, call.state.stats(None if window is None else float(window)))


def _reset_stats(call: AdminCall) -> Reply:
    call.state.reset_stats()
    return json_reply(200, {"status": "ok"})


def _config(call: AdminCall) -> Reply:
    return json_reply(200, call.sandbox.config.to_dict())


def _update_config(call: AdminCall) -> Reply:
    call.sandbox.config.update(call.json_body())
    return json_reply(200, call.sandbox.config.to_dict())


def _counts(call: AdminCall) -> Reply:
    return json_reply(200, call.state.counts())


def _requests(call: AdminCall) -> Reply:
    limit = call.param("limit")
    rows = call.state.request_log(
        vendor=call.param("vendor"),
        since=int(call.param("since") or 0),
        limit=None if limit is None else int(limit),
    )
    return json_reply(200, {"requests": rows})


def _point_attempts(call: AdminCall) -> Reply:
    ids = [int(part) for part in call.ids("ids")]
    return json_reply(200, {str(uid): info for uid, info in call.state.point_attempts(ids).items()})


def _earn_attempts(call: AdminCall) -> Reply:
    return json_reply(200, call.state.earn_attempts(call.ids("earn_ids")))


def _xoxoday_tokens(call: AdminCall) -> Reply:
    return json_reply(200, call.state.xoxoday_tokens())


def _set_xoxoday_tokens(call: AdminCall) -> Reply:
    data = call.json_body()
    call.state.set_xoxoday_tokens(data.get("access_token"), data.get("refresh_token"))
    return json_reply(200, call.state.xoxoday_tokens())


def _reset_tokens(call: AdminCall) -> Reply:
    call.state.reset_tokens()
    return json_reply(200, call.state.xoxoday_tokens())


def _expire_tokens(call: AdminCall) -> Reply:
    # The query parameter wins; the body is parsed only when it is absent.
    vendor = call.param("vendor") or call.json_body().get("vendor") or "all"
    if vendor not in (XOXODAY, CAPILLARY, "all"):
        raise ValueError("vendor must be xoxoday, capillary or all")
    if vendor in (XOXODAY, "all"):
        call.state.expire_xoxoday_access_tokens()
    if vendor in (CAPILLARY, "all"):
        call.state.expire_capillary_tokens()
    return json_reply(200, {"status": "ok", "vendor": vendor})


# (method, path) -> handler. A known path with another method is answered 404 like an unknown one.
ROUTES: dict[tuple[str, str], AdminHandler] = {
    ("GET", "/_sandbox/health"): _ok,
    ("GET", "/_sandbox/stats"): _stats,
    ("POST", "/_sandbox/reset-stats"): _reset_stats,
    ("GET", "/_sandbox/config"): _config,
    ("POST", "/_sandbox/config"): _update_config,
    ("GET", "/_sandbox/counts"): _counts,
    ("GET", "/_sandbox/requests"): _requests,
    ("GET", "/_sandbox/xoxoday/attempts"): _point_attempts,
    ("GET", "/_sandbox/capillary/attempts"): _earn_attempts,
    ("GET", "/_sandbox/tokens/xoxoday"): _xoxoday_tokens,
    ("POST", "/_sandbox/tokens/xoxoday"): _set_xoxoday_tokens,
    ("POST", "/_sandbox/tokens/reset"): _reset_tokens,
    ("POST", "/_sandbox/tokens/expire"): _expire_tokens,
}


def handle(request: Request, method: str, path: str, query: str, body: bytes) -> Reply:
    """Answer one admin call: 404 for an unknown route, 400 for input a route refuses (``ValueError``)."""
    try:
        call = AdminCall(request.sandbox, query, body)
        route = ROUTES.get((method, path))
        if route is None:
            return json_reply(404, {"error": "not_found", "message": f"no admin endpoint {method} {path}"})
        return route(call)
    except ValueError as exc:  # bad numbers, bad JSON, refused settings: the caller's mistake
        return json_reply(400, {"error": "bad_request", "message": str(exc)})
