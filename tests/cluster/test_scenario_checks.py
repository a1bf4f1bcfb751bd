"""The rate and deferral scenarios' verdicts (cluster/scenario_checks.py), over hand-made request logs and facts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.scenario_checks import DeferFacts, defer_checks, rate_checks, rate_figures, sent_once_check

LIMIT = 300.0  # per minute: 5 per second
PENALTY = 60.0


def paced(count: int, per_second: float, start: float = 100.0) -> list[tuple[float, bool]]:
    return [(start + i / per_second, False) for i in range(count)]


def verdicts(checks: list) -> dict[str, bool]:
    return {c.name.split(":")[1].strip()[:30]: c.ok for c in checks}


# ------------------------------------------------------------------------------------------ rate
def test_a_run_at_the_limit_throughout_passes() -> None:
    figures = rate_figures(paced(200, 4.75), LIMIT, PENALTY)
    assert figures.accepted == 200 and figures.limited == 0
    assert figures.ratio == pytest.approx(0.95)
    assert figures.tail_ratio == pytest.approx(0.95, abs=0.03)
    assert all(c.ok for c in rate_checks(figures, None, LIMIT))


def test_a_slow_tail_fails_the_rate_check() -> None:
    # 150 requests at the limit, then a last shard alone at a quarter of it (today's static split)
    fast = paced(150, 4.75)
    slow = paced(40, 4.75 / 4, start=fast[-1][0] + 1 / 4.75)
    figures = rate_figures(fast + slow, LIMIT, PENALTY)
    assert figures.ratio < 0.9
    assert figures.tail_ratio < 0.3
    checks = rate_checks(figures, None, LIMIT)
    assert [c.ok for c in checks] == [False, True, True]


def test_an_idle_gap_counts_against_the_rate() -> None:
    # the whole run's rate: a gap where no task sends (both pool slots handing over) is lost
    figures = rate_figures(paced(100, 4.75) + paced(100, 4.75, start=100 + 100 / 4.75 + 5), LIMIT, PENALTY)
    assert 0.8 < figures.ratio < 0.9
    assert not rate_checks(figures, None, LIMIT)[0].ok


def test_requests_sent_into_a_penalty_window_fail_both_penalty_checks() -> None:
    rows = paced(50, 4.75)
    t = rows[-1][0]
    # one announcement, then two other tasks send into the window (refused) and one after it (accepted)
    rows += [(t + 0.1, True), (t + 0.3, True), (t + 5, True), (t + 0.1 + PENALTY, False)]
    figures = rate_figures(rows, LIMIT, PENALTY)
    assert (figures.announcements, figures.limited, figures.in_penalty) == (1, 3, 2)
    assert figures.max_limited_per_announcement == 3
    checks = rate_checks(figures, None, LIMIT)
    assert [c.ok for c in checks[1:]] == [False, False]


def test_one_429_per_announcement_passes_the_penalty_checks() -> None:
    rows = paced(50, 4.75)
    t = rows[-1][0]
    rows += [(t + 0.2, True), *paced(20, 4.75, start=t + 0.2 + PENALTY), (t + 200, True)]
    figures = rate_figures(rows, LIMIT, PENALTY)
    assert (figures.announcements, figures.limited, figures.in_penalty) == (2, 2, 0)
    assert [c.ok for c in rate_checks(figures, None, LIMIT)[1:]] == [True, True]


def test_an_accepted_request_inside_a_window_counts_as_in_penalty() -> None:
    figures = rate_figures([(0.0, True), (1.0, False)], LIMIT, PENALTY)
    assert figures.in_penalty == 1
    assert not rate_checks(figures, None, LIMIT)[2].ok


def test_no_requests_fail_the_rate_check() -> None:
    figures = rate_figures([], LIMIT, PENALTY)
    assert not rate_checks(figures, None, LIMIT)[0].ok
    with pytest.raises(ValueError):
        rate_figures([], 0, PENALTY)


@given(
    st.lists(st.tuples(st.floats(0, 1000, allow_nan=False), st.booleans()), max_size=60),
    st.floats(0.5, 120),
)
def test_figures_add_up(rows: list[tuple[float, bool]], penalty: float) -> None:
    figures = rate_figures(rows, LIMIT, penalty)
    assert figures.requests == len(rows) == figures.accepted + figures.limited
    assert figures.announcements <= figures.limited
    # every 429 either opens a window or falls inside one
    assert figures.limited - figures.announcements <= figures.in_penalty
    assert figures.max_limited_per_announcement <= 1 or figures.in_penalty > 0
    if figures.in_penalty == 0:
        assert figures.announcements == figures.limited


def test_sent_once() -> None:
    assert sent_once_check("x: once", {1: (1, 1), 2: (1, 1)}, [1, 2]).ok
    assert not sent_once_check("x: once", {1: (2, 1), 2: (1, 1)}, [1, 2]).ok  # resent
    assert not sent_once_check("x: once", {1: (1, 0)}, [1]).ok  # not cancelled
    assert not sent_once_check("x: once", {1: (1, 1)}, [1, 2]).ok  # never sent
    assert not sent_once_check("x: once", {}, []).ok  # nothing to judge


# -------------------------------------------------------------------------------------- deferral
def defer_facts() -> DeferFacts:
    # 5 ids accepted at 2/s, the 6th answered 429 at 102.5 (a 60 s penalty), 5 sent after it
    ids = tuple(range(1, 11))
    requests = tuple([*paced(5, 2), (102.5, True), *paced(5, 2, start=163)])
    return DeferFacts(
        requests=requests,
        penalty=PENALTY,
        ids=ids,
        deferred_at=103.0,
        resumed_at=162.8,
        other=("success", 110.0, 114.0),
        triggerer_killed_at=106.0,
        triggerer_restarted_at=106.2,
        taken_over=True,
        attempts={uid: (1, 1) for uid in ids},
        ledger_succeeded=frozenset(ids),
        task=("success", 1),
    )


def test_the_deferral_proof_passes_on_a_good_run() -> None:
    checks = defer_checks(defer_facts(), 60)
    assert [c.ok for c in checks] == [True] * 6, [c.detail for c in checks if not c.ok]


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        # a request of the task went out inside the penalty
        ({"requests": (*defer_facts().requests, (130.0, True))}, {0, 1}),
        # two announcements (the resumed task went too fast)
        ({"requests": (*defer_facts().requests, (166.0, True))}, {0}),
        # never deferred: the task waited in its worker slot
        ({"deferred_at": None}, {1, 2, 3}),
        # the trigger fired before the window's end, or a whole window late (waited twice)
        ({"resumed_at": 140.0}, {1}),
        ({"resumed_at": 225.0}, {1}),
        # the task slept through the window in its worker slot, then deferred (the other task ran late)
        ({"deferred_at": 163.0, "resumed_at": 224.0, "other": ("success", 164.0, 167.0)}, {1, 2, 3}),
        # the other DAG's task ran after the deferral (the slot was held)
        ({"other": ("success", 163.0, 166.0)}, {2}),
        ({"other": ("failed", 110.0, 114.0)}, {2}),
        ({"other": None}, {2}),
        # the triggerer was not restarted mid-deferral, or nobody took the trigger over
        ({"triggerer_killed_at": None}, {3}),
        ({"triggerer_killed_at": 170.0, "triggerer_restarted_at": 171.0}, {3}),
        ({"taken_over": False}, {3}),
        # an id reached the vendor twice
        ({"attempts": {**defer_facts().attempts, 3: (2, 1)}}, {4}),
        # the task was retried, or an id is missing from the ledger
        ({"task": ("success", 2)}, {5}),
        ({"ledger_succeeded": frozenset(range(1, 10))}, {5}),
    ],
)
def test_each_deferral_check_fails_on_its_wrong_input(change: dict, failing: set[int]) -> None:
    checks = defer_checks(replace(defer_facts(), **change), 60)
    assert {i for i, c in enumerate(checks) if not c.ok} == failing, [c.detail for c in checks]
