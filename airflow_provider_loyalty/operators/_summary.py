"""What one run did, as counts: the summary XCom, the failure message, progress lines and metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_loyalty import _metrics as metrics
from airflow_provider_loyalty.outcomes import Outcome

#: Failures (and, in a dry run, planned requests) listed in the summary XCom; the ledger holds all.
MAX_LISTED = 100
#: Failed items named in a task's failure message and log.
MAX_NAMED = 20
#: Seconds between INFO progress lines.
PROGRESS_EVERY = 10.0


def describe_item(failure: dict[str, Any]) -> str:
    """``unique_id=4711: refused Transaction not found`` — one failed item for a message."""
    fields = " ".join(f"{k}={v}" for k, v in failure.items() if k not in ("code", "message"))
    return f"{fields}: {failure.get('code') or ''} {failure.get('message') or ''}".rstrip()


def top_codes(codes: Counter[str], limit: int = 8) -> str:
    """``729 x3, 731 x1``."""
    return ", ".join(f"{code} x{n}" for code, n in codes.most_common(limit))


@dataclass
class RunSummary:
    """Counts of one run; :meth:`as_xcom` is the task's small result.

    ``requested`` counts distinct items (duplicate input rows are removed and counted apart), so
    ``succeeded + failed + skipped == requested`` always holds (``planned`` replaces the first two
    in a dry run). ``reconciled`` items are among ``succeeded``: resent after an attempt that may
    have applied them, and answered "already reversed". ``done_earlier_try`` items are among
    ``skipped``: an earlier try of this DAG run succeeded them, so they count in its ratio.
    """

    requested: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    requests: int = 0
    dry_run: bool = False
    failed_transient: int = 0
    failed_earlier: int = 0
    done_earlier_try: int = 0
    reconciled: int = 0
    invalid: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: this run's failures: codes of all, the first few named
    codes: Counter[str] = field(default_factory=Counter)
    named: list[dict[str, Any]] = field(default_factory=list)
    #: refusals recorded by earlier runs, not resent
    earlier_codes: Counter[str] = field(default_factory=Counter)
    #: the pace in force and what ``max_requests_per_minute="auto"`` learned (the hook's ``pace_report()``)
    pace: dict[str, Any] | None = None
    #: item key -> the business reference its input row carried (shown with its failures)
    references: dict[str, str] = field(default_factory=dict)

    def _failure(self, outcome: Outcome) -> dict[str, Any]:
        """The ``failures`` entry of an outcome, with the item's reference when its row carried one."""
        failure = outcome.as_failure()
        reference = self.references.get(outcome.key)
        if reference is not None:
            failure["reference"] = reference
        return failure

    def add(self, outcomes: Iterable[Outcome]) -> tuple[int, int]:
        """Count this attempt's ``outcomes``; return ``(ok, failed)`` among them."""
        ok = bad = 0
        for outcome in outcomes:
            if outcome.ok:
                ok += 1
                self.reconciled += outcome.reconciled
                continue
            bad += 1
            self.failed_transient += outcome.transient
            failure = self._failure(outcome)
            self.codes[str(outcome.code)] += 1
            if len(self.named) < MAX_NAMED:
                self.named.append(failure)
            if len(self.failures) < MAX_LISTED:
                self.failures.append(failure)
        self.succeeded += ok
        self.failed += bad
        return ok, bad

    def add_invalid(self, rows: list[tuple[int, str, str]], count: int) -> None:
        """Count ``count`` input rows skipped as invalid (``on_invalid="skip"``); the first are named."""
        self.invalid += count
        self.failed += count
        self.codes["invalid"] += count
        for n, shown, reason in rows:
            failure = {"row": n, "value": shown, "code": "invalid", "message": reason}
            if len(self.named) < MAX_NAMED:
                self.named.append(failure)
            if len(self.failures) < MAX_LISTED:
                self.failures.append(failure)

    def add_refused(self, outcomes: Iterable[Outcome], *, earlier_run: bool) -> None:
        """Count refusals found in the ledger (not resent); ``earlier_run``: recorded by another DAG run."""
        for outcome in outcomes:
            if not earlier_run:  # an earlier try of this run: it counts in this run's decision
                self.add([outcome])
                continue
            self.failed += 1
            self.failed_earlier += 1
            self.earlier_codes[str(outcome.code)] += 1
            if len(self.failures) < MAX_LISTED:
                self.failures.append(self._failure(outcome))

    @property
    def failed_this_run(self) -> int:
        """Failures decided by this run (refusals of earlier runs were judged then)."""
        return self.failed - self.failed_earlier

    @property
    def items_this_run(self) -> int:
        """The items this DAG run answers for, over all its tries: the ratio's denominator.

        Every requested item but those an earlier DAG run settled (skipped as done, or refused
        then): this try's items, and what earlier tries of this run settled — their successes
        (``done_earlier_try``) as well as their refusals, which :attr:`failed_this_run` counts.
        """
        return self.requested - self.skipped + self.done_earlier_try - self.failed_earlier

    def as_xcom(self, **extra: Any) -> dict[str, Any]:
        """Return the JSON-able summary pushed to XCom."""
        return {
            "requested": self.requested,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "reconciled": self.reconciled,
            "invalid": self.invalid,
            "duplicates_removed": self.duplicates,
            "requests": self.requests,
            "failed_transient": self.failed_transient,
            "failed_earlier": self.failed_earlier,
            "done_earlier_try": self.done_earlier_try,
            "failure_codes": dict(self.codes),
            "failures": list(self.failures),
            **({"pace": self.pace} if self.pace is not None else {}),
            **extra,
        }

    def failure_report(self) -> str:
        """Name this run's failed items (the first :data:`MAX_NAMED`, with code and message) and its codes."""
        named = "; ".join(describe_item(f) for f in self.named)
        more = self.failed_this_run - len(self.named)
        return f"codes: {top_codes(self.codes)}. Failed: {named}" + (
            f"; and {more} more (see the ledger)" if more > 0 else ""
        )

    def earlier_report(self) -> str:
        """Refusals recorded by earlier runs, apart from this run's."""
        return f"{self.failed_earlier} refused in earlier runs, not resent (codes: {top_codes(self.earlier_codes)})"


class Progress:
    """INFO progress lines about every :data:`PROGRESS_EVERY` seconds, and Airflow metrics per request.

    :param log: the task's logger (``self.log`` of the operator).
    :param vendor: ``xoxoday`` or ``capillary`` (metric names and lines).
    :param what: what the items are called (``unique_ids``, ``earns``).
    :param total: items to send in this run.
    :param waited: returns the seconds waited on the vendor's rate-limit windows so far.
    :param pace: returns the pace in force as text (``pace 612/min (auto, limit hit at 640/min)``).
    """

    def __init__(self, log: Any, vendor: str, what: str, total: int, waited: Any = None, pace: Any = None) -> None:
        self.log = log
        self.vendor = vendor
        self.what = what
        self.total = total
        self.waited = waited or (lambda: 0.0)
        self.pace = pace
        self.started = time.monotonic()
        self.last = self.started
        self.items = 0

    def request_done(self, summary: RunSummary, outcomes: list[Outcome]) -> None:
        """Count one recorded request; log a progress line when one is due."""
        self.items += len(outcomes)
        _metrics(self.vendor, outcomes)
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.line(summary)

    def line(self, summary: RunSummary, *, final: bool = False) -> None:
        """Log where the run stands: done/total, outcomes so far, rate, elapsed, ETA, vendor waits."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = summary.requests * 60.0 / elapsed
        left = self.total - self.items
        eta = left * elapsed / self.items if self.items and left > 0 else 0.0
        self.log.info(
            "%s %s: %d/%d %s sent in %d request(s) — %d succeeded (%d reconciled), %d failed — "
            "%.0f req/min, %.0f s elapsed%s, %.0f s waited on vendor rate-limit windows%s",
            self.vendor,
            "done" if final else "progress",
            self.items,
            self.total,
            self.what,
            summary.requests,
            summary.succeeded,
            summary.reconciled,
            summary.failed_this_run,
            rate,
            elapsed,
            "" if final else f", ETA {eta:.0f} s",
            self.waited(),
            f"; {self.pace()}" if self.pace is not None else "",
        )


def _metrics(vendor: str, outcomes: list[Outcome]) -> None:
    """One answered request's counters."""
    ok = sum(o.ok for o in outcomes)
    reconciled = sum(o.reconciled for o in outcomes)
    metrics.incr(vendor, "requests")
    metrics.incr(vendor, "items.succeeded", ok - reconciled)
    metrics.incr(vendor, "items.reconciled", reconciled)
    metrics.incr(vendor, "items.failed", len(outcomes) - ok)
    metrics.incr(vendor, "items.failed_transient", sum(o.transient for o in outcomes))
