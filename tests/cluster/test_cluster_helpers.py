"""The cluster test's own helpers: its checks (pure functions over facts) and its process teardown.

`make cluster-test` itself needs PostgreSQL, Redis and a few minutes; these run in `make test`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest

from cluster import checks, config, dataset, facts, report, stack

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


def test_snapshot_skips_a_process_that_is_gone(tmp_path: Path) -> None:
    tree = stack.Stack(tmp_path / "logs")
    quick = tree.start("quick", ["true"], {"PATH": os.environ.get("PATH", "")})
    snapshot = stack._Snapshot.of(quick.pid)
    quick.popen.wait(timeout=10)
    assert snapshot.alive() == []
    assert snapshot.kill(signal.SIGKILL) == []


# ------------------------------------------------------------------------------ the runs' checks
# A small run: 4 point and 4 earn reversals (one shard each); the last of each is a refusal.
SETTINGS = config.Settings()
WINDOW = 5.0


def run_data() -> dataset.RunData:
    return dataset.RunData(
        day=T0.date(),
        points=[(uid, "r") for uid in range(4)],
        point_outcomes=["cancel", "cancel", "cancel", "redeemed"],
        earns=[(c, "P1", f"E{c}", "r") for c in range(4)],
        earn_outcomes=[0, 0, 0, 731],
    )


def tried(
    task_id: str, map_index: int, start: float, end: float | None, *, host: str, n: int = 1, state: str = "success"
) -> object:
    return facts.TaskTry(task_id, map_index, n, state, host, at(start), at(end) if end is not None else None)


def clean_tries() -> list:
    # cancel_points one at a time (pool of 1), revoke_earns two at a time (pool of 2), both workers.
    hosts = ("worker-a", "worker-b")
    return [
        tried("extract", -1, 0, 1, host="worker-a"),
        *(tried("cancel_points", i, 1 + 10 * i, 11 + 10 * i, host=hosts[i % 2]) for i in range(4)),
        *(tried("revoke_earns", i, 1 + 10 * (i // 2), 11 + 10 * (i // 2), host=hosts[i % 2]) for i in range(4)),
        tried("totals", -1, 45, 46, host="worker-b"),
    ]


def requests_of(vendor: str, endpoint: str, walls: list[float], limited: tuple[float, ...] = ()) -> list[dict]:
    return [
        {"vendor": vendor, "endpoint": endpoint, "wall": at(w).timestamp(), "rate_limited": w in limited} for w in walls
    ]


def outcome(vendor: str, key: str, applied: bool, task_id: str, map_index: int, code: str) -> object:
    if applied:
        return facts.LedgerRow(vendor, key, "succeeded", None, None, None, task_id, map_index, 1)
    return facts.LedgerRow(vendor, key, "failed", "permanent", code, "refused", task_id, map_index, 1)


def run_facts(run: dataset.RunData, **changes: object) -> object:
    """Facts of a clean run of ``run``: each applicable item applied once and recorded as succeeded."""
    points = [(uid, o == "cancel") for (uid, _), o in zip(run.points, run.point_outcomes, strict=True)]
    earns = [(c, p, e, o == 0) for (c, p, e, _), o in zip(run.earns, run.earn_outcomes, strict=True)]
    fields = {
        "run_id": "cluster_run_1",
        "state": "success",
        "seconds": 46.0,
        "tries": clean_tries(),
        "stats": {
            "window_seconds": WINDOW,
            "xoxoday": {"requests_in_penalty": 0, "rate_limit": 5, "api_requests": 4, "duplicate_attempts": 0},
            "capillary": {"requests_in_penalty": 0, "rate_limit": 100, "api_requests": 4, "duplicate_attempts": 0},
        },
        "ledger": [outcome("xoxoday", str(uid), ok, "cancel_points", uid % 4, "redeemed") for uid, ok in points]
        + [outcome("capillary", f"{c}/{p}/{e}", ok, "revoke_earns", c % 4, "731") for c, p, e, ok in earns],
        "points_attempts": {str(uid): {"attempts": 1, "cancelled": int(ok)} for uid, ok in points},
        "earns_attempts": {e: {"attempts": 1, "revoked": int(ok)} for _, _, e, ok in earns},
        "requests": requests_of("xoxoday", "cancel_points", [2, 12, 22, 32])
        + requests_of("capillary", "revoke_earn", [2, 3, 12, 13]),
        "collected_at": at(60),
    }
    fields.update(changes)
    return facts.RunFacts(**fields)


def verdicts(found: list) -> dict[str, bool]:
    return {c.name.split(": ", 1)[1]: c.ok for c in found}


def test_run1_checks_pass_on_a_clean_run() -> None:
    run = run_data()
    found, numbers = checks.run1_checks(run_facts(run), run, SETTINGS)
    assert all(c.ok for c in found), [c for c in found if not c.ok]
    assert len(found) == 1 + 2 * 3 + 2 + 2 + 2  # state, 3 per vendor, pools, rates, workers, resends
    assert numbers["capillary"].applied_and_recorded == 3 and numbers["xoxoday"].refused_and_recorded == 1
    assert "handoff_bursts" not in numbers


def test_common_checks_fail_on_a_failed_task_behind_a_successful_run() -> None:
    run = run_data()
    tries = [*clean_tries()[:-1], tried("totals", -1, 45, 46, host="worker-b", state="failed")]
    found, _ = checks.common_checks(run_facts(run, tries=tries), run, SETTINGS)
    check = next(c for c in found if "every task instance succeeded" in c.name)
    assert not check.ok and "totals[-1]=failed" in check.detail


def test_pool_check_counts_an_unfinished_try_until_the_facts_were_collected() -> None:
    run = run_data()
    # A killed try has no end date: it holds its slot until collected_at, overlapping the next try.
    tries = [t for t in clean_tries() if not (t.task_id == "cancel_points" and t.map_index == 0)]
    tries.append(tried("cancel_points", 0, 1, None, host="worker-a", state="failed"))
    v = verdicts(checks.common_checks(run_facts(run, tries=tries), run, SETTINGS)[0])
    assert v["pool loyalty_xoxoday bounded parallel cancel_points tries"] is False
    assert v["pool loyalty_capillary bounded parallel revoke_earns tries"] is True
    # Too few tries (fewer than the shards) proves nothing: the pool check fails then too.
    few = [t for t in clean_tries() if not (t.task_id == "revoke_earns" and t.map_index == 3)]
    assert (
        verdicts(checks.common_checks(run_facts(run, tries=few), run, SETTINGS)[0])[
            "pool loyalty_capillary bounded parallel revoke_earns tries"
        ]
        is False
    )


def test_rate_check_explains_a_429_at_a_pool_slot_handoff_and_nothing_else() -> None:
    run = run_data()
    name = "xoxoday combined request rate never entered a 429 window"
    # 429 at t=12, one second after cancel_points[1] started at t=11: a handoff, reported as a note.
    handoff = requests_of("xoxoday", "cancel_points", [2, 12, 22, 32], limited=(12,))
    found, numbers = checks.common_checks(run_facts(run, requests=handoff), run, SETTINGS)
    assert verdicts(found)[name] is True
    assert numbers["handoff_bursts"] == ["cluster_run_1 xoxoday"]
    # 429 at t=18: no task started in (13, 18], unexplained.
    stray = requests_of("xoxoday", "cancel_points", [2, 12, 18, 22, 32], limited=(18,))
    found, numbers = checks.common_checks(run_facts(run, requests=stray), run, SETTINGS)
    assert verdicts(found)[name] is False and "handoff_bursts" not in numbers
    # A request sent into a penalty window fails whatever else.
    stats = run_facts(run).stats
    stats["xoxoday"]["requests_in_penalty"] = 1
    assert verdicts(checks.common_checks(run_facts(run, stats=stats), run, SETTINGS)[0])[name] is False
    # Busier than the limit with no 429 at all: the sandbox's counting is off, fail.
    burst = requests_of("xoxoday", "cancel_points", [2, 2.1, 2.2, 2.3, 2.4, 2.5])
    assert verdicts(checks.common_checks(run_facts(run, requests=burst), run, SETTINGS)[0])[name] is False


def test_run1_checks_fail_on_one_worker_on_duplicates_and_on_transient_failures() -> None:
    run = run_data()
    one_host = [replace(t, hostname="worker-a") for t in clean_tries()]
    assert (
        verdicts(checks.run1_checks(run_facts(run, tries=one_host), run, SETTINGS)[0])[
            "mapped vendor tasks ran on both workers"
        ]
        is False
    )
    stats = run_facts(run).stats
    stats["capillary"]["duplicate_attempts"] = 1
    assert (
        verdicts(checks.run1_checks(run_facts(run, stats=stats), run, SETTINGS)[0])[
            "no item sent twice, no transient failure"
        ]
        is False
    )
    ledger = list(run_facts(run).ledger)
    ledger[3] = ledger[3]._replace(failure_kind="transient")
    assert (
        verdicts(checks.run1_checks(run_facts(run, ledger=ledger), run, SETTINGS)[0])[
            "no item sent twice, no transient failure"
        ]
        is False
    )


# Run 2: worker-a is killed at t=5 while running revoke_earns[0] (try 1, failed at t=35 for want of
# heartbeats); everything else, and the retry, ran on worker-b.
def killed_run(*, retry_host: str = "worker-b", retry_state: str = "success") -> tuple:
    run = run_data()
    tries = [
        tried("extract", -1, 0, 1, host="worker-a"),
        *(tried("cancel_points", i, 1 + 10 * i, 11 + 10 * i, host="worker-b") for i in range(4)),
        tried("revoke_earns", 0, 1, 35, host="worker-a", state="failed"),
        *(tried("revoke_earns", i, 1 + 10 * (i - 1), 11 + 10 * (i - 1), host="worker-b") for i in (1, 2, 3)),
        tried("revoke_earns", 0, 36, 44, host=retry_host, n=2, state=retry_state),
        tried("totals", -1, 45, 46, host="worker-b"),
    ]
    kill = facts.Kill(
        "worker-a",
        "worker-b",
        at(5),
        [101, 102],
        [tried("revoke_earns", 0, 1, None, host="worker-a", state="running")],
        {},
    )
    # E0's request went out before the kill, its answer was lost: resent by the retry, reconciled.
    ledger = [r._replace(code="already_reversed") if r.item_key == "0/P1/E0" else r for r in run_facts(run).ledger]
    earns_attempts = {**run_facts(run).earns_attempts, "E0": {"attempts": 2, "revoked": 1}}
    f = run_facts(run, run_id="cluster_run_2", tries=tries, ledger=ledger, earns_attempts=earns_attempts)
    first = {"xoxoday": {"100": {"attempts": 0}}, "capillary": {"E100": {"attempts": 0}}}
    return f, run, first, kill


def test_run2_checks_pass_when_the_killed_task_was_retried_on_the_survivor() -> None:
    f, run, first, kill = killed_run()
    found, numbers = checks.run2_checks(f, run, first, kill, SETTINGS)
    assert all(c.ok for c in found), [c for c in found if not c.ok]
    assert numbers["reconciled"] == 1 and numbers["in_doubt"] == 0
    kill_check = next(c for c in found if c.name.endswith("a worker was SIGKILLed mid-run"))
    assert kill_check.detail == "worker-a at 00:00:05 (2 processes) while running revoke_earns[0]"


def test_run2_checks_fail_without_a_kill() -> None:
    f, run, first, _ = killed_run()
    found, _ = checks.run2_checks(f, run, first, None, SETTINGS)
    assert verdicts(found)["a worker was SIGKILLed mid-run"] is False


def test_run2_checks_fail_when_the_retry_ran_on_the_dead_worker_or_failed() -> None:
    f, run, first, kill = killed_run(retry_host="worker-a")
    v = verdicts(checks.run2_checks(f, run, first, kill, SETTINGS)[0])
    assert v["the killed worker's tasks were retried on worker-b and succeeded"] is False
    assert v["nothing ran on worker-a after the kill"] is False
    f, run, first, kill = killed_run(retry_state="failed")
    v = verdicts(checks.run2_checks(f, run, first, kill, SETTINGS)[0])
    assert v["the killed worker's tasks were retried on worker-b and succeeded"] is False


def test_run2_checks_fail_on_an_applied_item_recorded_as_failed() -> None:
    f, run, first, kill = killed_run()
    ledger = [
        r._replace(status="failed", failure_kind="permanent", code="731") if r.item_key == "0/P1/E0" else r
        for r in f.ledger
    ]
    found, numbers = checks.run2_checks(replace(f, ledger=ledger), run, first, kill, SETTINGS)
    check = next(c for c in found if "recorded as done" in c.name)
    assert not check.ok and "'0/P1/E0'" in check.detail
    assert numbers["in_doubt"] == 1 and numbers["reconciled"] == 0


def test_resend_check_allows_one_resend_of_the_killed_tasks_items_only() -> None:
    f, run, _, kill = killed_run()
    assert checks.resend_check(f, run, kill, SETTINGS.shards).ok
    thrice = {**f.earns_attempts, "E0": {"attempts": 3, "revoked": 1}}
    assert not checks.resend_check(replace(f, earns_attempts=thrice), run, kill, SETTINGS.shards).ok
    other_shard = {**f.earns_attempts, "E1": {"attempts": 2, "revoked": 1}}  # revoke_earns[1] was not killed
    check = checks.resend_check(replace(f, earns_attempts=other_shard), run, kill, SETTINGS.shards)
    assert not check.ok and "1/P1/E1" in check.detail
    points = {**f.points_attempts, "0": {"attempts": 2, "cancelled": 1}}  # cancel_points was not killed
    assert not checks.resend_check(replace(f, points_attempts=points), run, kill, SETTINGS.shards).ok


def test_run2_checks_fail_when_an_item_of_run_1_was_sent_again() -> None:
    f, run, first, kill = killed_run()
    first["capillary"]["E100"]["attempts"] = 1
    assert (
        verdicts(checks.run2_checks(f, run, first, kill, SETTINGS)[0])[
            "no item of run 1 (still in the warehouse) was sent again"
        ]
        is False
    )


def tokens(**changes: object) -> object:
    fields = {
        "expired": 4,
        "refresh_statuses": [200, 200, 200, 200],
        "stored_refresh_token": "r4",
        "current_refresh_token": "r4",
        "refreshes_by_host": {"worker-b": 2, "worker-a": 2},
    }
    fields.update(changes)
    return facts.TokenFacts(**fields)


def test_token_checks() -> None:
    [ok] = checks.token_checks("cluster_run_1", tokens())
    assert ok.ok and "refreshes per worker (task logs): {'worker-a': 2, 'worker-b': 2}" in ok.detail
    assert not checks.token_checks("r", tokens(refresh_statuses=[200, 400, 200]))[0].ok  # a refused refresh
    assert not checks.token_checks("r", tokens(refresh_statuses=[200]))[0].ok  # the pair never had to move
    stale = checks.token_checks("r", tokens(stored_refresh_token="r3"))[0]
    assert not stale.ok and "is NOT the vendor's current one" in stale.detail
    assert not checks.token_checks("r", tokens(stored_refresh_token=None))[0].ok


def test_report_notes() -> None:
    assert report.notes([], 0) == []
    found = report.notes(["cluster_run_2 capillary"], 3)
    assert found[0].startswith("3 item(s) the killed try had sent") and "(cluster_run_2 capillary)" in found[1]


def test_an_invalid_earn_reconciled_on_731_is_reported_apart_not_as_agreement_broken() -> None:
    from cluster.checks import Item, exactly_once_checks, reconcile

    ambiguous = Item(
        "c/p/bad", applicable=False, vendor_successes=0, ledger_rows=1, ledger_successes=1, reconciled=True
    )
    lie = Item("c/p/lie", applicable=False, vendor_successes=0, ledger_rows=1, ledger_successes=1, reconciled=False)
    rec = reconcile([ambiguous])
    assert rec.reconciled_ambiguous == [ambiguous] and rec.ledger_success_not_applied == []
    agreement = exactly_once_checks("capillary", rec, 0)[2]
    assert agreement.ok and "ambiguous 731" in agreement.detail
    assert not exactly_once_checks("capillary", reconcile([lie]), 0)[2].ok
