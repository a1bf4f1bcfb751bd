"""Run 3's verdicts (two runs over the same items at once, a worker killed), over hand-made facts."""

from __future__ import annotations

from datetime import datetime, timedelta

from cluster import dataset, facts
from cluster.overlap import RUN_A, RUN_B, OverlapFacts, overlap_checks

T0 = datetime(2026, 1, 1)
P = "p" * 24


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def day() -> dataset.RunData:
    # earns e1..e3 of customers 1..3 (all revocable), e4 invalid (the vendor refuses it)
    return dataset.RunData(
        T0.date(), [], [], [(1, P, "e1", "r"), (2, P, "e2", "r"), (3, P, "e3", "r"), (4, P, "e4", "r")], [0, 0, 0, 731]
    )


def tries() -> dict[str, list[facts.TaskTry]]:
    def t(task: str, index: int, n: int, host: str, start: float, end: float | None, state: str) -> facts.TaskTry:
        return facts.TaskTry(task, index, n, state, host, at(start), at(end) if end is not None else None)

    return {
        RUN_A: [
            t("revoke_earns", 1, 1, "worker-a", 0, 40, "failed"),  # killed at 20
            t("revoke_earns", 1, 2, "worker-b", 50, 70, "success"),
            t("revoke_earns", 2, 1, "worker-b", 0, 30, "success"),
        ],
        RUN_B: [t("revoke_earns", 0, 1, "worker-b", 10, 60, "success")],
    }


def kill() -> facts.Kill:
    return facts.Kill("worker-a", "worker-b", at(20), [1], [tries()[RUN_A][0]], {})


def row(key: str, status: str, run: str, index: int, n: int, kind=None, code=None) -> tuple:
    return ("capillary", key, status, kind, code, run, "revoke_earns", index, n)


def counts(attempts: int, revoked: int) -> dict:
    return {"attempts": attempts, "revoked": revoked}


def good_facts() -> OverlapFacts:
    rows = [
        # e1: sent by the killed try (no answer), resent by its retry, reconciled
        row(f"1/{P}/e1", "sending", RUN_A, 1, 1),
        row(f"1/{P}/e1", "sending", RUN_A, 1, 2),
        row(f"1/{P}/e1", "succeeded", RUN_A, 1, 2, code="already_reversed"),
        # e2: run B sent it once (run A found it claimed)
        row(f"2/{P}/e2", "sending", RUN_B, 0, 1),
        row(f"2/{P}/e2", "succeeded", RUN_B, 0, 1),
        # e3, e4: run A's other task
        row(f"3/{P}/e3", "sending", RUN_A, 2, 1),
        row(f"3/{P}/e3", "succeeded", RUN_A, 2, 1),
        row(f"4/{P}/e4", "sending", RUN_A, 2, 1),
        row(f"4/{P}/e4", "failed", RUN_A, 2, 1, kind="permanent", code="731"),
    ]
    attempts = {"e1": counts(2, 1), "e2": counts(1, 1), "e3": counts(1, 1), "e4": counts(1, 0)}
    return OverlapFacts(
        {RUN_A: "success", RUN_B: "success"}, 90.0, tries(), rows, {"xoxoday": {}, "capillary": attempts}
    )


def verdicts(f: OverlapFacts) -> dict[str, bool]:
    return {c.name.split(": ", 1)[1]: c.ok for c in overlap_checks(f, day(), kill())}


def test_an_in_doubt_resend_after_the_kill_passes_every_check() -> None:
    found = verdicts(good_facts())
    assert all(found.values()), found


def test_an_item_sent_by_two_live_attempts_fails() -> None:
    f = good_facts()
    f.rows += [row(f"2/{P}/e2", "sending", RUN_A, 2, 1), row(f"2/{P}/e2", "failed", RUN_A, 2, 1, "permanent", "731")]
    f.attempts["capillary"]["e2"] = counts(2, 1)
    found = verdicts(f)
    assert not found[
        "0 items sent by two live attempts; the only items sent twice are in-doubt resends of a killed try's requests"
    ]


def test_an_item_applied_twice_or_left_without_outcome_fails() -> None:
    f = good_facts()
    f.attempts["capillary"]["e3"] = counts(1, 2)
    f.rows = [r for r in f.rows if r[1] != f"2/{P}/e2" or r[2] == "sending"]
    found = verdicts(f)
    assert not found["every applicable reversal applied exactly once"]
    assert not found["0 outcomes lost (every extracted item has a success or a refusal)"]


def test_an_in_doubt_resend_left_unreconciled_fails() -> None:
    f = good_facts()
    f.rows = [r for r in f.rows if r[4] != "already_reversed"] + [
        row(f"1/{P}/e1", "failed", RUN_A, 1, 2, "permanent", "731")
    ]
    assert not verdicts(f)["each in-doubt resend is reconciled"]


def test_runs_that_never_overlapped_fail() -> None:
    f = good_facts()
    f.tries[RUN_B] = [facts.TaskTry("revoke_earns", 0, 1, "success", "worker-b", at(100), at(120))]
    assert not verdicts(f)["their vendor tasks ran at the same time"]


def test_a_success_the_vendor_did_not_apply_fails_unless_it_is_a_lost_requests_ambiguous_731() -> None:
    f = good_facts()
    f.rows.append(row(f"4/{P}/e4", "succeeded", RUN_B, 0, 1, code="already_reversed"))  # no killed intent
    assert not verdicts(f)["ledger successes agree with the vendor"]
    f = good_facts()
    f.rows += [
        row(f"4/{P}/e4", "sending", RUN_A, 1, 1),
        row(f"4/{P}/e4", "succeeded", RUN_A, 1, 2, code="already_reversed"),
    ]
    checks = {c.name.split(": ", 1)[1]: c for c in overlap_checks(f, day(), kill())}
    assert checks["ledger successes agree with the vendor"].ok
    assert "ambiguous 731" in checks["ledger successes agree with the vendor"].detail


def test_the_report_says_how_much_the_two_runs_met_each_other() -> None:
    from collections import Counter

    f = good_facts()
    f.summaries = {
        RUN_A: Counter(succeeded=9000, skipped=800, claimed_elsewhere=200),
        RUN_B: Counter(succeeded=11000, skipped=9000, claimed_elsewhere=40),
    }
    detail = next(c.detail for c in overlap_checks(f, day(), kill()) if "two live attempts" in c.name)
    assert (
        f"{RUN_A}: 9000 succeeded, 800 skipped (settled by the other run), 200 left to the other's live claim" in detail
    )
    assert (
        f"{RUN_B}: 11000 succeeded, 9000 skipped (settled by the other run), 40 left to the other's live claim"
        in detail
    )


def test_the_woken_worker_passes_only_without_a_new_intent_and_its_residue_is_reported() -> None:
    name = "the frozen worker, woken past its lease after the take-over, wrote no new intent (the fence holds)"
    f = good_facts()
    assert not any(name in c.name for c in overlap_checks(f, day(), kill()))  # not woken: no such check
    f.wake = {"tries": 2, "residue": 1, "new_intents": 0, "late_answers": 5}
    found = {c.name.split(": ", 1)[1]: c for c in overlap_checks(f, day(), kill())}
    assert found[name].ok
    assert "residue: 1 request(s) reached the vendor after it woke" in found[name].detail
    assert "5 answer(s) it recorded after waking" in found[name].detail
    f.wake = {"tries": 2, "residue": 3, "new_intents": 2, "late_answers": 0}
    assert not verdicts(f)[name]
