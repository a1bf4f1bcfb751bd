"""The sandbox's HTTP server: routing, the per-request vendor pipeline, and the ``Sandbox`` lifecycle.

Vendor endpoints live in ``xoxoday_api`` and ``capillary_api``, the admin endpoints in ``admin_api``, the
state they act on in ``state``. Every vendor request goes through the same pipeline here: rate limit,
configured latency, fault injection, the endpoint's handler, the request log, the configured reply delay.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.sandbox import admin_api, capillary_api, xoxoday_api
from airflow_provider_loyalty.sandbox.config import SandboxConfig
from airflow_provider_loyalty.sandbox.replies import (
    INVALID_JSON,
    JSON_TYPE,
    Reply,
    VendorApi,
    VendorHandler,
    html_error,
    json_reply,
)
from airflow_provider_loyalty.sandbox.state import SandboxState
from airflow_provider_loyalty.sandbox.vendors import API_ENDPOINTS

if TYPE_CHECKING:
    from airflow_provider_loyalty.sandbox.seed import Dataset

VENDOR_APIS = (xoxoday_api.API, capillary_api.API)

# path -> method -> (vendor API, endpoint name, handler), flattened so that a request costs one lookup.
VENDOR_ROUTES: dict[str, dict[str, tuple[VendorApi, str, VendorHandler]]] = {
    path: {method: (api, endpoint, handler) for method, (endpoint, handler) in methods.items()}
    for api in VENDOR_APIS
    for path, methods in api.routes.items()
}


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
            self._send(json_reply(411, {"error": "length_required"}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(json_reply(400, {"error": "bad_request", "message": "invalid Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        try:
            if path.startswith(admin_api.PREFIX):
                reply = admin_api.handle(self, method, path, query, body)
            else:
                routes = VENDOR_ROUTES.get(path)
                if routes is None:
                    reply = json_reply(404, {"error": "not_found"})
                elif method not in routes:
                    reply = json_reply(405, {"error": "method_not_allowed"}, (("Allow", ", ".join(routes)),))
                else:
                    reply = self._vendor(*routes[method], body)
        except Exception:  # a sandbox bug: answer 500 and show it
            traceback.print_exc(file=sys.stderr)
            reply = json_reply(500, {"error": "internal_error"})
        self._send(reply)

    def _vendor(self, api: VendorApi, endpoint: str, handler: VendorHandler, body: bytes) -> Reply:
        wall, mono = time.time(), time.monotonic()
        vendor = api.vendor
        state = self.sandbox.state
        config = self.sandbox.config
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = INVALID_JSON
        is_api = API_ENDPOINTS[vendor] == endpoint
        items = api.item_count(payload) if is_api else 0
        if is_api:
            limited = state.check_rate_limit(vendor, mono)
            if limited is not None:
                reply = api.limited_reply(config, limited)
                state.log_request(vendor, endpoint, reply[0], items, wall, mono, limited=True)
                return reply
        if config.latency_ms > 0:
            time.sleep(config.latency_ms / 1000.0)
        fault = state.draw_fault()
        if fault is not None:
            reply = html_error(fault)
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
