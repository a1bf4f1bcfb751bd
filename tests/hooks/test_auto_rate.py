"""``max_requests_per_minute="auto"``: the controller's rules on a fake clock, its Variable, and the pacer around it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from airflow_provider_loyalty.hooks import _auto_rate
from airflow_provider_loyalty.hooks._auto_rate import (
    CLEAN_HOLD,
    MAX_PER_MINUTE,
    MIN_PER_MINUTE,
    PLATEAU,
    START_PER_MINUTE,
    STEP_SECONDS,
    AutoRate,
    LearnedRate,
    MemoryRateStore,
    VariableRateStore,
    is_auto,
    variable_key,
)
from airflow_provider_loyalty.hooks._pace import build_pacer
from airflow_provider_loyalty.hooks._pacing import RequestPacer
from airflow_provider_loyalty.sandbox.limits import RateLimits
from tests.conftest import FakeClock


def answer_cleanly(auto: AutoRate, clock: FakeClock, seconds: float, *, pace_bound: bool = True) -> None:
    """Answer cleanly at the pace in force (``pace_bound``) or at a tenth of it, for ``seconds``."""
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        clock.sleep(60.0 / auto.pace * 1.02 * (1 if pace_bound else 10))
        auto.answered(throttled=False)


# ----------------------------------------------------------------------------------- rising
def test_first_run_starts_conservatively_and_rises_while_answers_are_clean(clock: FakeClock) -> None:
    auto = AutoRate(clock=clock)
    assert auto.pace == START_PER_MINUTE and auto.started_from == "default"
    answer_cleanly(auto, clock, 6 * STEP_SECONDS)
    assert auto.pace > 4 * START_PER_MINUTE  # slow start: x1.5 per clean step


def test_no_rise_while_the_task_does_not_send_at_the_pace(clock: FakeClock) -> None:
    auto = AutoRate(clock=clock)
    answer_cleanly(auto, clock, 10 * STEP_SECONDS, pace_bound=False)
    assert auto.pace == START_PER_MINUTE  # an idle or latency-bound task proves nothing


def test_never_above_the_cap(clock: FakeClock) -> None:
    auto = AutoRate(cap=150, clock=clock, store=MemoryRateStore(LearnedRate(best_clean=900, limit_hit=1000)))
    assert auto.pace == 150  # the learned start is capped too
    answer_cleanly(auto, clock, 20 * STEP_SECONDS)
    assert auto.pace == 150


# ------------------------------------------------------------------------------------ cuts
def test_a_rate_limit_answer_cuts_sharply_and_is_remembered(clock: FakeClock) -> None:
    store = MemoryRateStore()
    auto = AutoRate(clock=clock, store=store)
    answer_cleanly(auto, clock, 8 * STEP_SECONDS)
    before = auto.pace
    auto.answered(throttled=True, wait=60.0)
    assert auto.pace <= before * 0.5 + 1e-9  # out of the slow start: halved at least
    assert auto.hits == 1 and auto.limit_hit is not None and auto.limit_hit <= before
    assert store.saves == 1 and store.learned is not None  # stored after each cut
    assert store.learned.limit_hit == round(auto.limit_hit, 1) and store.learned.limit_hit_at


def test_answers_of_the_same_episode_do_not_count_as_new_hits(clock: FakeClock) -> None:
    auto = AutoRate(clock=clock, store=MemoryRateStore(LearnedRate(best_clean=500, limit_hit=520)))
    answer_cleanly(auto, clock, 20.0)
    auto.answered(throttled=True, wait=1.0)
    after_cut = auto.pace
    clock.sleep(1.0)
    auto.answered(throttled=True, wait=1.0)  # the window is still full
    assert auto.hits == 1
    assert after_cut * 0.9 - 1e-9 <= auto.pace <= after_cut
    assert auto.pause == 1.0  # and every thread holds back a little longer, doubling
    clock.sleep(2.0)
    auto.answered(throttled=True, wait=1.0)
    assert auto.pause == 2.0


def test_after_a_cut_the_pace_climbs_back_to_just_under_the_limit_hit_and_holds(clock: FakeClock) -> None:
    auto = AutoRate(clock=clock, store=MemoryRateStore(LearnedRate(limit_hit=600)))
    assert auto.pace == pytest.approx(600 * 0.7)  # a limit but no clean pace learned: start below it
    answer_cleanly(auto, clock, 120.0)
    assert auto.pace == pytest.approx(600 * PLATEAU, rel=1e-3)
    answer_cleanly(auto, clock, 120.0)
    assert auto.pace == pytest.approx(600 * PLATEAU, rel=1e-3)  # no probing above it before PROBE_HOLD
    assert auto.best_clean == pytest.approx(600 * PLATEAU, rel=1e-3)


def test_a_first_answer_429_learns_nothing(clock: FakeClock) -> None:
    # The vendor's window was full before this task sent anything (another task, an earlier run):
    # zero accepted requests say nothing about the limit. The old rule learned 1/min from them.
    store = MemoryRateStore()
    auto = AutoRate(clock=clock, store=store)
    auto.answered(throttled=True, wait=1.0)
    assert auto.limit_hit is None and auto.slow_start  # still looking for the limit
    assert auto.pace == pytest.approx(START_PER_MINUTE * 0.5)  # but slower for now
    auto.save()
    assert store.learned is not None and store.learned.limit_hit is None and store.learned.best_clean is None
    again = AutoRate(clock=clock, store=store)
    assert again.pace == START_PER_MINUTE and again.started_from == "default"
    clock.sleep(10.0)
    answer_cleanly(auto, clock, 6 * STEP_SECONDS)  # clean answers afterwards: the slow start goes on
    assert auto.pace > 2 * START_PER_MINUTE


def test_a_429_after_an_idle_minute_learns_nothing(clock: FakeClock) -> None:
    auto = AutoRate(clock=clock, store=MemoryRateStore(LearnedRate(best_clean=500, limit_hit=520)))
    answer_cleanly(auto, clock, 30.0)
    clock.sleep(90.0)  # nothing accepted within the last minute
    auto.answered(throttled=True, wait=1.0)
    assert auto.limit_hit == 520 and auto.best_clean == 500


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ('{"best_clean": 1e300, "limit_hit": 1e300}', LearnedRate(best_clean=MAX_PER_MINUTE, limit_hit=MAX_PER_MINUTE)),
        ('{"best_clean": 0.001, "limit_hit": 1e-9}', LearnedRate(best_clean=MIN_PER_MINUTE, limit_hit=MIN_PER_MINUTE)),
    ],
)
def test_what_is_read_is_clamped_to_the_floor_and_the_ceiling(stored: str, expected: LearnedRate) -> None:
    assert LearnedRate.from_value(stored) == expected


def test_a_huge_stored_rate_still_paces(clock: FakeClock) -> None:
    pacer = build_pacer("capillary", "c", "auto", 8, store=MemoryRateStore(LearnedRate(best_clean=1e300)), clock=clock)
    assert pacer.limiter.per_minute == MAX_PER_MINUTE and pacer.limiter.interval > 0
    start = clock.monotonic()
    for _ in range(1001):
        with pacer.slot():
            pass
    assert clock.monotonic() - start >= 1.0  # at most a thousand a second, never unpaced


def test_what_is_saved_is_clamped(clock: FakeClock) -> None:
    store = MemoryRateStore(LearnedRate(best_clean=1e300, limit_hit=1e300))
    auto = AutoRate(clock=clock, store=store)
    auto.save()
    assert store.learned is not None
    assert store.learned.best_clean == MAX_PER_MINUTE and store.learned.limit_hit == MAX_PER_MINUTE


# ----------------------------------------------------------------------- vendor windows
def run_against_limit(
    limit: int, window: float, penalty: float, seconds: float, store: MemoryRateStore, *, tasks: int = 1
) -> dict[str, Any]:
    """``tasks`` paced clients (one request at a time each, 50 ms latency) against one sandbox limiter."""
    clock = FakeClock()
    vendor = RateLimits(["v"])
    pacers = [RequestPacer(None, 8, clock=clock, auto=AutoRate(store=store, clock=clock)) for _ in range(tasks)]
    served = [-math.inf] * tasks
    start = clock.monotonic()
    accepted: list[tuple[float, int]] = []
    limited: list[float] = []
    in_penalty = 0
    # Each task's next send time; the earliest goes next (one shared fake clock).
    ready = [start] * tasks
    while True:
        task = min(range(tasks), key=lambda i: ready[i])
        clock.now = max(clock.now, ready[task])
        if clock.now - start >= seconds:
            break
        pacer = pacers[task]
        wait = 0.0
        deadline = -math.inf
        with pacer.slot(served[task]) as status:
            now = clock.monotonic()
            refused = vendor.check("v", now, limit, window, penalty)
            status["answered"] = True
            status["rate_limited"] = refused is not None
            if refused is None:
                accepted.append((now, task))
                served[task] = -math.inf
            else:
                limited.append(now - start)
                in_penalty += refused.in_penalty
                wait = float(refused.wait_seconds)
                status["throttled"] = True
                status["wait"] = wait
                deadline = pacer.penalize(wait)
        if wait:
            served[task] = deadline
        ready[task] = clock.monotonic() + 0.05 + wait
        clock.now = min(ready)  # the other tasks' clocks do not jump with this one's wait
    for pacer in pacers:
        pacer.save_learned()
    return {
        "efficiency": len(accepted) / (limit * seconds / 60.0),
        "late_429_per_minute": sum(t > 60 for t in limited) / ((seconds - 60) / 60),
        "in_penalty": in_penalty,
        "limited": len(limited),
        "last_minute": sum(t > start + seconds - 60 for t, _ in accepted),
        "paces": [p.controller.pace for p in pacers if p.controller is not None],
    }


@pytest.mark.parametrize(("window", "penalty"), [(10.0, 1.0), (60.0, 1.0), (60.0, 60.0), (10.0, 60.0)])
def test_learns_an_unknown_limit_and_the_second_run_starts_near_it(window: float, penalty: float) -> None:
    store = MemoryRateStore(LearnedRate(window_seconds=window))  # told the vendor's window, not its limit
    first = run_against_limit(600, window, penalty, 240.0, store)
    assert first["in_penalty"] == 0  # every vendor window waited out
    assert first["limited"] == 1  # one rate-limit answer finds the limit; the window guard keeps it the only one
    learned = store.learned
    assert learned is not None and learned.limit_hit is not None
    full = round(600 * window / 60)  # what one window accepts
    assert learned.window_limits is not None and full - 1 <= learned.window_limits[f"{window:g}"] <= full
    assert 0.97 * 600 <= learned.limit_hit <= 600
    second = run_against_limit(600, window, penalty, 240.0, store)
    assert second["in_penalty"] == 0 and second["limited"] == 0
    assert second["efficiency"] >= 0.95


@pytest.mark.parametrize(("window", "penalty"), [(10.0, 1.0), (60.0, 1.0), (60.0, 60.0)])
def test_an_untold_window_keeps_within_every_candidate(window: float, penalty: float) -> None:
    # One answer cannot tell a 10 s window from a minute: what is learned keeps within both, so the
    # run meets no second answer either way (and, against 10 s windows, paces below the limit).
    store = MemoryRateStore()
    first = run_against_limit(600, window, penalty, 240.0, store)
    assert first["in_penalty"] == 0 and first["limited"] == 1
    learned = store.learned
    assert learned is not None and learned.limit_hit is not None and learned.limit_hit <= 600
    assert learned.window_limits is not None and set(learned.window_limits) == {"10", "60"}
    second = run_against_limit(600, window, penalty, 240.0, store)
    assert second["in_penalty"] == 0 and second["limited"] == 0


def test_mapped_tasks_sharing_a_key_settle_under_the_limit() -> None:
    # Both start from what a single task learned alone (600/min each: twice the key's limit together).
    store = MemoryRateStore(LearnedRate(best_clean=600, limit_hit=612, window_seconds=10.0))
    shared = run_against_limit(600, 10.0, 1.0, 300.0, store, tasks=2)
    # A vendor window is announced to the task whose request met it: at the first collision the
    # other task can send into it once or twice before its own answer tells it (as with fixed shares).
    assert shared["in_penalty"] <= 2 * 2
    assert shared["last_minute"] <= 600 * 1.02  # the vendor's limit held, together
    assert shared["last_minute"] >= 0.85 * 600
    assert sum(shared["paces"]) <= 600 * 1.02  # each settled at about its share
    assert shared["late_429_per_minute"] <= 1.0
    assert store.learned is not None and store.learned.best_clean == pytest.approx(300, rel=0.05)


# --------------------------------------------------------------------------- persistence
def test_learned_rate_round_trips_and_ignores_garbage() -> None:
    learned = LearnedRate(best_clean=590.5, limit_hit=612.0, limit_hit_at="2026-01-01T00:00:00+00:00", pace=600.0)
    assert LearnedRate.from_value(learned.to_json()) == learned
    assert LearnedRate.from_value(json.loads(learned.to_json())) == learned  # a JSON Variable arrives parsed
    for garbage in ("nope", "[1]", '{"best_clean": "x"}', None, 12):
        assert LearnedRate.from_value(garbage) is None
    assert LearnedRate.from_value('{"best_clean": -5, "limit_hit": "nan"}') == LearnedRate()


def test_start_pace_from_what_was_learned() -> None:
    assert LearnedRate().start() is None
    assert LearnedRate(best_clean=500).start() == 500
    assert LearnedRate(best_clean=700, limit_hit=600).start() == pytest.approx(600 * PLATEAU)
    assert LearnedRate(best_clean=500).start(cap=100) == 100


def test_variable_store_reads_and_writes_beside_the_token_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    saved: dict[str, Any] = {}
    monkeypatch.setattr("airflow_provider_loyalty._variables.get_variable", lambda key: saved.get(key))
    monkeypatch.setattr(
        "airflow_provider_loyalty._variables.set_variable", lambda key, value, description: saved.update({key: value})
    )
    store = VariableRateStore("capillary", "capillary_default")
    assert store.key == variable_key("capillary", "capillary_default") == "loyalty_rate__capillary__capillary_default"
    assert store.load() is None
    store.save(LearnedRate(best_clean=950.0, limit_hit=1000.0))
    assert json.loads(saved[store.key]) == {"best_clean": 950.0, "limit_hit": 1000.0}
    assert store.load() == LearnedRate(best_clean=950.0, limit_hit=1000.0)


def test_an_unavailable_variable_never_fails_the_run(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no metadata DB")

    monkeypatch.setattr("airflow_provider_loyalty._variables.get_variable", down)
    monkeypatch.setattr("airflow_provider_loyalty._variables.set_variable", down)
    auto = AutoRate(clock=clock, store=VariableRateStore("xoxoday", "x"))
    assert auto.pace == START_PER_MINUTE
    auto.save()  # logged, not raised


def test_the_learned_minute_needs_a_whole_clean_minute(clock: FakeClock) -> None:
    auto = AutoRate(clock=clock, store=MemoryRateStore(LearnedRate(limit_hit=300)))
    answer_cleanly(auto, clock, CLEAN_HOLD - 5)
    assert auto.best_clean is None
    answer_cleanly(auto, clock, 10)
    assert auto.best_clean is not None and auto.best_clean <= auto.pace


# ----------------------------------------------------------------------------- the pacer
def test_build_pacer_keeps_a_fixed_number_fixed(clock: FakeClock) -> None:
    pacer = build_pacer("capillary", "c", 1000, 8, clock=clock)
    assert pacer.auto is None and pacer.limiter.per_minute == 1000
    with pacer.slot() as status:
        status.update(answered=True, rate_limited=True, wait=1.0, throttled=True)
        pacer.penalize(1.0)
    assert pacer.limiter.per_minute < 1000  # a fixed pace is a ceiling: it steps down after rate-limit answers
    assert pacer.gate.limit == 4  # the concurrency still halves, as before
    report = pacer.pace_report()
    assert report["mode"] == "fixed" and report["setting_per_minute"] == 1000 and report["waited_seconds"] == 1.0
    assert build_pacer("capillary", "c", None, 8, clock=clock).pace_report()["mode"] == "unlimited"
    assert build_pacer("capillary", "c", 1000, 8, cap=400, clock=clock).limiter.per_minute == 400


def test_auto_pacer_follows_the_controller(clock: FakeClock) -> None:
    store = MemoryRateStore(LearnedRate(best_clean=300, limit_hit=320))
    pacer = build_pacer("xoxoday", "x", "Auto", 8, cap=1000, store=store, clock=clock)
    assert pacer.auto is not None and pacer.limiter.per_minute == 300
    for _ in range(50):  # accepted first: a limit is learned only from what the vendor accepted
        with pacer.slot() as status:
            status.update(answered=True)
    with pacer.slot() as status:
        status.update(answered=True, rate_limited=True, wait=60.0, throttled=True)
        pacer.penalize(60.0)
    assert pacer.auto.pace < 300  # the pace learned, what the next run starts at
    # The limiter keeps every window within what the vendor accepted (a 60 s penalty: at the new pace).
    assert pacer.limiter.guards == pacer.auto.window_limits and pacer.limiter.guards
    assert pacer.limiter.per_minute == pytest.approx(pacer.auto.send_pace)
    assert pacer.limiter.blocked_until == pytest.approx(clock.monotonic() + 60.0)  # the window is waited out
    report = pacer.pace_report()
    assert report["mode"] == "auto" and report["cap_per_minute"] == 1000 and report["rate_limit_cuts"] == 1
    assert report["learned"]["limit_hit"] is not None and report["waited_seconds"] == 60.0
    assert "auto" in pacer.pace_text()
    pacer.save_learned()
    assert store.saves == 2


def test_is_auto_and_bad_values() -> None:
    assert is_auto("auto") and is_auto(" AUTO ") and not is_auto(600) and not is_auto(None)
    with pytest.raises(ValueError):
        build_pacer("capillary", "c", "fast", 8)
    with pytest.raises(ValueError):
        AutoRate(cap=0)


def test_waited_seconds_counts_overlapping_windows_once(clock: FakeClock) -> None:
    pacer = RequestPacer(100, 4, clock=clock)
    pacer.penalize(10.0)
    pacer.penalize(4.0)  # inside the first
    clock.sleep(5.0)
    pacer.penalize(10.0)  # reaches 5 s past the first
    assert pacer.waited_seconds() == pytest.approx(15.0)


def test_module_documents_its_constants() -> None:
    assert _auto_rate.__doc__ and "loyalty_rate__" in _auto_rate.__doc__


def test_with_a_shared_budget_a_cut_learns_the_keys_rate_not_the_tasks_share(clock: FakeClock) -> None:
    from airflow_provider_loyalty.coordination.budget import MemoryBudget

    budget = MemoryBudget(clock=clock.time)
    a, b = RequestPacer(600, 4, clock=clock), RequestPacer(600, 4, clock=clock)
    a.limiter.budget = b.limiter.budget = budget  # two tasks on one key, each set to the key's 600/min
    for _ in range(300):  # 60 s: the key's 600/min shared, about 300/min each
        for pacer in (a, b):
            with pacer.slot() as status:
                status.update(answered=True)
    assert a.limiter.key_share() == pytest.approx(2.0, rel=0.05)
    with a.slot() as status:
        status.update(answered=True, rate_limited=True, wait=1.0, throttled=True)
    controller = a.controller
    assert controller is not None and controller.limit_hit is not None
    # The vendor accepted ~600/min from the key; alone, the task saw only its ~300/min.
    assert controller.limit_hit >= 0.9 * 600
    assert a.limiter.per_minute is not None and a.limiter.per_minute >= 0.6 * 600


def test_with_a_shared_budget_the_pace_after_a_cut_is_the_learned_one(clock: FakeClock) -> None:
    # While a window drains, "auto" alone may go faster than its learned pace: its window guard holds
    # the count. A shared budget runs no guard (it paces the key's slots), so it gets the learned pace.
    from airflow_provider_loyalty.coordination.budget import MemoryBudget

    pacer = RequestPacer(None, 4, clock=clock, auto=AutoRate(clock=clock))
    pacer.limiter.budget = MemoryBudget(clock=clock.time)
    for _ in range(50):
        with pacer.slot() as status:
            status.update(answered=True)
    with pacer.slot() as status:
        status.update(answered=True, rate_limited=True, wait=1.0, throttled=True)
    controller = pacer.controller
    assert controller is not None and controller.limit_hit is not None
    assert controller.send_pace > controller.pace  # alone, it would keep the faster pace
    assert pacer.limiter.per_minute == pytest.approx(controller.pace)
