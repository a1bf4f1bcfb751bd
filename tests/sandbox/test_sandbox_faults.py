"""Rate limits, fault injection, latency, admin endpoints, stats and HTTP plumbing of the sandbox."""

from __future__ import annotations

import http.client
import time

import pytest
import requests

from airflow_provider_loyalty.sandbox import Dataset, Sandbox, SandboxConfig
from airflow_provider_loyalty.sandbox.state import _max_in_window
from tests.sandbox.helpers import cancel, revoke, rows_with_outcome

# rpm 400 over a 0.3 s window allows ceil(400 * 0.3 / 60) = 2 requests per window.
SHORT_LIMIT = {"rate_window_seconds": 0.3}


def _issued(dataset: Dataset) -> list[int]:
    rows = zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
    return [uid for (uid, _), outcome in rows if outcome == "cancel"]


def test_xoxoday_rate_limit_and_penalty(
    config: SandboxConfig, sb: Sandbox, http: requests.Session, dataset: Dataset
) -> None:
    """Over the limit: the penaltySeconds body, a penalty window refusing everything, no state change."""
    config.update({**SHORT_LIMIT, "xoxoday_rpm": 400, "xoxoday_penalty_seconds": 0.3})
    ids = _issued(dataset)
    assert [cancel(http, sb.url, [uid]).status_code for uid in ids[:2]] == [200, 200]
    limited = cancel(http, sb.url, [ids[2]])
    assert limited.status_code == 429
    assert limited.json() == {"errors": [{"message": "auth.request_limit_exceeded", "penaltySeconds": 1}]}
    assert cancel(http, sb.url, [ids[3]]).json()["errors"][0]["penaltySeconds"] == 1
    assert sb.state.point_attempts(ids[2:4]) == {
        uid: {"attempts": 0, "cancelled": 0, "status": "issued"} for uid in ids[2:4]
    }
    stats = sb.stats()["xoxoday"]
    assert (stats["rate_limited"], stats["requests_in_penalty"], stats["rate_limit"]) == (2, 1, 2)
    assert (stats["max_requests_in_window"], stats["max_accepted_in_window"]) == (4, 2)
    time.sleep(0.32)
    assert cancel(http, sb.url, [ids[2]]).status_code == 200


def test_xoxoday_penalty_seconds_counts_down(
    config: SandboxConfig,
    sb: Sandbox,
    http: requests.Session,
) -> None:
    """The penalty body carries the remaining seconds, rounded up; the status is configurable."""
    config.update({"xoxoday_rpm": 1, "xoxoday_penalty_seconds": 90, "xoxoday_limit_status": 403})
    assert cancel(http, sb.url, [1]).status_code == 200
    first = cancel(http, sb.url, [1])
    assert first.status_code == 403
    assert first.json()["errors"][0]["penaltySeconds"] == 90
    config.xoxoday_penalty_seconds = 0  # no new penalty starts; the running one keeps counting down
    assert 89 <= cancel(http, sb.url, [1]).json()["errors"][0]["penaltySeconds"] <= 90


def test_capillary_rate_limit_retry_after(
    config: SandboxConfig, sb: Sandbox, http: requests.Session, dataset: Dataset
) -> None:
    """Over the limit: 429 with Retry-After (when enabled) for the whole penalty window; state untouched."""
    config.update({**SHORT_LIMIT, "capillary_rpm": 400, "capillary_penalty_seconds": 0.3})
    rows = rows_with_outcome(dataset, 0)
    for customer, promo, earn_id, _ in rows[:2]:
        assert revoke(http, sb.url, customer, [(promo, [earn_id])]).status_code == 200
    customer, promo, earn_id, _ = rows[2]
    limited = revoke(http, sb.url, customer, [(promo, [earn_id])])
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {"errors": [{"code": 429, "message": "Too many requests"}]}
    config.capillary_retry_after = False
    quiet = revoke(http, sb.url, customer, [(promo, [earn_id])])
    assert quiet.status_code == 429
    assert "Retry-After" not in quiet.headers
    assert sb.state.earn(earn_id)[2] == "unredeemed"
    stats = sb.stats()["capillary"]
    assert (stats["rate_limited"], stats["requests_in_penalty"], stats["attempted_ids"]) == (2, 1, 2)
    time.sleep(0.32)
    assert revoke(http, sb.url, customer, [(promo, [earn_id])]).status_code == 200


def test_rate_limit_only_on_api_endpoints(config: SandboxConfig, sb: Sandbox, http: requests.Session) -> None:
    """Token and admin endpoints are not rate limited (the documented limits are on the API calls)."""
    config.update({"xoxoday_rpm": 1, "capillary_rpm": 1})
    for _ in range(3):
        validate = http.get(sb.url + "/chef/v1/oauth/token", headers={"Authorization": "Bearer x"})
        assert validate.status_code == 401
        assert http.get(sb.url + "/_sandbox/stats").status_code == 200


def test_fail_next(config: SandboxConfig, sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """The next N vendor requests get an HTML 503 and change nothing, token endpoints included."""
    config.fail_next = 2
    uid = _issued(dataset)[0]
    first = cancel(http, sb.url, [uid])
    assert first.status_code == 503
    assert first.headers["Content-Type"] == "text/html"
    assert "<html>" in first.text
    refresh = http.post(sb.url + "/chef/v1/oauth/token/company", json={})
    assert refresh.status_code == 503
    assert config.fail_next == 0
    assert sb.state.point_attempts([uid])[uid]["attempts"] == 0
    assert cancel(http, sb.url, [uid]).status_code == 200
    assert sb.stats()["xoxoday"]["faults"] == 2


def test_rate_limit_checked_before_faults(config: SandboxConfig, sb: Sandbox, http: requests.Session) -> None:
    """A rate-limited request does not consume ``fail_next``."""
    config.update({"xoxoday_rpm": 1, "xoxoday_penalty_seconds": 5})
    assert cancel(http, sb.url, [1]).status_code == 200
    config.fail_next = 1
    assert cancel(http, sb.url, [1]).status_code == 429
    assert config.fail_next == 1


def _statuses(dataset: Dataset, error_rate: float, seed: int, n: int = 30) -> list[int]:
    config = SandboxConfig(error_rate=error_rate, seed=seed)
    with Sandbox(config, dataset) as sandbox, requests.Session() as s:
        return [cancel(s, sandbox.url, [1]).status_code for _ in range(n)]


def test_error_rate_is_deterministic(dataset: Dataset) -> None:
    """The same seed gives the same sequence of 502/503s; the share follows ``error_rate``."""
    first = _statuses(dataset, 0.5, seed=3)
    assert first == _statuses(dataset, 0.5, seed=3)
    assert first != _statuses(dataset, 0.5, seed=4)
    assert set(first) == {200, 502, 503}
    assert set(_statuses(dataset, 1.0, seed=3, n=5)) <= {502, 503}


def test_latency(config: SandboxConfig, sb: Sandbox, http: requests.Session) -> None:
    """``latency_ms`` delays every vendor answer."""
    config.latency_ms = 60
    start = time.monotonic()
    cancel(http, sb.url, [1])
    assert time.monotonic() - start >= 0.06


def test_admin_config(config: SandboxConfig, sb: Sandbox, http: requests.Session) -> None:
    """The config can be read and patched over HTTP; bad patches are refused as a whole."""
    assert http.get(sb.url + "/_sandbox/config").json() == config.to_dict()
    patched = http.post(sb.url + "/_sandbox/config", json={"capillary_rpm": 100, "latency_ms": 5}).json()
    assert (patched["capillary_rpm"], patched["latency_ms"]) == (100, 5.0)
    assert (config.capillary_rpm, config.latency_ms) == (100, 5.0)
    for bad in (
        {"no_such_field": 1},
        {"error_rate": 2},
        {"capillary_rpm": "100"},
        {"fail_next": 1.5},
        {"latency_ms": 1, "capillary_retry_after": "yes"},
    ):
        response = http.post(sb.url + "/_sandbox/config", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"] == "bad_request"
    assert config.latency_ms == 5.0


def test_stats_and_reset(sb: Sandbox, http: requests.Session, dataset: Dataset) -> None:
    """Stats count vendor requests by status (admin calls excluded); reset-stats clears counts, not state."""
    uid = _issued(dataset)[0]
    cancel(http, sb.url, [uid])
    cancel(http, sb.url, [uid])
    cancel(http, sb.url, [uid], token="bad")
    customer, promo, earn_id, _ = rows_with_outcome(dataset, 0)[0]
    revoke(http, sb.url, customer, [(promo, [earn_id])])
    capillary_attempts = http.get(f"{sb.url}/_sandbox/capillary/attempts?earn_ids={earn_id},nope").json()
    assert capillary_attempts == {
        earn_id: {"attempts": 1, "revoked": 1, "state": "revoked"},
        "nope": {"attempts": 0, "revoked": 0, "state": None},
    }
    stats = http.get(sb.url + "/_sandbox/stats").json()
    assert stats["xoxoday"]["requests"] == 3
    assert stats["xoxoday"]["by_status"] == {"200": 2, "401": 1}
    assert stats["xoxoday"]["duplicate_attempts"] == 1
    assert stats["xoxoday"]["cancelled"] == 1
    assert stats["capillary"]["by_endpoint"] == {"revoke_earn": 1}
    assert stats["capillary"]["revoked"] == 1
    log = http.get(sb.url + "/_sandbox/requests?vendor=xoxoday").json()["requests"]
    assert [row["status"] for row in log] == [200, 200, 401]
    assert all(row["items"] == 1 and row["endpoint"] == "cancel_points" for row in log)
    assert http.post(sb.url + "/_sandbox/reset-stats").status_code == 200
    stats = http.get(sb.url + "/_sandbox/stats").json()
    assert stats["xoxoday"]["requests"] == 0 and stats["xoxoday"]["duplicate_attempts"] == 0
    assert stats["xoxoday"]["points_cancelled"] == 1
    assert sb.state.point_attempts([uid])[uid] == {"attempts": 0, "cancelled": 0, "status": "cancelled"}


def test_admin_errors(sb: Sandbox, http: requests.Session) -> None:
    """Unknown admin and vendor paths are 404, wrong methods 405, bad parameters 400."""
    assert http.get(sb.url + "/_sandbox/nothing").status_code == 404
    assert http.get(sb.url + "/nothing").status_code == 404
    assert http.get(sb.url + "/api_gateway/v1/promotions/revokeEarn").status_code == 405
    assert http.get(sb.url + "/_sandbox/xoxoday/attempts?ids=abc").status_code == 400
    assert http.post(sb.url + "/_sandbox/tokens/expire?vendor=other").status_code == 400


def test_max_in_window() -> None:
    """The busiest sliding window is found over unsorted-free, sorted timestamps."""
    assert _max_in_window([], 1.0) == 0
    assert _max_in_window([0.0, 0.5, 0.99, 1.0, 1.2, 5.0], 1.0) == 4
    assert _max_in_window([0.0, 1.0, 2.0], 1.0) == 1


def test_keep_alive_and_content_length(sb: Sandbox) -> None:
    """HTTP/1.1 with Content-Length: several requests go over one connection."""
    host, port = sb.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/_sandbox/health")
            response = conn.getresponse()
            body = response.read()
            assert response.version == 11
            assert int(response.headers["Content-Length"]) == len(body)
            assert response.headers.get("Connection", "").lower() != "close"
    finally:
        conn.close()


def test_stop_closes_connections(dataset: Dataset) -> None:
    """After ``stop()`` even kept-alive connections are refused, and the context manager restarts cleanly."""
    sandbox = Sandbox(dataset=dataset)
    url = sandbox.start()
    with requests.Session() as session:
        assert session.get(url + "/_sandbox/health").status_code == 200
        sandbox.stop()
        sandbox.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url + "/_sandbox/health", timeout=2)
    with pytest.raises(RuntimeError):
        _ = sandbox.url


def test_token_faults_are_consumed_one_per_token_answer(
    config: SandboxConfig, sb: Sandbox, http: requests.Session, dataset: Dataset
) -> None:
    """Each token answer takes the next fault: unreadable, expired, error page, refused, then as usual."""
    from airflow_provider_loyalty.sandbox import CAPILLARY_OAUTH_KEY, CAPILLARY_OAUTH_SECRET

    config.update({"token_faults": ["unreadable", "expired", "error_page", "refused"]})
    url = f"{sb.url}/v3/oauth/token/generate"
    credentials = {"key": CAPILLARY_OAUTH_KEY, "secret": CAPILLARY_OAUTH_SECRET}
    answers = [http.post(url, json=credentials, timeout=10) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 503, 401, 200]
    unreadable, expired, usual = answers[0].json()["data"], answers[1].json()["data"], answers[4].json()["data"]
    assert unreadable["ttlSeconds"] == "60m" and usual["ttlSeconds"] == 3600  # the documented type: seconds
    assert answers[2].headers["Content-Type"] == "text/html" and config.token_faults == []
    customer, promotion, earn, _ = dataset.earn_reversals[0]

    def revoke_with(token: str) -> int:
        headers = {"X-CAP-API-OAUTH-TOKEN": token}
        return revoke(http, sb.url, customer, [(promotion, [earn])], headers=headers).status_code

    # the unreadable answer's token is live; the "expired" one is refused as expired (498)
    assert (revoke_with(expired["accessToken"]), revoke_with(unreadable["accessToken"])) == (498, 200)
    assert set(sb.state.capillary_tokens()) == {unreadable["accessToken"], expired["accessToken"], usual["accessToken"]}


def test_xoxoday_token_faults(config: SandboxConfig, sb: Sandbox, http: requests.Session) -> None:
    from airflow_provider_loyalty.sandbox import XOXODAY_CLIENT_ID, XOXODAY_CLIENT_SECRET, XOXODAY_REFRESH_TOKEN

    def refresh(token: str) -> requests.Response:
        body = {
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": XOXODAY_CLIENT_ID,
            "client_secret": XOXODAY_CLIENT_SECRET,
        }
        return http.post(f"{sb.url}/chef/v1/oauth/token/company", json=body, timeout=10)

    config.update({"token_faults": ["error_page", "refused", "unreadable", "expired"]})
    assert refresh(XOXODAY_REFRESH_TOKEN).status_code == 503
    assert refresh(XOXODAY_REFRESH_TOKEN).json()["error"] == "invalid_grant"  # nothing rotated
    unreadable = refresh(XOXODAY_REFRESH_TOKEN).json()
    assert unreadable["expires_in"] == "15 days" and sb.xoxoday_tokens()["access_token"] == unreadable["access_token"]
    expired = refresh(unreadable["refresh_token"]).json()  # the rotation did happen
    assert cancel(http, sb.url, [1], token=expired["access_token"]).status_code == 401
    with pytest.raises(ValueError, match="token_faults must be a list of"):
        config.update({"token_faults": ["slow"]})
