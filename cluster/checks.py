"""Every verdict of the cluster test, as pure functions over the facts a run left behind.

No I/O here: the facts (``cluster.facts``), the data (``cluster.dataset``) and the kill
(``cluster.chaos``) are collected elsewhere, so that ``tests/cluster`` can check the checks
themselves. The primitives come first (intervals, windows, reconciliation), then the checks of any
run, of run 1 (clean) and of run 2 (a worker killed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cluster.config import POOLS, VENDOR_TASKS, WORKERS

if TYPE_CHECKING:
    from cluster.config import Settings
    from cluster.dataset import RunData
    from cluster.facts import Kill, LedgerRow, RunFacts, TaskTry, TokenFacts


@dataclass(frozen=True)
class Check:
    """One assertion of the report: its name, the verdict, and the numbers behind it."""

    name: str
    ok: bool
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", bool(self.ok))  # `a and b or items` must not leak a list


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """Return the largest number of intervals ``[start, end)`` open at the same instant.

    An interval ending at the instant another starts does not overlap it.
    """
    events: list[tuple[datetime, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda event: (event[0], event[1]))  # ends (-1) before starts (+1) at equal times
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def max_in_window(times: Sequence[float], window: float) -> int:
    """Return the largest number of timestamps in any half-open window ``(t - window, t]``."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def handoff_bursts(limited: Sequence[float], task_starts: Sequence[float], window: float) -> list[float]:
    """Return the rate-limited request times *not* explained by a pool-slot handoff.

    Each task paces its own requests, but a task's first request is not spaced from the last one of
    the task that held its pool slot before; a window holding such a handoff may see one request
    more than the per-task pacing allows. A rate-limited answer whose window (``t - window``, ``t``]
    contains the start of a task is explained that way; any other is not.
    """
    return [t for t in limited if not any(t - window < start <= t for start in task_starts)]


@dataclass(frozen=True)
class Item:
    """What is known of one extracted reversal after a run.

    :param key: the ledger's item key.
    :param applicable: the vendor can apply it (a known, unredeemed, revocable item).
    :param vendor_successes: successful cancellations/revocations the vendor counted for it.
    :param ledger_rows: ledger rows recorded for it by the run.
    :param ledger_successes: of those, rows with status ``succeeded``.
    :param tasks: ``(task_id, map_index)`` of the ledger rows.
    :param reconciled: a ``succeeded`` row is a reconciliation (code ``already_reversed``).
    """

    key: str
    applicable: bool
    vendor_successes: int
    ledger_rows: int
    ledger_successes: int
    tasks: frozenset[tuple[str, int]] = frozenset()
    reconciled: bool = False


@dataclass
class Reconciliation:
    """Items of one run, sorted by what the vendor and the ledger say about them."""

    items: int = 0
    applied_and_recorded: int = 0
    refused_and_recorded: int = 0
    #: applied once at the vendor, but the ledger records only failures (the answer was lost).
    in_doubt: list[Item] = field(default_factory=list)
    #: no ledger row at all.
    missing_outcome: list[Item] = field(default_factory=list)
    #: the vendor applied it more than once.
    applied_twice: list[Item] = field(default_factory=list)
    #: the vendor could apply it and did not.
    not_applied: list[Item] = field(default_factory=list)
    #: the vendor applied something it should have refused (a sandbox or data problem).
    applied_unexpectedly: list[Item] = field(default_factory=list)
    #: the ledger says succeeded, the vendor disagrees.
    ledger_success_not_applied: list[Item] = field(default_factory=list)
    #: reconciled after a lost answer, but the item was never applicable: Capillary's 731 means both
    #: "already revoked" and "invalid earn", so an invalid earn in a lost request reads as revoked.
    reconciled_ambiguous: list[Item] = field(default_factory=list)
    #: more than one ``succeeded`` row.
    ledger_success_twice: list[Item] = field(default_factory=list)


def reconcile(items: Iterable[Item]) -> Reconciliation:
    """Compare the vendor's counts with the ledger's rows, item by item."""
    out = Reconciliation()
    for item in items:
        out.items += 1
        if item.vendor_successes > 1:
            out.applied_twice.append(item)
        if item.vendor_successes and not item.applicable:
            out.applied_unexpectedly.append(item)
        if item.applicable and not item.vendor_successes:
            out.not_applied.append(item)
        if item.ledger_successes > 1:
            out.ledger_success_twice.append(item)
        if item.ledger_successes and not item.vendor_successes:
            if item.reconciled and not item.applicable:
                out.reconciled_ambiguous.append(item)
            else:
                out.ledger_success_not_applied.append(item)
        if not item.ledger_rows:
            out.missing_outcome.append(item)
        elif item.vendor_successes and not item.ledger_successes:
            out.in_doubt.append(item)
        elif item.vendor_successes == 1 and item.ledger_successes == 1:
            out.applied_and_recorded += 1
        elif not item.vendor_successes and not item.ledger_successes and not item.applicable:
            out.refused_and_recorded += 1
    return out


def exactly_once_checks(vendor: str, rec: Reconciliation, expected_applied: int) -> list[Check]:
    """The report lines of one vendor's reconciliation."""

    def sample(found: list[Item]) -> str:
        return ", ".join(item.key for item in found[:5]) + (" ..." if len(found) > 5 else "")

    applied = rec.applied_and_recorded + len(rec.in_doubt)
    return [
        Check(
            f"{vendor}: every applicable reversal applied exactly once at the vendor",
            not (rec.applied_twice or rec.not_applied or rec.applied_unexpectedly) and applied == expected_applied,
            f"{applied} applied of {expected_applied} applicable, {len(rec.applied_twice)} applied twice, "
            f"{len(rec.not_applied)} not applied{' (' + sample(rec.not_applied) + ')' if rec.not_applied else ''}, "
            f"{len(rec.applied_unexpectedly)} applied though not applicable",
        ),
        Check(
            f"{vendor}: the ledger holds an outcome for every extracted item",
            not rec.missing_outcome,
            f"{rec.items} items, {rec.items - len(rec.missing_outcome)} with an outcome"
            + (f"; missing: {sample(rec.missing_outcome)}" if rec.missing_outcome else ""),
        ),
        Check(
            f"{vendor}: ledger successes agree with the vendor",
            not (rec.ledger_success_not_applied or rec.ledger_success_twice),
            f"{rec.applied_and_recorded} applied and recorded, {rec.refused_and_recorded} refused and recorded, "
            f"{len(rec.ledger_success_not_applied)} recorded as succeeded but not applied, "
            f"{len(rec.ledger_success_twice)} recorded as succeeded twice"
            + (
                f"; {len(rec.reconciled_ambiguous)} invalid earn(s) in a lost request reconciled on the vendor's "
                f"ambiguous 731 (known limitation): {sample(rec.reconciled_ambiguous)}"
                if rec.reconciled_ambiguous
                else ""
            ),
        ),
    ]


# ===================================================================================== run checks
def items_of(facts: RunFacts, run: RunData) -> dict[str, list[Item]]:
    """Per vendor, one :class:`Item` per extracted row with the vendor's and the ledger's view."""
    rows: dict[tuple[str, str], list[LedgerRow]] = defaultdict(list)
    for row in facts.ledger:
        rows[(row.vendor, row.item_key)].append(row)

    def item(vendor: str, key: str, applicable: bool, successes: int) -> Item:
        found = rows.get((vendor, key), [])
        return Item(
            key=key,
            applicable=applicable,
            vendor_successes=successes,
            ledger_rows=len(found),
            ledger_successes=sum(1 for r in found if r.status == "succeeded"),
            reconciled=any(r.status == "succeeded" and r.code == "already_reversed" for r in found),
            tasks=frozenset((r.task_id, r.map_index) for r in found),
        )

    points = [
        item("xoxoday", str(uid), outcome == "cancel", int(facts.points_attempts[str(uid)]["cancelled"]))
        for (uid, _), outcome in zip(run.points, run.point_outcomes, strict=True)
    ]
    earns = [
        item("capillary", f"{c}/{p}/{e}", outcome == 0, int(facts.earns_attempts[e]["revoked"]))
        for (c, p, e, _), outcome in zip(run.earns, run.earn_outcomes, strict=True)
    ]
    return {"xoxoday": points, "capillary": earns}


def common_checks(facts: RunFacts, run: RunData, settings: Settings) -> tuple[list[Check], dict[str, Any]]:
    """Checks of any run: run state, exactly once, ledger, pools, rate; plus numbers for the report."""
    current = [t for t in facts.tries if is_current(t, facts.tries)]
    unsuccessful = sorted(f"{t.task_id}[{t.map_index}]={t.state}" for t in current if t.state != "success")
    checks = [
        # The run's state alone proves little: its leaf `totals` runs with trigger_rule all_done.
        Check(
            f"{facts.run_id}: the DAG run and every task instance succeeded",
            facts.state == "success" and not unsuccessful,
            f"run {facts.state}; {len(current) - len(unsuccessful)} of {len(current)} task instances succeeded"
            + (f"; not: {', '.join(unsuccessful)}" if unsuccessful else ""),
        )
    ]
    numbers: dict[str, Any] = {}
    items = items_of(facts, run)
    expected = {
        "xoxoday": sum(1 for o in run.point_outcomes if o == "cancel"),
        "capillary": sum(1 for o in run.earn_outcomes if o == 0),
    }
    for vendor, vendor_items in items.items():
        rec = reconcile(vendor_items)
        checks += [
            Check(f"{facts.run_id}: {c.name}", c.ok, c.detail)
            for c in exactly_once_checks(vendor, rec, expected[vendor])
        ]
        numbers[vendor] = rec
    # Pools: never more tries running than the pool's slots (killed tries count until failed).
    now = facts.collected_at
    for vendor, task_id in VENDOR_TASKS.items():
        spans = [(t.start, t.end or now) for t in facts.tries if t.task_id == task_id and t.start is not None]
        peak = max_overlap(spans)
        slots = settings.capillary_slots if vendor == "capillary" else settings.xoxoday_slots
        checks.append(
            Check(
                f"{facts.run_id}: pool {POOLS[vendor]} bounded parallel {task_id} tries",
                peak <= slots and len(spans) >= settings.shards,
                f"at most {peak} of {len(spans)} tries running at once, pool size {slots}",
            )
        )
    # Rate: nothing sent inside a vendor's 429 window; rate-limited answers none, or explained by a
    # pool-slot handoff (a known pacing gap, see cluster/README.md); busiest window under the limit.
    window = float(facts.stats["window_seconds"])
    for vendor, endpoint in (("xoxoday", "cancel_points"), ("capillary", "revoke_earn")):
        s = facts.stats[vendor]
        limited = [r["wall"] for r in facts.requests if r["vendor"] == vendor and r["rate_limited"]]
        starts = [t.start.timestamp() for t in facts.tries if t.task_id == VENDOR_TASKS[vendor] and t.start]
        unexplained = handoff_bursts(limited, starts, window)
        busiest = max_in_window(
            [r["wall"] for r in facts.requests if r["vendor"] == vendor and r["endpoint"] == endpoint], window
        )
        checks.append(
            Check(
                f"{facts.run_id}: {vendor} combined request rate never entered a 429 window",
                s["requests_in_penalty"] == 0 and not unexplained and (busiest <= s["rate_limit"] or bool(limited)),
                f"{s['api_requests']} requests, busiest {window:.0f} s window {busiest} (limit {s['rate_limit']}), "
                f"{s['requests_in_penalty']} requests in a penalty window, {len(limited)} rate-limited answers"
                + (
                    f" ({len(limited) - len(unexplained)} at a pool-slot handoff: a new task's first request is "
                    f"not paced against the previous task's last one; {len(unexplained)} unexplained)"
                    if limited
                    else ""
                ),
            )
        )
        if limited and not unexplained:
            numbers.setdefault("handoff_bursts", []).append(f"{facts.run_id} {vendor}")
    return checks, numbers


def run1_checks(facts: RunFacts, run: RunData, settings: Settings) -> tuple[list[Check], dict[str, Any]]:
    """Run 1: the common checks, mapped tasks on both workers, nothing sent twice."""
    checks, numbers = common_checks(facts, run, settings)
    hosts = Counter(t.hostname for t in facts.tries if t.task_id in VENDOR_TASKS.values())
    checks.append(
        Check(
            f"{facts.run_id}: mapped vendor tasks ran on both workers",
            set(WORKERS) <= set(hosts),
            ", ".join(f"{host}: {n}" for host, n in sorted(hosts.items(), key=lambda kv: str(kv[0]))),
        )
    )
    dupes = {v: facts.stats[v]["duplicate_attempts"] for v in ("xoxoday", "capillary")}
    transient = sum(1 for row in facts.ledger if row.failure_kind == "transient")
    checks.append(
        Check(
            f"{facts.run_id}: no item sent twice, no transient failure",
            not any(dupes.values()) and transient == 0,
            f"items sent more than once: {dupes}; transient failures in the ledger: {transient}",
        )
    )
    return checks, numbers


def run2_checks(
    facts: RunFacts,
    run: RunData,
    first_attempts: dict[str, dict[str, dict[str, Any]]],
    kill: Kill | None,
    settings: Settings,
) -> tuple[list[Check], dict[str, Any]]:
    """Run 2: the common checks, the kill happened, killed tasks retried on the survivor, in-doubt items."""
    checks, numbers = common_checks(facts, run, settings)
    if kill is None:
        checks.append(Check(f"{facts.run_id}: a worker was SIGKILLed mid-run", False, "no moment found to kill"))
        return checks, numbers
    checks.append(
        Check(
            f"{facts.run_id}: a worker was SIGKILLed mid-run",
            True,
            f"{kill.victim} at {kill.at:%H:%M:%S} ({len(kill.pids)} processes) while running "
            + ", ".join(f"{t.task_id}[{t.map_index}]" for t in kill.tries),
        )
    )
    final = {(t.task_id, t.map_index): t for t in facts.tries if is_current(t, facts.tries)}
    retried = []
    for t in kill.tries:
        now = final.get((t.task_id, t.map_index))
        retried.append(
            (
                f"{t.task_id}[{t.map_index}]",
                now is not None
                and now.state == "success"
                and now.hostname == kill.survivor
                and now.try_number > t.try_number,
                f"try {t.try_number} on {t.hostname} -> try {now.try_number if now else '?'} "
                f"{now.state if now else '?'} on {now.hostname if now else '?'}",
            )
        )
    checks.append(
        Check(
            f"{facts.run_id}: the killed worker's tasks were retried on {kill.survivor} and succeeded",
            all(ok for _, ok, _ in retried),
            "; ".join(f"{name}: {detail}" for name, _, detail in retried),
        )
    )
    hosts_after = {t.hostname for t in facts.tries if t.start is not None and t.start > kill.at}
    checks.append(
        Check(
            f"{facts.run_id}: nothing ran on {kill.victim} after the kill",
            kill.victim not in hosts_after,
            f"hosts of tries started after the kill: {sorted(h or '?' for h in hosts_after)}",
        )
    )
    # The killed try's answers died with it; its items were marked as being sent (intent rows), so the
    # retry resent them and recorded the vendor's "already cancelled"/731 as reconciled successes.
    # An item the vendor applied that the ledger records only as failed would be a lie: there must be none.
    in_doubt = [item for vendor in ("xoxoday", "capillary") for item in numbers[vendor].in_doubt]
    reconciled = sum(1 for row in facts.ledger if row.status == "succeeded" and row.code == "already_reversed")
    numbers["in_doubt"] = len(in_doubt)
    numbers["reconciled"] = reconciled
    checks.append(
        Check(
            f"{facts.run_id}: every item the vendor applied is recorded as done (answers lost with the killed "
            "worker are reconciled, none recorded as failed)",
            not in_doubt,
            f"{reconciled} reconciled as already reversed; {len(in_doubt)} applied but recorded as failed"
            + (f": {[i.key for i in in_doubt[:5]]}" if in_doubt else ""),
        )
    )
    checks.append(resend_check(facts, run, kill, settings.shards))
    # Yesterday's items, still in the warehouse, were not sent again (the extraction's anti-join).
    resent = sum(int(a["attempts"]) for attempts in first_attempts.values() for a in attempts.values())
    checks.append(
        Check(
            f"{facts.run_id}: no item of run 1 (still in the warehouse) was sent again",
            resent == 0,
            f"{resent} attempts on {sum(len(a) for a in first_attempts.values())} items of run 1 during run 2",
        )
    )
    return checks, numbers


def token_checks(run_id: str, tokens: TokenFacts) -> list[Check]:
    """Run 1: the rotating Xoxoday pair was refreshed, never refused, and the newest pair is stored."""
    refreshes = len(tokens.refresh_statuses)
    refused = sum(1 for status in tokens.refresh_statuses if status != 200)
    current = tokens.stored_refresh_token == tokens.current_refresh_token
    return [
        Check(
            f"{run_id}: xoxoday's rotating token pair was shared by the workers (Airflow Variable)",
            refreshes >= 2 and not refused and current,
            f"access tokens expired {tokens.expired} times; {refreshes} refreshes, {refused} refused; "
            f"refreshes per worker (task logs): {dict(sorted(tokens.refreshes_by_host.items()))}; the stored pair "
            f"{'is' if current else 'is NOT'} the vendor's current one",
        )
    ]


def resend_check(facts: RunFacts, run: RunData, kill: Kill, shards: int) -> Check:
    """Run 2: items sent more than once are those of the killed tasks, at most twice each."""
    killed = {(t.task_id, t.map_index) for t in kill.tries}
    resent: list[tuple[str, str, int, int]] = []  # (vendor, key, attempts, shard)
    for uid, _ in run.points:
        attempts = int(facts.points_attempts[str(uid)]["attempts"])
        if attempts > 1:
            resent.append(("xoxoday", str(uid), attempts, uid % shards))
    for c, p, e, _ in run.earns:
        attempts = int(facts.earns_attempts[e]["attempts"])
        if attempts > 1:
            resent.append(("capillary", f"{c}/{p}/{e}", attempts, c % shards))
    stray = [r for r in resent if (VENDOR_TASKS[r[0]], r[3]) not in killed or r[2] > 2]
    return Check(
        f"{facts.run_id}: only the killed tasks' lost requests were sent again, once",
        not stray,
        f"{len(resent)} item(s) sent twice (the killed try's requests whose answer was lost)"
        + (f"; unexplained: {[r[1] for r in stray[:5]]}" if stray else ""),
    )


def is_current(t: TaskTry, tries: list[TaskTry]) -> bool:
    """Whether ``t`` is the latest try of its task instance."""
    return t.try_number == max(x.try_number for x in tries if (x.task_id, x.map_index) == (t.task_id, t.map_index))
