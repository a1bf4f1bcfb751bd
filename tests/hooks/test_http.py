"""The shared HTTP layer: retry predicate, waits, pacing — asserted on a fake clock, never slept."""

from __future__ import annotations

import random
import threading
import time

import pytest
import requests

from airflow_provider_loyalty.hooks._client import VendorHTTPClient, user_agent
from airflow_provider_loyalty.hooks._clock import Clock
from airflow_provider_loyalty.hooks._limiter import PACING_MARGIN, RateLimiter
from airflow_provider_loyalty.hooks._pacing import ConcurrencyGate, RequestPacer
from airflow_provider_loyalty.hooks._retry import RetryPolicy, retry_after_seconds
from airflow_provider_loyalty.hooks.errors import VendorRateLimitError, VendorUnavailableError
from airflow_provider_loyalty.hooks.xoxoday import penalty_seconds
from tests.conftest import FakeClock

URL = "https://vendor.test"
PENALTY = {"errors": [{"message": "auth.request_limit_exceeded", "penaltySeconds": 7}]}


def client(clock: FakeClock, **kwargs: object) -> VendorHTTPClient:
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=4, backoff_initial=1.0, backoff_max=8.0))
    return VendorHTTPClient("vendor", URL, clock=clock, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


RETRY_TABLE = [
    # (answers, expected final status or error, attempts, waits)
    pytest.param([{"status_code": 502}, {"status_code": 200, "json": {}}], 200, 2, "backoff", id="status_502_retried"),
    pytest.param(
        [{"status_code": 503}, {"status_code": 504}, {"status_code": 200, "json": {}}],
        200,
        3,
        "backoff",
        id="status_503_504_retried",
    ),
    pytest.param([{"status_code": 400, "json": {"error": "bad"}}], 400, 1, None, id="status_400_not_retried"),
    pytest.param([{"status_code": 404}], 404, 1, None, id="status_404_not_retried"),
    pytest.param([{"status_code": 401}], 401, 1, None, id="status_401_left_to_the_hook"),
    pytest.param(
        [{"status_code": 429, "headers": {"Retry-After": "12"}}, {"status_code": 200, "json": {}}],
        200,
        2,
        [12.0],
        id="status_429_with_retry_after",
    ),
    pytest.param(
        [{"status_code": 429}, {"status_code": 200, "json": {}}],
        200,
        2,
        "backoff",
        id="status_429_without_retry_after_backs_off",
    ),
    pytest.param(
        [{"status_code": 200, "json": PENALTY}, {"status_code": 200, "json": {}}],
        200,
        2,
        [7.0],
        id="xoxoday_penalty_body_on_200",
    ),
    pytest.param(
        [{"status_code": 403, "json": PENALTY}, {"status_code": 200, "json": {}}],
        200,
        2,
        [7.0],
        id="xoxoday_penalty_body_on_403",
    ),
    pytest.param([{"status_code": 502}] * 4, VendorUnavailableError, 4, "backoff", id="attempts_bounded_5xx"),
    pytest.param(
        [{"status_code": 429, "headers": {"Retry-After": "1"}}] * 6 + [{"status_code": 200, "json": {}}],
        200,
        7,
        [1.0] * 6,
        id="rate_limit_answers_spend_no_attempt",
    ),
    pytest.param(
        [{"status_code": 429, "headers": {"Retry-After": "86400"}}],
        VendorRateLimitError,
        1,
        [],
        id="retry_after_beyond_max_wait_fails",
    ),
    pytest.param(
        [{"exc": requests.ConnectionError}, {"status_code": 200, "json": {}}],
        200,
        2,
        "backoff",
        id="connection_error_retried",
    ),
    pytest.param(
        [{"exc": requests.ReadTimeout}, {"status_code": 200, "json": {}}], 200, 2, "backoff", id="read_timeout_retried"
    ),
    pytest.param([{"exc": requests.ConnectTimeout}] * 4, VendorUnavailableError, 4, "backoff", id="timeouts_bounded"),
]


@pytest.mark.parametrize(("answers", "expected", "attempts", "waits"), RETRY_TABLE)
def test_retry_table(requests_mock, answers, expected, attempts, waits) -> None:
    clock = FakeClock()
    requests_mock.post(f"{URL}/x", answers)
    http = client(clock, throttle_hint=penalty_seconds)
    start = clock.monotonic()
    if isinstance(expected, int):
        assert http.request("POST", "/x", json={"a": 1}).response.status_code == expected
    else:
        with pytest.raises(expected) as info:
            http.request("POST", "/x", json={"a": 1})
        assert info.value.transient
    assert requests_mock.call_count == attempts
    elapsed = clock.monotonic() - start
    if waits == "backoff":
        # exponential with jitter: attempt n waits between 0.5 and 1 x min(8, 2^(n-1))
        assert len(clock.sleeps) == attempts - 1
        for n, slept in enumerate(clock.sleeps, start=1):
            ceiling = min(8.0, 2 ** (n - 1))
            assert ceiling / 2 <= slept <= ceiling
    elif waits is None:
        assert elapsed == 0
    else:
        # throttled waits are served by the shared limiter: time advanced exactly by them
        assert elapsed == pytest.approx(sum(waits))


def test_no_request_inside_the_window_on_any_thread(requests_mock) -> None:
    """A 429 window announced to one thread holds back the others too."""
    clock = FakeClock()
    pacer = RequestPacer(clock=clock)
    sent_at: list[float] = []

    def answer(request, context):
        sent_at.append(clock.monotonic())
        if len(sent_at) == 1:
            context.status_code = 429
            context.headers["Retry-After"] = "30"
            return {}
        context.status_code = 200
        return {}

    requests_mock.post(f"{URL}/x", json=answer)
    http = client(clock, pacer=pacer)
    http.request("POST", "/x")  # 429 then success after 30 s
    other = client(clock, pacer=pacer)  # another thread/hook sharing the task's pacer
    other.request("POST", "/x")
    assert sent_at[1] >= sent_at[0] + 30
    assert sent_at[2] >= sent_at[0] + 30


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"}, now=now) == pytest.approx(20.0)
    assert retry_after_seconds({"Retry-After": "garbage"}, now=now) is None
    assert retry_after_seconds({}, now=now) is None
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0


def test_sends_user_agent_and_timeouts(requests_mock) -> None:
    requests_mock.get(f"{URL}/x", json={})
    http = client(FakeClock(), timeout=(3.0, 17.0))
    seen = {}
    original = http.session.request

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    http.session.request = spy  # type: ignore[method-assign]
    http.request("GET", "/x")
    assert seen["timeout"] == (3.0, 17.0)
    assert requests_mock.last_request.headers["User-Agent"] == user_agent()
    assert user_agent().startswith("airflow-provider-loyalty/0.")


def test_limiter_spaces_evenly_against_absolute_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(120, clock=clock)  # one slot every 0.5 s (+2 % margin)
    starts = []
    for _ in range(5):
        limiter.acquire()
        starts.append(clock.monotonic())
        clock.now += 0.1  # the request itself takes a little time: must not push later slots
    assert [round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)] == [0.5 * PACING_MARGIN] * 4
    assert PACING_MARGIN == 1.02  # a small, fixed safety margin under the vendor's limit


def test_limiter_gives_no_burst_after_idle() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    limiter.acquire()
    clock.now += 100  # long idle
    limiter.acquire()
    t = clock.monotonic()
    limiter.acquire()
    assert clock.monotonic() - t == pytest.approx(1.0 * PACING_MARGIN)


def test_limiter_window_restarts_spacing_after_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    limiter.acquire()  # the first slot is one interval out: at 1_001.02
    limiter.block_until(clock.monotonic() + 10)
    limiter.acquire()
    assert clock.monotonic() == pytest.approx(1_011.02)
    limiter.acquire()
    assert clock.monotonic() == pytest.approx(1_012.04)


def test_first_request_waits_one_interval() -> None:
    """A task taking over a pool slot must not send right after its predecessor's last request."""
    clock = FakeClock()
    RateLimiter(120, clock=clock).acquire()
    assert clock.sleeps == [pytest.approx(0.51)]
    RateLimiter(None, clock=clock).acquire()  # no limit: no wait
    assert len(clock.sleeps) == 1


def test_limiter_threads_share_one_rate() -> None:
    """Real threads, real clock at a high rate: N acquisitions take at least (N-1) intervals."""
    import time

    limiter = RateLimiter(6000)  # 10 ms apart
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 19 * 0.010 * 0.95


def test_gate_halves_after_throttle_and_regrows() -> None:
    gate = ConcurrencyGate(8)
    gate.acquire()
    gate.release(throttled=True)
    assert gate.limit == 4
    for _ in range(4):
        gate.acquire()
        gate.release()
    assert gate.limit == 5


def test_policy_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_patched_time_sleep_waits_exactly_once_and_never_spins(requests_mock, monkeypatch) -> None:
    """With the system clock and time.sleep replaced (as many test suites do): one exact wait, no spin."""
    import time

    from airflow_provider_loyalty.hooks import _clock

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    requests_mock.post(f"{URL}/x", [{"status_code": 429, "headers": {"Retry-After": "7"}}, {"json": {}}])
    http = VendorHTTPClient("vendor", URL, clock=_clock.SYSTEM_CLOCK)
    assert http.request("POST", "/x").response.status_code == 200
    assert slept == [7.0]
    requests_mock.post(f"{URL}/x", [{"json": PENALTY}, {"json": {}}])
    slept.clear()
    other = VendorHTTPClient("vendor", URL, clock=_clock.SYSTEM_CLOCK, throttle_hint=penalty_seconds)
    assert other.request("POST", "/x").response.status_code == 200
    assert slept == [7.0]


def test_window_longer_than_max_wait_is_not_opened(requests_mock) -> None:
    clock = FakeClock()
    pacer = RequestPacer(clock=clock)
    requests_mock.post(f"{URL}/x", [{"status_code": 429, "headers": {"Retry-After": "86400"}}, {"json": {}}])
    http = client(clock, pacer=pacer)
    with pytest.raises(VendorRateLimitError, match="rate_limit_timeout=600"):
        http.request("POST", "/x")
    with pytest.raises(VendorRateLimitError):  # the task gave up: nothing more leaves
        http.request("POST", "/x")
    assert requests_mock.call_count == 1
    assert clock.sleeps == []  # nobody waits a day: the task gives up and Airflow retries later


def test_after_a_deferral_no_request_waits_the_window_in_the_worker(requests_mock) -> None:
    """A window handed to the triggerer stops every later request at once, before it takes a rate slot."""
    clock = FakeClock()
    pacer = RequestPacer(600, 1, clock=clock)
    pacer.defer_after = 30.0
    requests_mock.post(f"{URL}/x", [{"status_code": 429, "headers": {"Retry-After": "60"}}, {"json": {}}])
    http = client(clock, pacer=pacer)
    with pytest.raises(VendorRateLimitError) as first:
        http.request("POST", "/x")
    assert first.value.resume_after == 60
    # the request planned after it (the send loop queues some ahead): stopped, not slept for 60 s
    with pytest.raises(VendorRateLimitError) as second:
        http.request("POST", "/x")
    assert second.value.resume_after == 60
    assert requests_mock.call_count == 1
    assert not [s for s in clock.sleeps if s >= 1], clock.sleeps  # only the first request's pacing interval


class RecordingClock(Clock):
    """The real clock, noting each wait: when it began, how long it was asked for, and whether it was cut short."""

    def __init__(self) -> None:
        self.waits: list[tuple[float, float, bool]] = []
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        began = time.monotonic()
        super().sleep(seconds)
        with self._lock:
            self.waits.append((began, seconds, False))

    def wait(self, seconds: float, event: threading.Event) -> None:
        began = time.monotonic()
        cut = event.wait(seconds) if seconds > 0 else False
        with self._lock:
            self.waits.append((began, seconds, cut))


def test_a_deferral_wakes_the_requests_already_waiting_for_a_slot(requests_mock) -> None:
    """Threads waiting for their paced slot when a long window goes to the triggerer stop at once, sending nothing."""
    clock = RecordingClock()
    pacer = RequestPacer(30, 4, clock=clock)  # a slot every ~2 s: three threads wait for theirs
    pacer.defer_after = 30.0
    answered: list[float] = []

    def first_is_refused(request, context):
        answered.append(time.monotonic())
        context.status_code = 429 if len(answered) == 1 else 200
        context.headers["Retry-After"] = "60"
        return {}

    requests_mock.post(f"{URL}/x", json=first_is_refused)
    http = client(clock, pacer=pacer)
    raised: list[BaseException] = []

    def send() -> None:
        try:
            http.request("POST", "/x")
        except BaseException as exc:  # noqa: BLE001 - kept for the assertions
            raised.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert requests_mock.call_count == 1  # nothing left after the deferral
    assert len(raised) == 4 and all(isinstance(e, VendorRateLimitError) and e.resume_after == 60 for e in raised)
    refused_at = answered[0]
    # every wait still running when the window was deferred was cut short, none ran its course
    overlapping = [(began, seconds, cut) for began, seconds, cut in clock.waits if began + seconds > refused_at + 0.05]
    assert overlapping and all(cut for _, _, cut in overlapping), overlapping


def test_rate_limit_answers_are_bounded_by_the_time_budget(requests_mock) -> None:
    clock = FakeClock()
    pacer = RequestPacer(600, 4, clock=clock, rate_limit_timeout=30.0)
    requests_mock.post(f"{URL}/x", [{"json": {}}] * 3 + [{"status_code": 429, "headers": {"Retry-After": "10"}}] * 10)
    http = client(clock, pacer=pacer)
    for _ in range(3):
        assert http.request("POST", "/x").response.status_code == 200
    with pytest.raises(VendorRateLimitError) as info:
        http.request("POST", "/x")
    # 429 at +0, +10, +20 s (the wait fits the 30 s budget), then one more wait would not: stop
    assert requests_mock.call_count == 3 + 3
    message = info.value.message
    assert "accepted 3 requests over the last minute" in message and "max_requests_per_minute=600" in message
    assert "'auto'" in message and "below 3" in message and not info.value.may_have_been_applied


def test_one_info_line_per_vendor_window_and_no_warning(requests_mock, caplog) -> None:
    clock = FakeClock()
    pacer = RequestPacer(600, 4, clock=clock)
    requests_mock.post(f"{URL}/x", [{"status_code": 429, "headers": {"Retry-After": "5"}}] * 3 + [{"json": {}}])
    caplog.set_level("INFO")
    assert client(clock, pacer=pacer).request("POST", "/x").response.status_code == 200
    lines = [r for r in caplog.records if "every request waits" in r.getMessage()]
    assert len(lines) == 3 and all(r.levelname == "INFO" for r in lines)  # three windows, one after another
    assert not [r for r in caplog.records if r.levelno >= 30]
    assert pacer.open_window(10.0)[1] and not pacer.open_window(5.0)[1]  # inside a running window: no new one


def test_a_fixed_pace_steps_down_after_rate_limit_answers_and_climbs_back(requests_mock) -> None:
    clock = FakeClock()
    pacer = RequestPacer(1200, 4, clock=clock)
    http = client(clock, pacer=pacer)
    requests_mock.post(f"{URL}/x", [{"json": {}}] * 200 + [{"status_code": 429, "headers": {"Retry-After": "1"}}])
    for _ in range(200):
        http.request("POST", "/x")
    requests_mock.post(f"{URL}/x", [{"status_code": 429, "headers": {"Retry-After": "1"}}] * 3 + [{"json": {}}])
    http.request("POST", "/x")
    stepped = pacer.limiter.per_minute
    assert stepped is not None and stepped < 1200
    assert "stepped down from 1200/min" in pacer.pace_text()
    report = pacer.pace_report()
    assert report["mode"] == "fixed" and report["setting_per_minute"] == 1200 and report["rate_limit_windows"] == 3
    requests_mock.post(f"{URL}/x", json={})
    for _ in range(3000):
        http.request("POST", "/x")
    assert stepped < pacer.limiter.per_minute <= 1200  # back up, never above the setting


@pytest.mark.parametrize(
    ("first", "ambiguous"),
    [
        pytest.param({"status_code": 504}, True, id="status_504_gateway_timeout_may_have_been_applied"),
        pytest.param({"status_code": 502}, False, id="status_502_error_page_not_processed"),
        pytest.param({"status_code": 503}, False, id="status_503_error_page_not_processed"),
        pytest.param({"exc": requests.ReadTimeout}, True, id="read_timeout_may_have_been_applied"),
        pytest.param({"exc": requests.ConnectTimeout}, False, id="connect_timeout_sent_nothing"),
        pytest.param({"status_code": 429, "headers": {"Retry-After": "1"}}, False, id="status_429_refused_unapplied"),
    ],
)
def test_resend_after_an_ambiguous_attempt_is_flagged(requests_mock, first, ambiguous) -> None:
    requests_mock.post(f"{URL}/x", [first, {"json": {}}])
    answer = client(FakeClock()).request("POST", "/x")
    assert answer.after_ambiguous_attempt is ambiguous
    assert answer.response.status_code == 200


def test_dropped_body_is_retried(requests_mock) -> None:
    requests_mock.post(f"{URL}/x", [{"exc": requests.exceptions.ChunkedEncodingError}, {"json": {}}])
    assert client(FakeClock()).request("POST", "/x").response.status_code == 200


def test_bad_url_is_a_config_error_not_retried() -> None:
    from airflow_provider_loyalty.hooks.errors import VendorConfigError

    bad = VendorHTTPClient("vendor", "htp://nowhere", clock=FakeClock())
    with pytest.raises(VendorConfigError):
        bad.request("POST", "/x")


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        pytest.param("accounts.xoxoday.com", None, "https://accounts.xoxoday.com", id="bare_host_gets_https"),
        pytest.param("http://127.0.0.1", 8099, "http://127.0.0.1:8099", id="port_field"),
        pytest.param("http://127.0.0.1:8099/", None, "http://127.0.0.1:8099", id="port_in_host"),
        pytest.param(
            "https://accounts.xoxoday.com/chef/v1/oauth/api",
            None,
            "https://accounts.xoxoday.com",
            id="docs_url_pasted_as_host",
        ),
        pytest.param(
            "https://proxy.example/xoxoday", 8443, "https://proxy.example:8443/xoxoday", id="proxy_prefix_kept"
        ),
        pytest.param(None, None, "https://default.example", id="default"),
        pytest.param("http://[::1]", 8099, "http://[::1]:8099", id="ipv6_host_gets_the_port"),
        pytest.param("http://[::1]:8100", 8099, "http://[::1]:8100", id="ipv6_host_keeps_its_port"),
        pytest.param(" https://h.example/api/ ", None, "https://h.example/api", id="blanks_and_trailing_slash"),
        pytest.param("https://h.example:", 8443, "https://h.example:8443", id="empty_port_takes_the_field"),
    ],
)
def test_base_url(host, port, expected) -> None:
    from airflow_provider_loyalty.hooks._urls import base_url

    assert base_url(host, port, "https://default.example", vendor_paths=("/chef/",)) == expected


@pytest.mark.parametrize(
    ("host", "message"),
    [
        pytest.param("https://[::1", "is not a URL", id="unbalanced_bracket"),
        pytest.param("https://h.example:99999", "is not a URL", id="port_out_of_range"),
        pytest.param("https://h.example/x?tenant=abc", "query or fragment", id="query"),
        pytest.param("https://h.example#top", "query or fragment", id="fragment"),
        pytest.param("https://:8080", "names no host", id="no_host"),
    ],
)
def test_base_url_refuses_what_is_no_base_url(host, message) -> None:
    """A configuration error (fatal: not retried), naming the host, not a bare ValueError or a broken URL."""
    from airflow_provider_loyalty.hooks._urls import base_url
    from airflow_provider_loyalty.hooks.errors import VendorConfigError

    with pytest.raises(VendorConfigError, match=message) as info:
        base_url(host, 8443, "https://default.example")
    assert info.value.fatal
    assert repr(host) in str(info.value)
