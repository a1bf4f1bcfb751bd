"""The cluster test's own helpers: its checks (pure functions) and its process teardown.

`make cluster-test` itself needs PostgreSQL, Redis and a few minutes; these run in `make test`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest

from cluster import checks, stack

T0 = datetime(2026, 1, 1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_max_overlap_counts_intervals_open_at_once() -> None:
    assert checks.max_overlap([]) == 0
    assert checks.max_overlap([(at(0), at(10)), (at(5), at(15)), (at(12), at(20))]) == 2
    assert checks.max_overlap([(at(0), at(10)), (at(1), at(9)), (at(2), at(8))]) == 3


def test_max_overlap_back_to_back_intervals_do_not_overlap() -> None:
    # A pool slot handed from one task to the next at the same instant is one slot, not two.
    assert checks.max_overlap([(at(0), at(10)), (at(10), at(20))]) == 1


def test_max_in_window_is_half_open() -> None:
    assert checks.max_in_window([], 5) == 0
    assert checks.max_in_window([0, 1, 2, 3, 4, 5], 5) == 5  # (0, 5] holds 1..5
    assert checks.max_in_window([0, 0.5, 1, 10], 1) == 2


def test_handoff_bursts_explains_only_windows_with_a_task_start() -> None:
    # 429s at t=10 (a task started at t=8, inside the 5 s window) and t=30 (no start since t=8).
    assert checks.handoff_bursts([10.0, 30.0], task_starts=[0.0, 8.0], window=5.0) == [30.0]
    assert checks.handoff_bursts([], task_starts=[1.0], window=5.0) == []


def item(key: str, applicable: bool, vendor: int, rows: int, successes: int) -> object:
    return checks.Item(key, applicable, vendor, rows, successes, frozenset({("revoke_earns", 0)}))


def test_reconcile_sorts_items() -> None:
    rec = checks.reconcile(
        [
            item("ok", True, 1, 1, 1),
            item("refused", False, 0, 1, 0),
            item("doubt", True, 1, 2, 0),
            item("missing", True, 1, 0, 0),
            item("twice", True, 2, 1, 1),
            item("not-applied", True, 0, 1, 0),
            item("ledger-lies", False, 0, 1, 1),
        ]
    )
    assert rec.items == 7
    assert rec.applied_and_recorded == 1
    assert rec.refused_and_recorded == 1
    assert [i.key for i in rec.in_doubt] == ["doubt"]
    assert [i.key for i in rec.missing_outcome] == ["missing"]
    assert [i.key for i in rec.applied_twice] == ["twice"]
    assert [i.key for i in rec.not_applied] == ["not-applied"]
    assert [i.key for i in rec.ledger_success_not_applied] == ["ledger-lies"]


def test_exactly_once_checks_pass_with_in_doubt_items_and_fail_on_a_double() -> None:
    clean = checks.reconcile([item("a", True, 1, 1, 1), item("b", True, 1, 1, 0), item("c", False, 0, 1, 0)])
    assert all(c.ok for c in checks.exactly_once_checks("capillary", clean, expected_applied=2))
    double = checks.reconcile([item("a", True, 2, 1, 1)])
    verdicts = {c.name: c.ok for c in checks.exactly_once_checks("capillary", double, expected_applied=1)}
    assert verdicts["capillary: every applicable reversal applied exactly once at the vendor"] is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and sessions as on Linux")
def test_stack_stops_a_process_tree_and_kill_tree_freezes_then_kills(tmp_path: Path) -> None:
    tree = stack.Stack(tmp_path / "logs")
    env = {"PATH": os.environ.get("PATH", "")}
    # A parent that ignores SIGTERM, with a child in another process group (as Airflow's tasks are).
    stubborn = tree.start("stubborn", ["sh", "-c", "trap '' TERM; setsid sleep 60 & sleep 60; wait"], env)
    victim = tree.start("victim", ["sh", "-c", "sleep 60 & sleep 60; wait"], env)
    deadline = time.monotonic() + 5
    while (
        len(stack.descendants(stubborn.pid)) < 2 or len(stack.descendants(victim.pid)) < 2
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim_tree = [victim.pid, *stack.descendants(victim.pid)]
    stubborn_tree = [stubborn.pid, *stack.descendants(stubborn.pid)]
    assert len(victim_tree) == 3 and len(stubborn_tree) == 3

    killed = tree.kill_tree(victim)
    assert sorted(killed) == sorted(victim_tree)
    assert victim.popen.returncode == -signal.SIGKILL

    tree.stop([stubborn], grace=0.5)
    assert stubborn.popen.returncode is not None

    def running(pid: int) -> bool:
        try:
            return stack.alive(psutil.Process(pid))
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5  # a SIGKILLed process takes a moment to be gone
    while any(running(pid) for pid in stubborn_tree + victim_tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in stubborn_tree + victim_tree if running(pid)]
