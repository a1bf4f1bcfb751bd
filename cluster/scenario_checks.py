"""The rate and deferral scenarios' verdicts, as pure functions over what the sandboxes logged.

Like :mod:`cluster.checks` (the runs' verdicts), no I/O: :mod:`cluster.scenarios` collects the
facts, and ``tests/cluster/test_scenario_checks.py`` checks these checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cluster.checks import Check


@dataclass(frozen=True)
class RateFigures:
    """What a vendor key's request log (the sandbox's, server-side) says about the rate of a run.

    :param requests: requests the rate limit applies to, received in the run.
    :param per_minute: accepted requests per minute from the first request to the last one (the
        whole run, its tail included): ``(accepted - 1) / span``.
    :param ratio: ``per_minute`` over the vendor's limit.
    :param tail_ratio: the same over the last quarter of the span (accepted requests in it / its length).
    :param announcements: rate-limit answers that opened a penalty window (none was running).
    :param max_limited_per_announcement: the most rate-limit answers in one penalty window, its own included.
    :param in_penalty: requests that arrived inside a penalty window (after the answer that opened it).
    """

    requests: int
    accepted: int
    limited: int
    span: float
    per_minute: float
    ratio: float
    tail_ratio: float
    announcements: int
    max_limited_per_announcement: int
    in_penalty: int
    first: float
    last: float

    def text(self, limit_per_minute: float) -> str:
        """One line of the report."""
        return (
            f"{self.accepted} accepted in {self.span:.1f} s = {self.per_minute:.1f}/min = {self.ratio:.3f} of "
            f"{limit_per_minute:g}/min (last quarter {self.tail_ratio:.3f}); {self.limited} x 429 in "
            f"{self.announcements} penalty announcement(s) (at most {self.max_limited_per_announcement} per "
            f"announcement), {self.in_penalty} request(s) inside a penalty window"
        )


def rate_figures(requests: Iterable[tuple[float, bool]], limit_per_minute: float, penalty: float) -> RateFigures:
    """Figures of one run from its ``(arrival time in seconds, rate limited)`` requests.

    A rate-limited answer arriving while no penalty window runs is an announcement: it opens a window
    of ``penalty`` seconds. Every request arriving inside a window (its opener excluded) counts in
    ``in_penalty``, accepted or not; rate-limited ones also count towards their window's announcement.
    """
    if limit_per_minute <= 0 or penalty < 0:
        raise ValueError("the limit must be > 0 and the penalty >= 0")
    rows = sorted(requests)
    if not rows:
        return RateFigures(0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0.0, 0.0)
    accepted = [t for t, limited in rows if not limited]
    first, last = rows[0][0], rows[-1][0]
    span = last - first
    per_minute = (len(accepted) - 1) * 60.0 / span if span > 0 and len(accepted) > 1 else 0.0
    tail = span / 4
    tail_per_minute = sum(1 for t in accepted if t > last - tail) * 60.0 / tail if tail > 0 else 0.0
    window_end = -float("inf")
    announcements = in_penalty = 0
    per_window: list[int] = []
    for t, limited in rows:
        if t < window_end:
            in_penalty += 1
            if limited:
                per_window[-1] += 1
        elif limited:
            announcements += 1
            window_end = t + penalty
            per_window.append(1)
    return RateFigures(
        requests=len(rows),
        accepted=len(accepted),
        limited=len(rows) - len(accepted),
        span=span,
        per_minute=per_minute,
        ratio=per_minute / limit_per_minute,
        tail_ratio=tail_per_minute / limit_per_minute,
        announcements=announcements,
        max_limited_per_announcement=max(per_window, default=0),
        in_penalty=in_penalty,
        first=first,
        last=last,
    )


def rate_checks(
    shared: RateFigures, baseline: RateFigures | None, limit_per_minute: float, min_ratio: float = 0.9
) -> list[Check]:
    """The shared budget's run: its rate over the whole run, one 429 per penalty at most, none sent into one.

    The baseline (each task pacing alone at limit / slots) is not judged: its figures are reported
    beside the shared run's.
    """
    beside = f"; static split: {baseline.text(limit_per_minute)}" if baseline is not None else ""
    return [
        Check(
            f"rate: the shared budget's run reached >= {min_ratio:g} of the vendor's limit over the whole run",
            shared.accepted > 1 and shared.ratio >= min_ratio,
            f"shared budget: {shared.text(limit_per_minute)}{beside}",
        ),
        Check(
            "rate: at most one 429 per penalty announcement, across all tasks of the key",
            shared.max_limited_per_announcement <= 1,
            f"{shared.limited} x 429, {shared.announcements} announcement(s)",
        ),
        Check(
            "rate: 0 requests inside a penalty window",
            shared.in_penalty == 0,
            f"{shared.in_penalty} request(s) inside a penalty window (request log)",
        ),
    ]


def sent_once_check(name: str, attempts: dict[int, tuple[int, int]], ids: Iterable[int]) -> Check:
    """Every id reached the vendor's logic once and was cancelled once (``attempts``: id -> (attempts, cancelled))."""
    wanted = list(ids)
    wrong = {uid: attempts.get(uid, (0, 0)) for uid in wanted if attempts.get(uid, (0, 0)) != (1, 1)}
    return Check(
        name,
        bool(wanted) and not wrong,
        f"{len(wanted) - len(wrong)}/{len(wanted)} ids received and cancelled exactly once"
        + (f"; (attempts, cancelled) of others: {dict(list(wrong.items())[:5])}" if wrong else ""),
    )


@dataclass(frozen=True)
class DeferFacts:
    """What the deferral scenario left behind; times are seconds since the epoch (one machine's clock).

    :param requests: the deferred task's vendor key's requests: ``(arrival, rate limited)`` (server-side).
    :param deferred_at: when the task's trigger was created (it deferred); ``None`` if it never did.
    :param resumed_at: when the scheduler queued the task again after the trigger fired (``queued_dttm``).
    :param other: the other DAG's task: ``(state, start, end)``; ``None`` if it never ran.
    :param triggerer_killed_at: when the triggerer was SIGKILLed; ``restarted_at``: started again.
    :param taken_over: the trigger was seen assigned to another triggerer after the kill.
    :param attempts: per id, (requests that reached the vendor's logic, cancellations).
    :param ledger_succeeded: ids the ledger records as succeeded.
    :param task: the deferred task's final ``(state, try_number)``.
    """

    requests: tuple[tuple[float, bool], ...]
    penalty: float
    ids: tuple[int, ...]
    deferred_at: float | None
    resumed_at: float | None
    other: tuple[str, float, float] | None
    triggerer_killed_at: float | None
    triggerer_restarted_at: float | None
    taken_over: bool
    attempts: dict[int, tuple[int, int]]
    ledger_succeeded: frozenset[int]
    task: tuple[str, int]


#: seconds the deferral may take to start after the vendor's answer, and to end after its window
#: (scheduling and a worker's start-up): a task that sleeps through the window in its slot fails.
DEFER_SLACK = 10.0


def defer_checks(f: DeferFacts, limit_per_minute: float) -> list[Check]:
    """The deferral scenario: a long penalty waited out deferred, the slot used meanwhile, a triggerer restart survived.

    The deferral must start within :data:`DEFER_SLACK` of the 429 (no worker slot held through the
    window) and end within as much of the window's end (the window is not waited twice); the other
    DAG's task must run inside both the deferral and the penalty.
    """
    figures = rate_figures(f.requests, limit_per_minute, f.penalty)
    announced = next((t for t, limited in sorted(f.requests) if limited), None)
    after = [t for t, _ in sorted(f.requests) if announced is not None and t > announced]
    span = (
        f"deferred {f.deferred_at - announced:+.1f} s after the 429, queued again {f.resumed_at - announced:+.1f} s"
        if announced is not None and f.deferred_at is not None and f.resumed_at is not None
        else f"429 at {announced}, deferred at {f.deferred_at}, queued again at {f.resumed_at}"
    )
    deferred = (
        announced is not None
        and f.deferred_at is not None
        and f.resumed_at is not None
        and announced <= f.deferred_at <= announced + DEFER_SLACK
        and announced + f.penalty - 1.0 <= f.resumed_at <= announced + f.penalty + DEFER_SLACK
        and all(t >= announced + f.penalty for t in after)
    )
    other_ok = (
        f.other is not None
        and f.deferred_at is not None
        and f.resumed_at is not None
        and announced is not None
        and f.other[0] == "success"
        and f.deferred_at <= f.other[1] <= f.other[2] <= min(f.resumed_at, announced + f.penalty)
    )
    other_text = (
        f"other DAG's task {f.other[0]}, ran {f.other[1] - f.deferred_at:+.1f} s to {f.other[2] - f.deferred_at:+.1f} s "
        f"into the deferral of {f.resumed_at - f.deferred_at:.1f} s"
        if f.other is not None and f.deferred_at is not None and f.resumed_at is not None
        else f"other DAG's task: {f.other}"
    )
    restart_ok = (
        f.deferred_at is not None
        and f.resumed_at is not None
        and f.triggerer_killed_at is not None
        and f.triggerer_restarted_at is not None
        and f.deferred_at < f.triggerer_killed_at <= f.triggerer_restarted_at < f.resumed_at
        and f.taken_over
    )
    restart_text = (
        f"SIGKILLed {f.triggerer_killed_at - f.deferred_at:.1f} s into the deferral, started again "
        f"{f.triggerer_restarted_at - f.triggerer_killed_at:.1f} s later; trigger taken over: {f.taken_over}"
        if f.triggerer_killed_at is not None and f.triggerer_restarted_at is not None and f.deferred_at is not None
        else f"triggerer killed at {f.triggerer_killed_at}, restarted at {f.triggerer_restarted_at}"
    )
    missing = [uid for uid in f.ids if uid not in f.ledger_succeeded]
    return [
        Check(
            "deferral: vendor A announced one penalty and got one 429; 0 requests inside it",
            figures.announcements == 1 and figures.limited == 1 and figures.in_penalty == 0,
            f"{figures.limited} x 429, {figures.announcements} announcement(s), {figures.in_penalty} request(s) "
            f"inside the {f.penalty:g} s penalty",
        ),
        Check("deferral: the task waited the penalty out deferred, sending nothing", deferred, span),
        Check("deferral: another DAG's task ran in the one pool slot meanwhile", other_ok, other_text),
        Check("deferral: the triggerer was SIGKILLed and restarted mid-deferral", restart_ok, restart_text),
        sent_once_check("deferral: nothing resent (each id reached the vendor once)", f.attempts, f.ids),
        Check(
            "deferral: the task resumed from the ledger and succeeded in its first try",
            f.task == ("success", 1) and bool(f.ids) and not missing,
            f"task {f.task[0]} (try {f.task[1]}); {len(f.ids) - len(missing)}/{len(f.ids)} ids succeeded in the ledger",
        ),
    ]
