"""HTTP emulator of the Xoxoday Plum and Capillary endpoints the provider calls, plus admin endpoints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from airflow_provider_loyalty.sandbox.config import (
    CAPILLARY_OAUTH_KEY,
    CAPILLARY_OAUTH_SECRET,
    CAPILLARY_PASSWORD,
    CAPILLARY_TILL,
    XOXODAY_CLIENT_ID,
    XOXODAY_CLIENT_SECRET,
    SandboxConfig,
)
from airflow_provider_loyalty.sandbox.earns import ERROR_MESSAGES
from airflow_provider_loyalty.sandbox.limits import RateLimited
from airflow_provider_loyalty.sandbox.state import SandboxState
from airflow_provider_loyalty.sandbox.vendors import API_ENDPOINTS, CAPILLARY, XOXODAY

if TYPE_CHECKING:
    from airflow_provider_loyalty.sandbox.seed import Dataset

CANCEL_BALANCE_QUERY = "storesAdmin.mutation.cancelBalance"
STORE_ADMIN_TAG = "storeAdmin"
MAX_EARN_IDS = 1000
_CAPILLARY_BASIC_SECRET = hashlib.md5(CAPILLARY_PASSWORD.encode()).hexdigest()
_INVALID = object()  # marker: the body is not valid JSON

# (status, body, content type, extra headers)
Reply = tuple[int, bytes, str, tuple[tuple[str, str], ...]]
JSON_TYPE = "application/json"


def _json(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return status, json.dumps(obj, separators=(",", ":")).encode(), JSON_TYPE, headers


def _html_error(status: int) -> Reply:
    phrase = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}.get(status, "Error")
    body = (
        f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return status, body.encode(), "text/html", ()


# ---------------------------------------------------------------------- Xoxoday
def _x_unauthorized() -> Reply:
    return _json(401, {"error": "Unauthorized"})


def _x_bad_request(message: str) -> Reply:
    return _json(400, {"error": "bad_request", "message": message})


def _x_oauth_error(status: int, error: str, description: str) -> Reply:
    return _json(status, {"error": error, "error_description": description})


def _bearer(handler: _Handler) -> str | None:
    value = handler.headers.get("Authorization", "")
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


def _xoxoday_cancel(handler: _Handler, payload: Any) -> tuple[Reply, bool]:
    state = handler.sandbox.state
    token = _bearer(handler)
    if token is None or state.xoxoday_access_expiry(token) is None:
        return _x_unauthorized(), False
    if not handler.is_json():
        return _x_bad_request("Content-Type must be application/json"), False
    if payload is _INVALID:
        return _x_bad_request("Request body must be valid JSON"), False
    ids = _validate_cancel(payload)
    if isinstance(ids, str):
        return _x_bad_request(ids), False
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
    return _json(200, body), True


def _xoxoday_validate(handler: _Handler, payload: Any) -> tuple[Reply, bool]:
    state = handler.sandbox.state
    token = _bearer(handler)
    expiry = None if token is None else state.xoxoday_access_expiry(token)
    if token is None or expiry is None:
        return _x_unauthorized(), False
    body = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": max(0, int(expiry - time.time())),
        "access_token_expiry": int(expiry * 1000),
        "refresh_token_expiry": int(state.xoxoday_refresh_expiry() * 1000),
    }
    return _json(200, body), True


def _xoxoday_refresh(handler: _Handler, payload: Any) -> tuple[Reply, bool]:
    if not handler.is_json() or not isinstance(payload, dict):
        return _x_oauth_error(400, "invalid_request", "Request body must be a JSON object"), False
    for field in ("grant_type", "refresh_token", "client_id", "client_secret"):
        value = payload.get(field)
        if not isinstance(value, str) or not value:
            return _x_oauth_error(400, "invalid_request", f"Missing required parameter: {field}"), False
    if payload["grant_type"] != "refresh_token":
        return _x_oauth_error(400, "unsupported_grant_type", "grant_type must be refresh_token"), False
    client_ok = hmac.compare_digest(payload["client_id"], XOXODAY_CLIENT_ID) and hmac.compare_digest(
        payload["client_secret"], XOXODAY_CLIENT_SECRET
    )
    if not client_ok:
        return _x_oauth_error(401, "invalid_client", "Client authentication failed"), False
    tokens = handler.sandbox.state.refresh_xoxoday(payload["refresh_token"])
    if tokens is None:
        return _x_oauth_error(400, "invalid_grant", "refresh token is invalid or expired"), False
    return _json(200, tokens), True


def _xoxoday_limited(config: SandboxConfig, limited: RateLimited) -> Reply:
    body = {"errors": [{"message": "auth.request_limit_exceeded", "penaltySeconds": limited.wait_seconds}]}
    return _json(config.xoxoday_limit_status, body)


# ---------------------------------------------------------------------- Capillary
def _c_error(status: int, message: str, with_data: bool = True) -> Reply:
    body: dict[str, Any] = {"errors": [{"code": status, "message": message}]}
    if with_data:
        body = {"data": None, **body}
    return _json(status, body)


def _capillary_auth(handler: _Handler) -> Reply | None:
    """Return the refusal for a request that is not authenticated, else ``None``."""
    oauth = handler.headers.get("X-CAP-API-OAUTH-TOKEN")
    if oauth is not None:
        status = handler.sandbox.state.capillary_token_status(oauth.strip())
        if status == "expired":
            return _c_error(498, "Token expired", with_data=False)
        return None if status == "valid" else _c_error(401, "Unauthorized", with_data=False)
    scheme, _, encoded = handler.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return _c_error(401, "Unauthorized", with_data=False)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return _c_error(401, "Unauthorized", with_data=False)
    till, _, secret = decoded.partition(":")
    till_ok = hmac.compare_digest(till, CAPILLARY_TILL)
    if till_ok and hmac.compare_digest(secret.lower(), _CAPILLARY_BASIC_SECRET):
        return None
    return _c_error(401, "Unauthorized", with_data=False)


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


def _capillary_revoke(handler: _Handler, payload: Any) -> tuple[Reply, bool]:
    refusal = _capillary_auth(handler)
    if refusal is not None:
        return refusal, False
    if not handler.is_json():
        return _c_error(400, "Content-Type must be application/json"), False
    if payload is _INVALID:
        return _c_error(400, "Request body must be valid JSON"), False
    parsed = _validate_revoke(payload)
    if isinstance(parsed, str):
        return _c_error(400, parsed), False
    customer_id, details = parsed
    revoked, requested, grouped = handler.sandbox.state.revoke_earns(customer_id, details)
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
        body = {"data": {"code": errors[0]["code"], "message": errors[0]["message"]}, "errors": errors}
    return _json(200, body), True


def _capillary_token(handler: _Handler, payload: Any) -> tuple[Reply, bool]:
    if not handler.is_json() or not isinstance(payload, dict):
        return _c_error(400, "Request body must be a JSON object"), False
    key, secret = payload.get("key"), payload.get("secret")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        return _c_error(400, "key and secret are required"), False
    key_ok = hmac.compare_digest(key, CAPILLARY_OAUTH_KEY)
    if not (key_ok and hmac.compare_digest(secret, CAPILLARY_OAUTH_SECRET)):
        return _c_error(401, "Invalid key or secret"), False
    token, ttl = handler.sandbox.state.new_capillary_token()
    return _json(200, {"data": {"accessToken": token, "ttlSeconds": ttl}, "errors": []}), True


def _capillary_limited(config: SandboxConfig, limited: RateLimited) -> Reply:
    headers: tuple[tuple[str, str], ...] = ()
    if config.capillary_retry_after:
        headers = (("Retry-After", str(limited.wait_seconds)),)
    return _json(429, {"errors": [{"code": 429, "message": "Too many requests"}]}, headers)


VendorHandler = Callable[["_Handler", Any], "tuple[Reply, bool]"]

# path -> method -> (vendor, endpoint name, handler)
VENDOR_ROUTES: dict[str, dict[str, tuple[str, str, VendorHandler]]] = {
    "/chef/v1/oauth/api": {"POST": (XOXODAY, "cancel_points", _xoxoday_cancel)},
    "/chef/v1/oauth/api/cancelPoints": {"POST": (XOXODAY, "cancel_points", _xoxoday_cancel)},
    "/chef/v1/oauth/token": {"GET": (XOXODAY, "token_validate", _xoxoday_validate)},
    "/chef/v1/oauth/token/company": {"POST": (XOXODAY, "token_refresh", _xoxoday_refresh)},
    "/v3/oauth/token/generate": {"POST": (CAPILLARY, "token_generate", _capillary_token)},
    "/api_gateway/v1/promotions/revokeEarn": {"POST": (CAPILLARY, "revoke_earn", _capillary_revoke)},
}


def _item_count(vendor: str, payload: Any) -> int:
    """Count recipients / earn ids of an API body, tolerating any shape."""
    try:
        if vendor == XOXODAY:
            return len(payload["variables"]["recipients_data"]["recipients"])
        return sum(len(item["earnIds"]) for item in payload["earnRevokeDetails"])
    except (KeyError, TypeError, IndexError):
        return 0


# ---------------------------------------------------------------------- admin
def _admin(handler: _Handler, method: str, path: str, query: str, body: bytes) -> Reply:
    sandbox = handler.sandbox
    state = sandbox.state
    params = parse_qs(query)

    def param(name: str) -> str | None:
        values = params.get(name)
        return values[-1] if values else None

    def json_body() -> dict[str, Any]:
        if not body:
            return {}
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    def split(value: str | None) -> list[str]:
        return [part for part in (value or "").split(",") if part]

    key = (method, path)
    if key == ("GET", "/_sandbox/health"):
        return _json(200, {"status": "ok"})
    if key == ("GET", "/_sandbox/stats"):
        window = param("window")
        return _json(200, state.stats(None if window is None else float(window)))
    if key == ("POST", "/_sandbox/reset-stats"):
        state.reset_stats()
        return _json(200, {"status": "ok"})
    if key == ("GET", "/_sandbox/config"):
        return _json(200, sandbox.config.to_dict())
    if key == ("POST", "/_sandbox/config"):
        sandbox.config.update(json_body())
        return _json(200, sandbox.config.to_dict())
    if key == ("GET", "/_sandbox/counts"):
        return _json(200, state.counts())
    if key == ("GET", "/_sandbox/requests"):
        limit = param("limit")
        rows = state.request_log(
            vendor=param("vendor"),
            since=int(param("since") or 0),
            limit=None if limit is None else int(limit),
        )
        return _json(200, {"requests": rows})
    if key == ("GET", "/_sandbox/xoxoday/attempts"):
        ids = [int(part) for part in split(param("ids"))]
        return _json(200, {str(uid): info for uid, info in state.point_attempts(ids).items()})
    if key == ("GET", "/_sandbox/capillary/attempts"):
        return _json(200, state.earn_attempts(split(param("earn_ids"))))
    if key == ("GET", "/_sandbox/tokens/xoxoday"):
        return _json(200, state.xoxoday_tokens())
    if key == ("POST", "/_sandbox/tokens/xoxoday"):
        data = json_body()
        state.set_xoxoday_tokens(data.get("access_token"), data.get("refresh_token"))
        return _json(200, state.xoxoday_tokens())
    if key == ("POST", "/_sandbox/tokens/reset"):
        state.reset_tokens()
        return _json(200, state.xoxoday_tokens())
    if key == ("POST", "/_sandbox/tokens/expire"):
        vendor = param("vendor") or json_body().get("vendor") or "all"
        if vendor not in (XOXODAY, CAPILLARY, "all"):
            raise ValueError("vendor must be xoxoday, capillary or all")
        if vendor in (XOXODAY, "all"):
            state.expire_xoxoday_access_tokens()
        if vendor in (CAPILLARY, "all"):
            state.expire_capillary_tokens()
        return _json(200, {"status": "ok", "vendor": vendor})
    return _json(404, {"error": "not_found", "message": f"no admin endpoint {method} {path}"})


# ---------------------------------------------------------------------- HTTP plumbing
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoyaltySandbox/1.0"
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        """Return the ``Server`` header value."""
        return self.server_version

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the sandbox quiet: no line per request."""

    def is_json(self) -> bool:
        """Tell whether the request declares a JSON body."""
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower() == JSON_TYPE

    def do_GET(self) -> None:
        """Serve a GET request."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST request."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Serve a PUT request."""
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        """Serve a PATCH request."""
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        """Serve a DELETE request."""
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(_json(411, {"error": "length_required"}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(_json(400, {"error": "bad_request", "message": "invalid Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        try:
            if path.startswith("/_sandbox/"):
                try:
                    reply = _admin(self, method, path, query, body)
                except ValueError as exc:
                    reply = _json(400, {"error": "bad_request", "message": str(exc)})
            else:
                routes = VENDOR_ROUTES.get(path)
                if routes is None:
                    reply = _json(404, {"error": "not_found"})
                elif method not in routes:
                    reply = _json(405, {"error": "method_not_allowed"}, (("Allow", ", ".join(routes)),))
                else:
                    reply = self._vendor(*routes[method], body)
        except Exception:  # a sandbox bug: answer 500 and show it
            traceback.print_exc(file=sys.stderr)
            reply = _json(500, {"error": "internal_error"})
        self._send(reply)

    def _vendor(self, vendor: str, endpoint: str, handler: VendorHandler, body: bytes) -> Reply:
        wall, mono = time.time(), time.monotonic()
        state = self.sandbox.state
        config = self.sandbox.config
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = _INVALID
        is_api = API_ENDPOINTS[vendor] == endpoint
        items = _item_count(vendor, payload) if is_api else 0
        if is_api:
            limited = state.check_rate_limit(vendor, mono)
            if limited is not None:
                if vendor == XOXODAY:
                    reply = _xoxoday_limited(config, limited)
                else:
                    reply = _capillary_limited(config, limited)
                state.log_request(vendor, endpoint, reply[0], items, wall, mono, limited=True)
                return reply
        if config.latency_ms > 0:
            time.sleep(config.latency_ms / 1000.0)
        fault = state.draw_fault()
        if fault is not None:
            reply = _html_error(fault)
            state.log_request(vendor, endpoint, fault, items, wall, mono, fault=True)
            return reply
        reply, processed = handler(self, payload)
        state.log_request(vendor, endpoint, reply[0], items, wall, mono, processed=processed)
        if config.reply_delay_ms > 0 and is_api:
            time.sleep(config.reply_delay_ms / 1000.0)
        return reply

    def _send(self, reply: Reply) -> None:
        status, body, content_type, headers = reply
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            # One write for headers and body (end_headers() would flush the headers alone).
            self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
            self._headers_buffer.append(body)  # type: ignore[attr-defined]
            self.flush_headers()
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        """Remember open connections so that ``stop()`` can close idle keep-alive ones."""
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Shut down every open client connection."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Sandbox:
    """Local emulator of both vendors' APIs, served over HTTP on a background thread.

    :param config: behaviour knobs (shared, mutable at runtime); a default one is created if omitted.
    :param dataset: vendor-side data to load (issued points, promotions, earns).
    :param host: interface to bind.
    :param port: port to bind; 0 picks a free one.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        dataset: Dataset | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.state = SandboxState(self.config)
        if dataset is not None:
            dataset.load_into(self.state)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the base URL (``http://host:port``) of the running sandbox."""
        if self._server is None:
            raise RuntimeError("sandbox is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def running(self) -> bool:
        """Tell whether the server is serving."""
        return self._server is not None

    def start(self) -> str:
        """Bind, serve on a daemon thread and return the base URL."""
        if self._server is not None:
            raise RuntimeError("sandbox is already started")
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="loyalty-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        # serve_forever() only notices shutdown() between polls: wake its selector with empty connections.
        stopper = threading.Thread(target=server.shutdown, name="loyalty-sandbox-stop", daemon=True)
        stopper.start()
        host, port = server.server_address[:2]
        while stopper.is_alive():
            try:
                socket.create_connection((str(host), port), timeout=0.2).close()
            except OSError:
                pass
            stopper.join(0.01)
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Sandbox:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Token helpers for tests.
    def reset_tokens(self) -> None:
        """Restore the initial Xoxoday pair and forget every issued token."""
        self.state.reset_tokens()

    def expire_xoxoday_access_tokens(self) -> None:
        """Expire every Xoxoday access token (next API call gets 401)."""
        self.state.expire_xoxoday_access_tokens()

    def expire_capillary_tokens(self) -> None:
        """Expire every Capillary OAuth token (next API call gets 498)."""
        self.state.expire_capillary_tokens()

    def set_xoxoday_tokens(self, access_token: str | None = None, refresh_token: str | None = None) -> None:
        """Make the given access token valid and/or the given refresh token the current one."""
        self.state.set_xoxoday_tokens(access_token, refresh_token)

    def xoxoday_tokens(self) -> dict[str, Any]:
        """Return the current Xoxoday access/refresh pair and their expiries (epoch ms)."""
        return self.state.xoxoday_tokens()

    def stats(self) -> dict[str, Any]:
        """Return the per-vendor statistics (same as ``GET /_sandbox/stats``)."""
        return self.state.stats()
