"""What the cluster test asserts, as pure functions over facts collected from the sandbox and the ledger.

Kept free of I/O so that ``tests/cluster`` can check the checks themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime


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
    """

    key: str
    applicable: bool
    vendor_successes: int
    ledger_rows: int
    ledger_successes: int
    tasks: frozenset[tuple[str, int]] = frozenset()


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
            f"{len(rec.ledger_success_twice)} recorded as succeeded twice",
        ),
    ]
