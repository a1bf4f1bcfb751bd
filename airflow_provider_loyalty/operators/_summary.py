"""What one run did, as counts: the summary XCom, the failure message, progress lines and metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_loyalty import _metrics as metrics
from airflow_provider_loyalty.items import InvalidRow
from airflow_provider_loyalty.outcomes import CLAIMED_ELSEWHERE, SUPERSEDED, FailureKind, Outcome

#: Failures (and, in a dry run, planned requests) listed in the summary XCom; the ledger holds all.
MAX_LISTED = 100
#: Failed items named in a task's failure message and log.
MAX_NAMED = 20
#: Seconds between INFO progress lines.
PROGRESS_EVERY = 10.0
#: Distinct failure causes (code and message) told apart in a failure message; the rest are "other".
MAX_CAUSES = 50
#: Items named per cause in a failure message.
NAMED_PER_CAUSE = 3
#: ``code`` of the requests a stopped run never sent.
NOT_SENT = "not_sent"


def describe_item(failure: dict[str, Any]) -> str:
    """``unique_id=4711 (reference ORD-1): Transaction not found [code refused]`` — one failed item for a message.

    The code is set apart in brackets so that it never runs into the message ("refused refused earlier").
    """
    return f"{_ident(failure)}: {failure.get('message') or '–'} [code {failure.get('code') or '–'}]"


def _ident(failure: dict[str, Any]) -> str:
    """``unique_id=4711`` (with ``(reference ORD-1)`` when it has one)."""
    fields = " ".join(f"{k}={v}" for k, v in failure.items() if k not in ("code", "message", "reference"))
    reference = failure.get("reference")
    return f"{fields} (reference {reference})" if reference else fields


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class Cause:
    """One failure cause of a run (a code and a message): how many items and requests, the first few named."""

    code: str
    message: str
    items: int = 0
    requests: int = 0
    named: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``16 items in 16 requests: connection refused to 127.0.0.1:9 [code unavailable]: unique_id=1, …``."""
        count = _plural(self.items, "item")
        if self.requests and self.requests != 1 and self.requests != self.items:
            count += f" in {_plural(self.requests, 'request')}"
        elif self.requests and self.requests == self.items and self.items > 1:
            count = _plural(self.requests, "request")
        more = f", and {self.items - len(self.named)} more" if self.items > len(self.named) else ""
        return f"{count}: {self.message or '–'} [code {self.code or '–'}]: {', '.join(self.named)}{more}"


def top_codes(codes: Counter[str], limit: int = 8) -> str:
    """``729 x3, 731 x1``."""
    return ", ".join(f"{code} x{n}" for code, n in codes.most_common(limit))


@dataclass
class RunSummary:
    """Counts of one run; :meth:`as_xcom` is the task's small result.

    ``requested`` counts distinct items (duplicate input rows are removed and counted apart), so
    ``succeeded + failed + skipped + claimed_elsewhere == requested`` always holds (``planned``
    replaces the first two in a dry run). ``reconciled`` items are among ``succeeded``: resent after
    an attempt that may have applied them, and answered "already reversed". ``done_earlier_try``
    items are among ``skipped``: an earlier try of this DAG run succeeded them, so they count in its
    ratio. ``claimed_elsewhere`` items were under another attempt's live claim (or taken over from
    this one while it paused): not sent by this attempt, left to their owner, neither succeeded nor
    failed here, and not in the ratio (``claimed_by`` names the owners).
    """

    #: the vendor's name: the page counts a task's skipped items by it, whatever the operator's class
    vendor: str = ""
    requested: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    requests: int = 0
    dry_run: bool = False
    failed_transient: int = 0
    failed_earlier: int = 0
    invalid_earlier: int = 0
    done_earlier_try: int = 0
    reconciled: int = 0
    invalid: int = 0
    #: items outside the approved plan: recorded, not sent, left for a later plan (not failures of this run)
    not_approved: int = 0
    #: the receipt the items were sent under (``operators.approval.Receipt.as_xcom``)
    approval: dict[str, Any] | None = None
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
    #: this run's vendor failures grouped by cause (code, message), in order of first appearance
    causes: dict[tuple[str, str], Cause] = field(default_factory=dict)
    #: this run's invalid input rows, named (the first :data:`MAX_NAMED`)
    invalid_named: list[str] = field(default_factory=list)
    #: items of this run the vendor refused for good (``permanent``), and those never sent
    refused: int = 0
    not_sent: int = 0
    #: items left to another attempt's claim, and how many per owner
    claimed_elsewhere: int = 0
    claimed_by: Counter[str] = field(default_factory=Counter)

    def _failure(self, outcome: Outcome) -> dict[str, Any]:
        """The ``failures`` entry of an outcome, with the item's reference when its row carried one."""
        failure = outcome.as_failure()
        reference = self.references.get(outcome.key)
        if reference is not None:
            failure["reference"] = reference
        return failure

    def add(self, outcomes: Iterable[Outcome], *, request: bool = True) -> tuple[int, int]:
        """Count this attempt's ``outcomes`` (one request's, unless ``request`` is false); return ``(ok, failed)``."""
        ok = bad = 0
        seen: set[tuple[str, str]] = set()
        for outcome in outcomes:
            if outcome.ok:
                ok += 1
                self.reconciled += outcome.reconciled
                continue
            if outcome.code in (CLAIMED_ELSEWHERE, SUPERSEDED):
                self.add_claimed_elsewhere(["another attempt (took the claim over)"])
                continue
            bad += 1
            self.failed_transient += outcome.transient
            self.refused += outcome.kind is FailureKind.PERMANENT
            self.not_sent += outcome.code == NOT_SENT
            failure = self._failure(outcome)
            self.codes[str(outcome.code)] += 1
            if len(self.named) < MAX_NAMED:
                self.named.append(failure)
            if len(self.failures) < MAX_LISTED:
                self.failures.append(failure)
            cause = self._cause(str(outcome.code or ""), outcome.message or "")
            cause.items += 1
            if request and (cause.code, cause.message) not in seen:
                seen.add((cause.code, cause.message))
                cause.requests += 1
            if len(cause.named) < NAMED_PER_CAUSE:
                cause.named.append(_ident(failure))
        self.succeeded += ok
        self.failed += bad
        return ok, bad

    def add_claimed_elsewhere(self, owners: Iterable[str]) -> None:
        """Count items left to another attempt's claim, one per owner label in ``owners``."""
        for owner in owners:
            self.claimed_elsewhere += 1
            self.claimed_by[owner] += 1

    def _cause(self, code: str, message: str) -> Cause:
        key = (code, message)
        cause = self.causes.get(key)
        if cause is None:
            if len(self.causes) >= MAX_CAUSES:  # a message per item (ids in it): bounded, the rest lumped
                key = (code, "(other messages)")
                cause = self.causes.get(key)
            if cause is None:
                cause = self.causes[key] = Cause(*key)
        return cause

    def add_invalid(self, rows: list[InvalidRow], count: int, known: Mapping[str, bool] | None = None) -> None:
        """Count ``count`` input rows skipped as invalid (``on_invalid="skip"``); the first are named.

        ``known``: the values the ledger already holds as invalid, ``{key: recorded by an earlier DAG
        run}``. An earlier run's junk was judged then: counted apart (``invalid_earlier``, among
        ``failed_earlier``), like its refusals; the rest are this run's failures.
        """
        known = known or {}
        self.invalid += count
        self.failed += count
        for row in rows:
            failure = {"row": row.number, "value": row.shown, "code": "invalid", "message": row.reason}
            if row.reference is not None:
                failure["reference"] = row.reference
            if known.get(row.key):
                self.invalid_earlier += 1
                self.failed_earlier += 1
            else:
                self.codes["invalid"] += 1
                if len(self.invalid_named) < MAX_NAMED:
                    self.invalid_named.append(f"row {row.number}: {row.shown} ({row.reason})")
            if len(self.failures) < MAX_LISTED:
                self.failures.append(failure)
        if count > len(rows):  # beyond the rows kept: not looked up, this run's
            self.codes["invalid"] += count - len(rows)

    def add_not_approved(self, outcomes: list[Outcome]) -> None:
        """Count items refused as outside the approved plan; they are named, and judged by no ratio."""
        self.failed += len(outcomes)
        self.not_approved += len(outcomes)
        for outcome in outcomes:
            if len(self.failures) < MAX_LISTED:
                self.failures.append(self._failure(outcome))

    def add_refused(self, outcomes: Iterable[Outcome], *, earlier_run: bool) -> None:
        """Count refusals found in the ledger (not resent); ``earlier_run``: recorded by another DAG run."""
        for outcome in outcomes:
            if not earlier_run:  # an earlier try of this run: it counts in this run's decision
                self.add([outcome], request=False)
                continue
            self.failed += 1
            self.failed_earlier += 1
            self.earlier_codes[str(outcome.code)] += 1
            if len(self.failures) < MAX_LISTED:
                self.failures.append(self._failure(outcome))

    @property
    def failed_this_run(self) -> int:
        """Failures decided by this run (refusals of earlier runs were judged then)."""
        return self.failed - self.failed_earlier - self.not_approved

    @property
    def invalid_this_run(self) -> int:
        """Invalid input rows judged by this run (junk an earlier run recorded was judged then)."""
        return self.invalid - self.invalid_earlier

    @property
    def items_this_run(self) -> int:
        """The items this DAG run answers for, over all its tries: the ratio's denominator.

        Every requested item but those an earlier DAG run settled (skipped as done, or refused
        then) and those left to another attempt's claim: this try's items, and what earlier tries of this
        run settled — their successes (``done_earlier_try``) as well as their refusals, which
        :attr:`failed_this_run` counts. Items outside an approved plan (``not_approved``) were never
        this run's to send.
        """
        return (
            self.requested
            - self.skipped
            + self.done_earlier_try
            - self.failed_earlier
            - self.claimed_elsewhere
            - self.not_approved
        )

    def as_xcom(self, **extra: Any) -> dict[str, Any]:
        """Return the JSON-able summary pushed to XCom."""
        return {
            "vendor": self.vendor,
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
            "invalid_earlier": self.invalid_earlier,
            "failure_codes": dict(self.codes),
            "failures": list(self.failures),
            "claimed_elsewhere": self.claimed_elsewhere,
            "claimed_by": dict(self.claimed_by.most_common(MAX_NAMED)),
            **({"pace": self.pace} if self.pace is not None else {}),
            **({"not_approved": self.not_approved, "approval": self.approval} if self.approval is not None else {}),
            **extra,
        }

    def failure_report(self) -> str:
        """The failures of this run: identical causes grouped (``16 requests: connection refused to …``), invalid input apart.

        ``codes: 729 x3, invalid x2. Vendor answers: 3 items: Earn already redeemed [code 729]:
        customer_id=7 promotion_id=P earn_id=E-1, …. Invalid input (never sent): 2 rows: row 2: 'x'
        (not an integer); …``
        """
        parts = [f"codes: {top_codes(self.codes)}"]
        if self.causes:
            causes = sorted(self.causes.values(), key=lambda c: -c.items)
            parts.append("Vendor answers: " + "; ".join(c.line() for c in causes))
        invalid = self.invalid_this_run
        if invalid:
            named = "; ".join(self.invalid_named)
            more = (
                f"; and {invalid - len(self.invalid_named)} more (see the ledger)"
                if invalid > len(self.invalid_named)
                else ""
            )
            parts.append(f"Invalid input (never sent): {_plural(invalid, 'row')}: {named}{more}")
        return ". ".join(parts)

    def accounting(self, what: str) -> str:
        """``100 unique_ids planned: 80 succeeded (2 reconciled), 3 refused, 2 invalid, 5 failed (transient), 10 not sent``.

        The terms add up to the planned items (this run's: neither skipped as done nor refused earlier).
        """
        planned = self.requested - self.skipped - self.failed_earlier
        transient = self.failed_this_run - self.refused - self.invalid_this_run - self.not_sent
        elsewhere = f", {self.claimed_elsewhere} left to another attempt's claim" if self.claimed_elsewhere else ""
        return (
            f"{planned} {what} planned: {self.succeeded} succeeded ({self.reconciled} reconciled), "
            f"{self.refused} refused, {self.invalid_this_run} invalid, {transient} failed (no or unclear answer, "
            f"or the request refused as a whole), {self.not_sent} not sent{elsewhere}"
        )

    def earlier_report(self) -> str:
        """Refusals and invalid input recorded by earlier runs, apart from this run's."""
        parts = []
        refused = self.failed_earlier - self.invalid_earlier
        if refused:
            parts.append(f"{refused} refused in earlier runs, not resent (codes: {top_codes(self.earlier_codes)})")
        if self.invalid_earlier:
            parts.append(f"{self.invalid_earlier} invalid input row(s) already recorded as invalid by earlier runs")
        return "; ".join(parts)


class Progress:
    """INFO progress lines about every :data:`PROGRESS_EVERY` seconds, and Airflow metrics per request.

    :param log: the task's logger (``self.log`` of the operator).
    :param vendor: the vendor's name (metric names and lines).
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
        #: items handled (answered or not); those the vendor answered about (done, refused, request refused)
        self.items = 0
        self.answered = 0

    def request_done(self, summary: RunSummary, outcomes: list[Outcome]) -> None:
        """Count one recorded request; log a progress line when one is due."""
        self.items += len(outcomes)
        self.answered += sum(o.ok or o.kind in (FailureKind.PERMANENT, FailureKind.REJECTED) for o in outcomes)
        _metrics(self.vendor, outcomes)
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.line(summary)

    def line(self, summary: RunSummary, *, final: bool = False) -> None:
        """Log where the run stands: what the vendor answered of the total, outcomes so far, rate, ETA, waits.

        Only what the vendor answered about counts as answered: with the vendor down, the line says
        ``0/100 answered``, never "100/100 sent". The outcome counts add up to the items handled.
        """
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = summary.requests * 60.0 / elapsed
        left = self.total - self.items
        eta = left * elapsed / self.items if self.items and left > 0 else 0.0
        refused = summary.refused
        not_sent = summary.not_sent
        unanswered = summary.failed_this_run - summary.invalid - refused - not_sent
        self.log.info(
            "%s %s: %d/%d %s answered by the vendor in %d request(s) — %d succeeded (%d reconciled), "
            "%d refused, %d failed without a clear answer or with the request refused, %d not sent — "
            "%.0f req/min, %.0f s elapsed%s, %.0f s waited on vendor rate-limit windows%s",
            self.vendor,
            "done" if final else "progress",
            self.answered,
            self.total,
            self.what,
            summary.requests,
            summary.succeeded,
            summary.reconciled,
            refused,
            unanswered,
            not_sent,
            rate,
            elapsed,
            "" if final else f", ETA {eta:.0f} s",
            self.waited(),
            f"; {self.pace()}" if self.pace is not None else "",
        )


def push_summary(context: Any, summary: RunSummary, log: Any) -> None:
    """Push the summary before the task raises, so downstream ``all_done`` tasks can read it."""
    ti = context.get("ti") if context else None
    if ti is not None:
        try:
            ti.xcom_push(key="return_value", value=summary.as_xcom())
        except Exception:  # never mask the real failure
            log.warning("Could not push the summary XCom before failing", exc_info=True)


def _metrics(vendor: str, outcomes: list[Outcome]) -> None:
    """One answered request's counters."""
    ok = sum(o.ok for o in outcomes)
    reconciled = sum(o.reconciled for o in outcomes)
    metrics.incr(vendor, "requests")
    metrics.incr(vendor, "items.succeeded", ok - reconciled)
    metrics.incr(vendor, "items.reconciled", reconciled)
    metrics.incr(vendor, "items.failed", len(outcomes) - ok)
    metrics.incr(vendor, "items.failed_transient", sum(o.transient for o in outcomes))
