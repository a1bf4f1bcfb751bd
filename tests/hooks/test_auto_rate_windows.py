"""``"auto"``'s learning rule and the limiter's window guard, over many shapes of evidence (hypothesis).

The rule: a rate-limit answer means the vendor's window was full, so what it accepted within its
window before is its limit per window; never learn more than that, never learn from fewer than
:data:`MIN_EVIDENCE` requests, and keep what is learned within the floor and the ceiling. The guard:
once a window's count is known, no window of that length (plus slack) holds more reserved slots.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_loyalty.hooks._auto_rate import (
    CANDIDATE_WINDOWS,
    MAX_PER_MINUTE,
    MIN_EVIDENCE,
    MIN_PER_MINUTE,
    AutoRate,
    LearnedRate,
    MemoryRateStore,
)
from airflow_provider_loyalty.hooks._limiter import RateLimiter
from tests.conftest import FakeClock

windows = st.sampled_from([1.0, 2.0, 5.0, 10.0, 30.0, 60.0])
# Gaps between accepted requests (seconds): bursts, even pacing, long pauses.
gaps = st.lists(st.floats(min_value=0.001, max_value=8.0, allow_nan=False), min_size=0, max_size=400)
retry_after = st.floats(min_value=0.0, max_value=120.0, allow_nan=False)


def refused_after(auto: AutoRate, clock: FakeClock, spacing: list[float], wait: float) -> tuple[list[float], float]:
    """Answer cleanly at the given gaps, then one rate-limit answer; return the accepted send times and its own."""
    sent: list[float] = []
    for gap in spacing:
        clock.sleep(gap)
        sent.append(clock.monotonic())
        auto.answered(throttled=False, sent_at=clock.monotonic())
    clock.sleep(0.01)
    refused = clock.monotonic()
    auto.answered(throttled=True, wait=wait, sent_at=refused)
    return sent, refused


def within(sent: list[float], refused: float, window: float) -> int:
    return sum(refused - window < t < refused for t in sent)


@settings(max_examples=150, deadline=None)
@given(window=windows, spacing=gaps, wait=retry_after)
def test_a_told_window_learns_at_most_what_it_accepted_and_never_from_too_little(
    window: float, spacing: list[float], wait: float
) -> None:
    clock = FakeClock()
    auto = AutoRate(clock=clock, store=MemoryRateStore(LearnedRate(window_seconds=window)))
    sent, refused = refused_after(auto, clock, spacing, wait)
    accepted = within(sent, refused, window)
    if accepted < MIN_EVIDENCE:
        assert auto.limit_hit is None and not auto.window_limits  # too little to tell the limit
        return
    assert auto.window_limits == {window: accepted}  # exactly what the full window held
    assert auto.limit_hit is not None
    assert MIN_PER_MINUTE <= auto.limit_hit <= MAX_PER_MINUTE
    assert auto.limit_hit <= max(MIN_PER_MINUTE, accepted * 60.0 / window) + 1e-6  # never above it
    assert auto.pace <= auto.limit_hit
    stored = LearnedRate.from_value(auto.learned().to_json())
    assert stored is not None and stored.guards() == {window: min(accepted, math.ceil(MAX_PER_MINUTE * window / 60))}


@settings(max_examples=150, deadline=None)
@given(spacing=gaps, wait=retry_after)
def test_an_untold_window_learns_within_every_candidate(spacing: list[float], wait: float) -> None:
    clock = FakeClock()
    auto = AutoRate(clock=clock, store=MemoryRateStore())
    sent, refused = refused_after(auto, clock, spacing, wait)
    counts = {w: within(sent, refused, w) for w in CANDIDATE_WINDOWS}
    if max(counts.values()) < MIN_EVIDENCE:
        assert auto.limit_hit is None
        return
    assert auto.limit_hit is not None
    for w, n in counts.items():
        assert auto.window_limits[w] <= max(1, n)
        # The rate learned fits every candidate window: it holds whichever the vendor has.
        assert auto.limit_hit <= max(MIN_PER_MINUTE, max(1, n) * 60.0 / w) + 1e-6


@settings(max_examples=100, deadline=None)
@given(
    stored=st.dictionaries(
        st.one_of(st.text(max_size=6), st.floats(allow_nan=True), st.integers(-5, 10**6).map(str)),
        st.one_of(
            st.integers(-10, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=3)
        ),
        max_size=6,
    ),
    window=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.booleans()),
)
def test_what_is_read_about_windows_is_clamped(stored: dict, window: object) -> None:
    learned = LearnedRate.from_value({"limit_hit": 600, "window_limits": stored, "window_seconds": window})
    assert learned is not None
    assert learned.window_seconds is None or 0 < learned.window_seconds <= 3600
    for w, n in learned.guards().items():
        assert 0 < w <= 3600
        assert isinstance(n, int) and 1 <= n <= math.ceil(MAX_PER_MINUTE * w / 60)


@settings(max_examples=150, deadline=None)
@given(
    guards=st.dictionaries(st.sampled_from([1.0, 2.0, 10.0, 60.0]), st.integers(1, 40), min_size=1, max_size=3),
    per_minute=st.floats(min_value=30, max_value=20_000),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=3.0, allow_nan=False),  # idle before the request
            st.floats(min_value=0.0, max_value=0.5, allow_nan=False),  # on its way to the vendor
            st.floats(min_value=0.0, max_value=0.5, allow_nan=False),  # its answer on the way back
            st.booleans(),  # refused
        ),
        min_size=1,
        max_size=250,
    ),
)
def test_the_guard_keeps_every_vendor_window_within_its_count(
    guards: dict[float, int], per_minute: float, steps: list[tuple[float, float, float, bool]]
) -> None:
    # Whatever the delays, the vendor's windows (by arrival time) never hold more than the guard's
    # count: a request leaves the guarded windows a window after its answer, not after its sending.
    clock = FakeClock()
    limiter = RateLimiter(per_minute, clock=clock)
    arrivals: list[float] = []  # of the requests the vendor counted
    for i, (idle, there, back, refused) in enumerate(steps):
        if i == 5:
            limiter.set_guards(guards)  # what was sent before counts: its windows are full of it
        clock.sleep(idle)
        limiter.acquire()
        ticket = limiter.ticket()
        assert ticket is not None
        clock.sleep(there)
        arrived = clock.monotonic()
        clock.sleep(back)
        limiter.done(ticket, counted=not refused)
        if refused:
            continue
        if i >= 5:
            for window, count in guards.items():
                assert sum(arrived - window < t <= arrived for t in [*arrivals, arrived]) <= count
        arrivals.append(arrived)


def test_three_accepted_requests_teach_no_limit() -> None:
    # The old rule learned 18/min from these three (a limit the next run started under).
    clock = FakeClock()
    auto = AutoRate(clock=clock, store=MemoryRateStore())
    refused_after(auto, clock, [0.5, 0.5, 0.5], 1.0)
    assert auto.limit_hit is None and auto.slow_start


def test_a_ramp_is_not_read_as_a_limit_above_what_the_minute_accepted() -> None:
    # 30 requests in the minute, the last 20 of them within 10 s: a vendor counting over a minute
    # allowed 30 a minute. The old rule read the last 10 s (122/min), four times that.
    clock = FakeClock()
    auto = AutoRate(clock=clock, store=MemoryRateStore())
    refused_after(auto, clock, [2.0] * 10 + [0.5] * 20, 1.0)
    assert auto.limit_hit is not None and auto.limit_hit <= 30
    assert auto.window_limits == {10.0: 20, 60.0: 30}


def test_a_look_at_a_later_slot_forgets_nothing_an_earlier_one_needs() -> None:
    # Threads ask for slots one after another: the fourth asks for one a few seconds ahead. That look
    # used to forget answers by its own slot's time, so the first thread's earlier slot no longer saw
    # them and sent one request too many into the vendor's window (a 429 in a run that knew the limit).
    clock = FakeClock()
    limiter = RateLimiter(600, clock=clock)
    for _ in range(17):
        limiter.acquire()
        clock.sleep(0.02)
        limiter.done(limiter.ticket(), counted=True)
        clock.sleep(0.54)  # 17 answers over the last 9.5 s: the window is full
    limiter.set_guards({10.0: 17})
    now = clock.monotonic()
    assert limiter._guard_free(now + 3.0) is not None  # another thread's later slot
    free = limiter._guard_free(now)
    assert free is not None and free > now  # still full: the oldest answer must leave first


def test_a_window_stored_with_more_digits_than_its_key_keeps_its_count_within_the_key_s_window() -> None:
    # 1000.625 s is kept under the key "1000.62": the count must fit that window, not the longer one
    learned = LearnedRate.from_value({"limit_hit": 600, "window_limits": {1000.625: 1000621}})
    assert learned is not None
    assert learned.guards() == {1000.62: math.ceil(MAX_PER_MINUTE * 1000.62 / 60)}
