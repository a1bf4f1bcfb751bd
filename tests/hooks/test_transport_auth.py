"""Transport and auth: no redirects followed, refused credentials are fatal, errors say what happened."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from airflow_provider_loyalty.hooks._client import VendorHTTPClient, transport_failure
from airflow_provider_loyalty.hooks._retry import RetryPolicy, may_have_been_applied
from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore
from airflow_provider_loyalty.hooks.capillary import CapillaryHook
from airflow_provider_loyalty.hooks.errors import (
    CredentialsMissingError,
    VendorAuthError,
    VendorConfigError,
    VendorError,
    VendorRequestError,
    VendorResponseError,
    VendorUnavailableError,
)
from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
from tests.conftest import CAPILLARY_URL, XOXODAY_URL, FakeClock, set_connection

REVOKE = f"{CAPILLARY_URL}/api_gateway/v1/promotions/revokeEarn"
CAP_TOKEN = f"{CAPILLARY_URL}/v3/oauth/token/generate"
XO_API = f"{XOXODAY_URL}/chef/v1/oauth/api"
XO_TOKEN = f"{XOXODAY_URL}/chef/v1/oauth/token/company"
ELSEWHERE = "https://elsewhere.test"
REVOKED = {
    "data": {"customerId": 5, "revokedDetails": [{"promotionId": "p1", "revokedEarnIds": ["e1"], "status": "SUCCESS"}]},
    "errors": [],
}
CANCELLED = {"data": {"cancelBalance": {"error": False, "recipients": [{"unique_id": 1, "success": True}]}}}


def capillary(conn_id: str = "capillary_default", clock: FakeClock | None = None) -> CapillaryHook:
    return CapillaryHook(conn_id, clock=clock or FakeClock(), retry_policy=RetryPolicy(max_attempts=3))


def xoxoday(clock: FakeClock | None = None) -> XoxodayHook:
    return XoxodayHook(token_store=MemoryTokenStore(), clock=clock or FakeClock(), retry_policy=RetryPolicy(3))


# ------------------------------------------------------------------------------------------- redirects
REDIRECTS = [301, 302, 303, 307, 308]


@pytest.mark.parametrize("status", REDIRECTS, ids=[f"capillary_oauth_{s}" for s in REDIRECTS])
def test_capillary_redirect_is_not_followed_and_the_token_stays_home(requests_mock, capillary_oauth_conn, status):
    requests_mock.post(CAP_TOKEN, json={"data": {"accessToken": "cap-token-SECRET", "ttlSeconds": 3600}})
    requests_mock.post(
        REVOKE, status_code=status, headers={"Location": f"{ELSEWHERE}/collect?token=cap-token-SECRET#frag"}
    )
    elsewhere = requests_mock.post(f"{ELSEWHERE}/collect", json=REVOKED)
    with pytest.raises(VendorConfigError) as info:
        capillary("capillary_oauth").revoke_earn(5, {"p1": ["e1"]})
    assert [r.url for r in requests_mock.request_history] == [CAP_TOKEN, REVOKE]  # sent once, never elsewhere
    assert not elsewhere.called
    assert info.value.fatal and not info.value.transient and info.value.status_code == status
    assert f"redirects to {ELSEWHERE}/collect;" in str(info.value)
    assert "cap-token-SECRET" not in str(info.value) and "frag" not in str(info.value)


def test_capillary_basic_redirect_keeps_the_authorization_header_home(requests_mock, capillary_conn):
    requests_mock.post(REVOKE, status_code=307, headers={"Location": f"{ELSEWHERE}/revokeEarn"})
    elsewhere = requests_mock.post(f"{ELSEWHERE}/revokeEarn", json=REVOKED)
    with pytest.raises(VendorConfigError, match="redirects to https://elsewhere.test/revokeEarn"):
        capillary().revoke_earn(5, {"p1": ["e1"]})
    assert requests_mock.call_count == 1 and not elsewhere.called


@pytest.mark.parametrize(
    ("endpoint", "needs_refresh"),
    [(XO_API, False), (XO_TOKEN, True)],
    ids=["xoxoday_cancel_redirect", "xoxoday_refresh_redirect_keeps_client_secret_home"],
)
def test_xoxoday_redirects_are_not_followed(requests_mock, xoxoday_conn, endpoint, needs_refresh):
    if needs_refresh:
        requests_mock.post(XO_API, status_code=401, json={"error": "Unauthorized"})
    requests_mock.post(endpoint, status_code=302, headers={"Location": "/elsewhere/path"})
    requests_mock.post(f"{XOXODAY_URL}/elsewhere/path", json=CANCELLED)
    with pytest.raises(VendorConfigError, match=f"redirects to {XOXODAY_URL}/elsewhere/path"):
        xoxoday().cancel_points([1])
    assert "/elsewhere/path" not in [r.path for r in requests_mock.request_history]
    assert requests_mock.request_history[-1].url == endpoint


# --------------------------------------------------------------------------------- refused credentials
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"errors": [{"code": 401, "message": "Invalid key or secret"}]}),
        (400, {"data": None, "errors": [{"code": 400, "message": "Invalid key or secret"}]}),
        (200, {"data": None, "errors": [{"code": 1401, "message": "Invalid key or secret"}]}),
    ],
    ids=["token_refused_401", "token_refused_400", "token_refused_in_a_200_answer"],
)
def test_wrong_capillary_oauth_key_or_secret_is_fatal(requests_mock, capillary_oauth_conn, status, body):
    requests_mock.post(CAP_TOKEN, status_code=status, json=body)
    revoke = requests_mock.post(REVOKE, json=REVOKED)
    hook = capillary("capillary_oauth")
    with pytest.raises(VendorAuthError) as info:
        hook.prepare()  # the operator's first step: refused credentials stop the task before any revoke
    assert info.value.fatal is True and info.value.transient is False
    assert "'capillary_oauth'" in str(info.value) and "refused by token generation" in str(info.value)
    assert "Invalid key or secret" not in str(info.value)  # a token endpoint's body is never quoted
    assert requests_mock.call_count == 1 and not revoke.called
    assert "oauth-secret-SSS" not in str(info.value)


def test_wrong_capillary_till_password_names_the_connection_once(requests_mock, capillary_conn):
    requests_mock.post(REVOKE, status_code=401, json={"errors": [{"code": 401, "message": "Unauthorized"}]})
    with pytest.raises(VendorAuthError) as info:
        capillary().revoke_earn(5, {"p1": ["e1"]})
    text = str(info.value)
    assert "till id/password of connection 'capillary_default' refused: Unauthorized" in text
    assert text.count("401") == 1, text
    assert info.value.fatal


def test_wrong_xoxoday_client_secret_is_named_and_not_waited_on(requests_mock, xoxoday_conn):
    requests_mock.post(XO_API, status_code=401, json={"error": "Unauthorized"})
    requests_mock.post(
        XO_TOKEN, status_code=401, json={"error": "invalid_client", "error_description": "Client authentication failed"}
    )
    clock = FakeClock()
    with pytest.raises(VendorAuthError) as info:
        xoxoday(clock).cancel_points([1])
    text = str(info.value)
    assert "refused the client credentials (invalid_client)" in text and "'xoxoday_default'" in text
    assert "refresh token" not in text
    assert info.value.fatal and clock.sleeps == []  # no wait for another task's rotation
    assert [r.url for r in requests_mock.request_history] == [XO_API, XO_TOKEN]
    assert "client-secret-XYZ" not in text


# ---------------------------------------------------------------------------------------- error family
def test_credentials_missing_is_a_fatal_vendor_error(monkeypatch):
    set_connection(monkeypatch, "capillary_default", conn_type="capillary", host=CAPILLARY_URL, login="till")
    with pytest.raises(VendorError) as info:
        capillary().prepare()
    assert isinstance(info.value, CredentialsMissingError)
    assert info.value.fatal and not info.value.transient and info.value.status_code is None
    assert str(info.value) == "capillary: Connection 'capillary_default' (capillary) lacks: password (till password)"


def test_vendor_status_is_readable_and_airflow_status_untouched(requests_mock, capillary_conn):
    from http import HTTPStatus

    from airflow.sdk.exceptions import AirflowException

    requests_mock.post(REVOKE, status_code=400, json={"errors": [{"code": 400, "message": "bad body"}]})
    with pytest.raises(VendorRequestError) as info:
        capillary().revoke_earn(5, {"p1": ["e1"]})
    assert (info.value.status_code, info.value.http_status) == (400, 400)
    assert AirflowException.status_code == HTTPStatus.INTERNAL_SERVER_ERROR


# ----------------------------------------------------------------------------------- transport messages
def test_refused_connection_names_host_port_and_cause(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_connection(
        monkeypatch,
        "xoxoday_default",
        conn_type="xoxoday",
        host=f"http://127.0.0.1:{port}",
        login="id",
        password="secret",
        extra={"access_token": "a", "refresh_token": "r"},
    )
    clock = FakeClock()
    with pytest.raises(VendorUnavailableError) as info:
        xoxoday(clock).cancel_points([1])
    assert f"connection refused to 127.0.0.1:{port} (after 3 attempt(s))" in str(info.value)
    assert info.value.transient and not info.value.fatal
    assert len(clock.sleeps) == 2  # retried with backoff, on the fake clock


def _wrapped(cause: BaseException) -> requests.ConnectionError:
    """What requests raises: ConnectionError(MaxRetryError(reason=NewConnectionError from cause))."""
    reason = NewConnectionError(None, f"Failed to establish a new connection: {cause}")  # type: ignore[arg-type]
    reason.__cause__ = cause
    return requests.ConnectionError(MaxRetryError(None, "/path", reason=reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_wrapped(ConnectionRefusedError(111, "Connection refused")), "connection refused to vendor.test:8443"),
        (_wrapped(socket.gaierror(-2, "Name or service not known")), "host name vendor.test not resolved"),
        (
            requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
            "connection reset by vendor.test:8443",
        ),
        (requests.ConnectTimeout("connect timed out"), "connect timeout to vendor.test:8443"),
        (requests.ReadTimeout("read timed out"), "read timeout from vendor.test:8443"),
    ],
    ids=["refused", "name_not_resolved", "reset", "connect_timeout", "read_timeout"],
)
def test_transport_failure_texts(error, expected):
    assert transport_failure(error, "https://vendor.test:8443/api").startswith(expected)


# ------------------------------------------------------------------------------------------ ambiguity
def test_a_send_that_may_have_applied_stays_ambiguous_across_a_token_refresh(requests_mock, xoxoday_conn):
    requests_mock.post(
        XO_API,
        [
            {"status_code": 504},  # may have been applied with the old token
            {"status_code": 401, "json": {"error": "Unauthorized"}},
            {"json": CANCELLED},
        ],
    )
    requests_mock.post(XO_TOKEN, json={"access_token": "access-NEW", "refresh_token": "refresh-NEW", "expires_in": 600})
    result = xoxoday().cancel_points([1])
    assert [r.url for r in requests_mock.request_history] == [XO_API, XO_API, XO_TOKEN, XO_API]
    assert requests_mock.last_request.headers["Authorization"] == "Bearer access-NEW"
    assert result.succeeded == [1] and result.after_ambiguous_attempt is True


def test_a_clean_send_is_not_ambiguous(requests_mock, capillary_conn):
    requests_mock.post(REVOKE, json=REVOKED)
    assert capillary().revoke_earn(5, {"p1": ["e1"]}).after_ambiguous_attempt is False


# ------------------------------------------------------------- failed before sending, or after it
# A request that certainly never left must not be taken for one the vendor may have applied: a later
# "already reversed" answer (Capillary's 731 also means "invalid earn") would then pass for a
# success. One that may have left stays in doubt whatever ends the exchange.
def plain_http(conn: socket.socket) -> bytes:
    """A plain-HTTP port (what sits behind an ``https`` URL pointing at the wrong port)."""
    data = conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    return data


@contextlib.contextmanager
def loopback(handle: Callable[[socket.socket], bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server handing each connection to ``handle``; yields its port and what each connection got."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    received.append(handle(conn))
                except (OSError, ssl.SSLError):
                    received.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM paths)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def tls_server(tls_files: tuple[str, str], *, then_plaintext: bool) -> Callable[[socket.socket], bytes]:
    """A TLS server; once it has read the request, optionally answers in plaintext (a TLS error while reading)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)

    def handle(conn: socket.socket) -> bytes:
        tls = context.wrap_socket(conn, server_side=True)  # a refused certificate fails here: b""
        data = tls.recv(65536)
        if then_plaintext:
            with socket.socket(fileno=tls.detach()) as raw:
                raw.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" * 20)
        return data

    return handle


def loopback_client(port: int, **session: object) -> VendorHTTPClient:
    http = VendorHTTPClient(
        "vendor", f"https://127.0.0.1:{port}", clock=FakeClock(), retry_policy=RetryPolicy(max_attempts=3)
    )
    for name, value in session.items():
        setattr(http.session, name, value)
    return http


def test_a_plain_http_port_behind_https_sent_nothing(monkeypatch):
    """WRONG_VERSION_NUMBER in the handshake: retried, then given up on, and nothing is in doubt."""
    with loopback(plain_http) as (port, received):
        with pytest.raises(VendorUnavailableError, match="TLS handshake with 127.0.0.1") as info:
            loopback_client(port).request("POST", "/revoke", json={"earn": "E1"})
    assert len(received) == 3 and all(data.startswith(b"\x16\x03") for data in received)  # ClientHellos only
    assert not any(b"POST" in data for data in received)
    assert info.value.may_have_been_applied is False


def test_a_refused_certificate_sent_nothing(tls_files):
    with loopback(tls_server(tls_files, then_plaintext=False)) as (port, received):
        with pytest.raises(VendorUnavailableError, match="CERTIFICATE_VERIFY_FAILED") as info:
            loopback_client(port).request("POST", "/revoke", json={"earn": "E1"})  # the default CA store
    assert received == [b"", b"", b""]  # three handshakes, no request read
    assert info.value.may_have_been_applied is False


def test_a_tls_error_while_reading_the_answer_may_have_been_applied(tls_files):
    with loopback(tls_server(tls_files, then_plaintext=True)) as (port, received):
        with pytest.raises(VendorUnavailableError) as info:
            loopback_client(port, verify=tls_files[0]).request("POST", "/revoke", json={"earn": "E1"})
    assert len(received) == 3 and all(data.startswith(b"POST /revoke ") for data in received)
    assert info.value.may_have_been_applied is True


def test_a_proxy_refusing_the_tunnel_sent_nothing():
    def refusing_proxy(conn: socket.socket) -> bytes:
        data = conn.recv(65536)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        return data

    with loopback(refusing_proxy) as (port, received):
        http = loopback_client(443, proxies={"https": f"http://127.0.0.1:{port}"})
        with pytest.raises(VendorUnavailableError, match="proxy") as info:
            http.request("POST", "/revoke", json={"earn": "E1"})
    assert len(received) == 3 and all(data.startswith(b"CONNECT 127.0.0.1:443 ") for data in received)
    assert info.value.may_have_been_applied is False


def test_an_unreachable_proxy_sent_nothing():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = loopback_client(443, proxies={"https": f"http://127.0.0.1:{port}"})
    with pytest.raises(VendorUnavailableError, match="proxy") as info:
        http.request("POST", "/revoke", json={"earn": "E1"})
    assert info.value.may_have_been_applied is False


def _ssl_error(text: str) -> requests.exceptions.SSLError:
    """What requests raises for a TLS failure (without the traceback that tells where it happened)."""
    return requests.exceptions.SSLError(MaxRetryError(None, "/path", reason=urllib3.exceptions.SSLError(text)))  # type: ignore[arg-type]


CERT_REFUSED = _ssl_error("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")
PROXY_DOWN = requests.exceptions.ProxyError(
    MaxRetryError(None, "/path", reason=urllib3.exceptions.ProxyError("Unable to connect to proxy", OSError("x")))  # type: ignore[arg-type]
)


@pytest.mark.parametrize(
    ("error", "applied"),
    [
        (CERT_REFUSED, False),
        (PROXY_DOWN, False),
        (requests.exceptions.InvalidURL("bad"), False),
        (_ssl_error("[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed"), True),
        (requests.ReadTimeout("read timed out"), True),
        (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))), True),
    ],
    ids=["certificate_refused", "proxy_down", "invalid_url", "tls_error_of_unknown_phase", "read_timeout", "reset"],
)
def test_which_transport_errors_may_have_been_applied(error, applied):
    assert may_have_been_applied(error, None) is applied


@pytest.mark.parametrize(
    ("first", "ambiguous"),
    [(CERT_REFUSED, False), (PROXY_DOWN, False), (requests.ReadTimeout, True)],
    ids=["certificate_refused", "proxy_down", "read_timeout"],
)
def test_a_resend_after_a_failure_before_sending_is_clean(requests_mock, capillary_conn, first, ambiguous):
    requests_mock.post(REVOKE, [{"exc": first}, {"json": REVOKED}])
    result = capillary().revoke_earn(5, {"p1": ["e1"]})
    assert requests_mock.call_count == 2
    assert result.after_ambiguous_attempt is ambiguous


def test_a_failure_before_sending_keeps_an_earlier_attempts_doubt(requests_mock, capillary_conn):
    requests_mock.post(REVOKE, [{"exc": requests.ReadTimeout}, {"exc": CERT_REFUSED}, {"exc": PROXY_DOWN}])
    with pytest.raises(VendorUnavailableError) as info:
        capillary().revoke_earn(5, {"p1": ["e1"]})
    assert requests_mock.call_count == 3
    assert info.value.may_have_been_applied is True


BAD_GZIP: dict[str, Any] = {"status_code": 200, "content": b'{"data": {}}', "headers": {"Content-Encoding": "gzip"}}


@pytest.mark.parametrize(
    ("answers", "ambiguous"),
    [([BAD_GZIP], False), ([{"exc": requests.ReadTimeout}, BAD_GZIP], True)],
    ids=["unreadable_2xx", "timeout_then_unreadable_2xx"],
)
def test_an_unreadable_2xx_is_an_answer_not_a_config_error(requests_mock, capillary_conn, answers, ambiguous):
    """Labelled gzip and not gzip: the vendor answered (processed, outcome unknown); not resent."""
    requests_mock.post(REVOKE, answers)
    with pytest.raises(VendorResponseError, match="unreadable") as info:
        capillary().revoke_earn(5, {"p1": ["e1"]})
    assert requests_mock.call_count == len(answers)
    assert info.value.status_code == 200 and not info.value.fatal
    assert info.value.may_have_been_applied is ambiguous


@pytest.mark.parametrize(
    ("answers", "ambiguous"),
    [
        ([{"status_code": 302}], False),
        ([{"status_code": 303}], True),
        ([{"exc": requests.ReadTimeout}, {"status_code": 302}], True),
        ([{"status_code": 503}, {"status_code": 307}], False),
    ],
    ids=["found", "see_other_means_processed", "timeout_then_found", "error_page_then_redirect"],
)
def test_a_redirect_keeps_what_may_have_been_applied(requests_mock, capillary_conn, answers, ambiguous):
    requests_mock.post(REVOKE, [a if "exc" in a else {**a, "headers": {"Location": f"{ELSEWHERE}/x"}} for a in answers])
    with pytest.raises(VendorConfigError, match="redirects to") as info:
        capillary().revoke_earn(5, {"p1": ["e1"]})
    assert requests_mock.call_count == len(answers)
    assert info.value.fatal and info.value.may_have_been_applied is ambiguous
