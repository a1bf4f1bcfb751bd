"""The shared rate budget: GCRA arithmetic, and real processes sharing one key on real PostgreSQL and real Redis."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from airflow_provider_loyalty.coordination.budget import MemoryBudget, budget_key
from tests.coordination.conftest import must_run

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
ROOT = Path(__file__).resolve().parents[2]


class FakeWall:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_evenly_spaced_with_no_burst_credit() -> None:
    wall = FakeWall()
    budget = MemoryBudget(clock=wall)
    assert [budget.reserve(0.5) for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]  # four callers at once
    wall.now += 100.0  # idle: no credit saved up
    assert [budget.reserve(0.5) for _ in range(2)] == [0.0, 0.5]


def test_a_penalty_window_moves_every_slot_after_it() -> None:
    wall = FakeWall()
    budget = MemoryBudget(clock=wall)
    budget.reserve(1.0)
    assert budget.penalize(30.0) == 30.0 and budget.blocked_for() == 30.0
    assert budget.reserve(1.0) == 30.0  # the next slot is the window's end
    assert budget.reserve(1.0) == 31.0
    assert budget.penalize(5.0) == 30.0  # a shorter window inside a longer one changes nothing
    wall.now += 40.0
    assert budget.blocked_for() == 0.0


def test_the_key_names_no_secret_and_differs_per_identity() -> None:
    key = budget_key("capillary", "https://eu.api.capillarytech.com/", "till.one")
    assert key.startswith("capillary:") and "till" not in key
    assert key == budget_key("capillary", "https://EU.api.capillarytech.com", "till.one")
    assert key != budget_key("capillary", "https://eu.api.capillarytech.com", "till.two")
    assert key != budget_key("xoxoday", "https://eu.api.capillarytech.com", "till.one")


# ------------------------------------------------------------------------------------ stores
def backend_url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "redis":
        return str(request.getfixturevalue("redis_url"))
    if not POSTGRES_URI:
        if must_run():
            pytest.fail("LOYALTY_TEST_POSTGRES_URI is not set")
        pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
    return POSTGRES_URI


BACKENDS = ["redis", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_store_keeps_slots_windows_and_the_learned_rate(backend: str, request: pytest.FixtureRequest) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.coordination.budget_worker import open_store

    url = backend_url(backend, request)
    key = f"test:{uuid.uuid4().hex}"
    store = open_store(backend, url, key)
    other = open_store(backend, url, key)  # a second worker on the same key
    try:
        assert store.reserve(0.0) == pytest.approx(0.0, abs=0.05)
        first, second = store.reserve(10.0), other.reserve(10.0)
        assert first == pytest.approx(0.0, abs=0.05) and second == pytest.approx(10.0, abs=0.05)
        assert other.penalize(60.0) == pytest.approx(60.0, abs=0.05)
        assert store.blocked_for() == pytest.approx(60.0, abs=0.5)  # seen by the other worker
        assert store.reserve(1.0) == pytest.approx(60.0, abs=0.5)
        assert store.load_learned() is None
        store.save_learned('{"limit_hit": 300.0}')
        assert other.load_learned() == '{"limit_hit": 300.0}'  # the key's, not the saver's
    finally:
        store.close()
        other.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_sharing_a_key_send_at_its_rate_fairly_and_never_in_a_window(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = backend_url(backend, request)
    key = f"test:{uuid.uuid4().hex}"
    processes, interval, seconds, penalty = 4, 0.02, 4.0, 1.0  # 50 requests/s together
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.coordination.budget_worker",
                backend,
                url,
                key,
                str(interval),
                str(seconds),
                *(["20", str(penalty)] if i == 0 else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(processes)
    ]
    time.sleep(3.0)  # imports
    start = time.time() + 0.5
    results = []
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{start}\n")
        worker.stdin.flush()
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        results.append(json.loads(out))
    sends = sorted(t for r in results for t in r["sends"])
    window = results[0]["window"]
    assert window is not None and window[1] - window[0] == pytest.approx(penalty, abs=0.1)
    # The penalty, opened by one process, is kept by all (a send already past its check may race it).
    inside = [t for t in sends if window[0] + 0.05 < t < window[1]]
    assert inside == []
    # Together at the key's rate: the slots the store handed out never exceed it in any second (+1 for
    # the edge; the slots are computed when reserved: a slot of one process that woke up late and the
    # next one's on time can land closer together, which the limiter's 2 % margin absorbs).
    per_second = math.floor(1.0 / interval) + 1
    slots = sorted(t for r in results for t in r["slots"])
    assert max(sum(1 for u in slots if t <= u < t + 1.0) for t in slots) <= per_second
    assert max(sum(1 for u in sends if t <= u < t + 1.0) for t in sends) <= per_second * 1.06
    open_time = (sends[-1] - sends[0]) - (window[1] - window[0])  # sending time outside the window
    expected = open_time / interval + 1
    assert 0.9 * expected <= len(sends) <= expected + 2, (len(sends), expected)  # at the key's rate, never above
    # Fair: the slots go round the processes.
    shares = [len(r["sends"]) for r in results]
    assert min(shares) >= 0.7 * max(shares), shares
