"""Send one planned request and read its answer per item; reconcile "already reversed" answers.

Runs in the sender threads of :mod:`._runner`. The intent goes to the ledger right before the
request leaves (never while it waits for the pace), and an answer only counts for an item when the
vendor named that item: anything else leaves the request's items failed (transient) or in doubt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow_provider_loyalty import _metrics as metrics
from airflow_provider_loyalty.items import Item
from airflow_provider_loyalty.operators._run_claims import ClaimLost
from airflow_provider_loyalty.operators._run_ledger import IntentNotRecorded, LedgerDown
from airflow_provider_loyalty.operators._runner import RunAborted, run_requests
from airflow_provider_loyalty.outcomes import (
    NO_ANSWER,
    UNKNOWN,
    AlreadyReversed,
    FailureKind,
    Outcome,
    Settled,
    VendorResult,
    reconcile,
)

if TYPE_CHECKING:
    from airflow_provider_loyalty.operators._run_ledger import RunLedger
    from airflow_provider_loyalty.operators._summary import Progress, RunSummary

log = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass(frozen=True)
class Sender(Generic[P]):
    """How one run sends its planned requests.

    :param vendor: the vendor (log lines and metrics).
    :param items_of: the items one planned request carries.
    :param call: sends one request through the hook; the hook calls ``before_send`` right before
        the request leaves.
    :param already_reversed: the refusals that mean "already reversed".
    :param books: the run's ledger, or ``None`` without one.
    """

    vendor: str
    items_of: Callable[[P], Sequence[Item]]
    call: Callable[[P, Callable[[], object] | None], VendorResult]
    already_reversed: AlreadyReversed
    books: RunLedger | None

    def failed(self, request: P, code: str, message: str, kind: FailureKind) -> list[Outcome]:
        """A failed outcome for every item of ``request`` (the request as a whole failed)."""
        return [Outcome.failed(item, code, message, kind) for item in self.items_of(request)]

    def attempt(
        self, request: P, before_send: Callable[[], object] | None
    ) -> tuple[VendorResult | None, list[Outcome]]:
        """Run the hook call of ``request``; return ``(result, [])``, or ``(None, failed items)``.

        Vendor errors of the request as a whole fail its items (transiently, or ``rejected``: never
        settled); errors no further request can escape — refused credentials, a bad URL, a rate
        limit that outlasted the retry budget — stop the run (:class:`RunAborted`).
        """
        from airflow_provider_loyalty.hooks.errors import VendorError, VendorRateLimitError, VendorResponseError

        try:
            return self.call(request, before_send), []
        except VendorError as exc:
            if exc.may_have_been_applied:
                # An attempt went unanswered: whatever the last answer, the vendor may have applied
                # the items. They stay in doubt (a later try reconciles them), never refused or unsent.
                doubt = self.failed(
                    request, NO_ANSWER, f"{exc.message} (the vendor may have applied it)", FailureKind.TRANSIENT
                )
                if exc.fatal or isinstance(exc, VendorRateLimitError):
                    raise RunAborted(exc, doubt) from exc
                return None, doubt
            if exc.token_exchange:
                # Getting or renewing the credential failed: the reversal request was refused or never
                # left, so its items were not applied. A token answer decides nothing about them.
                unsent = self.failed(request, "not_sent", f"not applied: {exc.message}", FailureKind.TRANSIENT)
                if exc.fatal or isinstance(exc, VendorRateLimitError):
                    raise RunAborted(exc, unsent) from exc
                return None, unsent
            if isinstance(exc, VendorRateLimitError):
                raise RunAborted(exc) from exc  # every further request would meet the same limit
            code = exc.code or (f"http_{exc.http_status}" if exc.http_status else "unavailable")
            if exc.fatal:  # this request was refused as a whole; the ones after it are not sent
                refused = self.failed(request, code, exc.message, FailureKind.REJECTED)
                raise RunAborted(exc, refused if exc.http_status else None) from exc
            if isinstance(exc, VendorResponseError) and exc.http_status is not None and exc.http_status < 300:
                # A 2xx whose body we cannot read (cut off, not JSON): processed, outcome unknown.
                return None, self.failed(request, NO_ANSWER, exc.message, FailureKind.TRANSIENT)
            kind = FailureKind.TRANSIENT if exc.transient else FailureKind.REJECTED
            return None, self.failed(request, code, exc.message, kind)

    def send(self, request: P, before_send: Callable[[], object] | None) -> tuple[list[Outcome], bool]:
        """Send one planned request; return one outcome per item, and whether it was a resend.

        The flag is true when an earlier attempt of this very request may have been applied (the
        hook resent it after a timeout or 5xx): "already reversed" answers then reconcile.
        """
        result, failed = self.attempt(request, before_send)
        if result is None:
            return failed, False
        items = self.items_of(request)
        outcomes = result.outcomes
        if len(outcomes) != len(items) or any(o.item != item for o, item in zip(outcomes, items, strict=True)):
            # The hooks answer per item, in order; anything else cannot be attributed to an item.
            return self.failed(request, UNKNOWN, "answer not attributable per item", FailureKind.TRANSIENT), False
        return outcomes, result.after_ambiguous_attempt

    def __call__(self, request: P) -> list[Outcome]:
        """Send (in a sender thread); reconcile the "already reversed" answers of items in doubt.

        With a ledger, the request's items are recorded as ``sending`` right before the request
        leaves — after pacing, so that an intent means "sent, or about to be" and never "waiting
        in a queue" — and once for all its resends. If that cannot be written, nothing is sent.

        An unexpected error once the request has left (an answer no reader foresaw, a bug) leaves
        its items ``unknown`` — in doubt, reconciled by a later try — never ``not_sent``: the vendor
        may have applied them.
        """
        books = self.books
        sent = False

        def before_send() -> None:
            nonlocal sent
            if books is not None:
                books.before_send(self.items_of(request), first=not sent)
            sent = True

        started = time.monotonic()
        try:
            outcomes, resent = self.send(request, before_send)
        except IntentNotRecorded as exc:
            raise RunAborted(exc.cause) from exc  # not sent; nothing more will be
        except ClaimLost as exc:
            return exc.outcomes  # not sent: another attempt holds (some of) its items
        except RunAborted:
            raise
        except Exception as exc:
            if not sent:
                raise  # never left: the runner reports its items as not sent
            log.exception("Unexpected error after a %s request was sent; its items stay in doubt", self.vendor)
            # the type only: an unforeseen error's text may quote what was being sent (a header
            # with a token); the traceback above goes to the task log, whose masker knows the secrets
            message = f"{type(exc).__name__} after the request was handed to the HTTP client (see the task log)"
            outcomes, resent = self.failed(request, UNKNOWN, message, FailureKind.TRANSIENT), False
        metrics.timing(self.vendor, "request_seconds", time.monotonic() - started)
        return self.reconciled(request, outcomes, resent=resent)

    def reconciled(self, request: P, outcomes: list[Outcome], *, resent: bool) -> list[Outcome]:
        """``outcomes`` with "already reversed" refusals of items an attempt of ours had in doubt as succeeded."""
        books = self.books
        known: dict[str, Settled] = books.in_doubt if books is not None else {}
        if resent:
            in_doubt = [item.key for item in self.items_of(request)]
            where = "an earlier attempt of this request in this try"
        else:
            earlier = {item.key: known[item.key] for item in self.items_of(request) if item.key in known}
            in_doubt, where = list(earlier), _runs("run", earlier)
        outcomes = reconcile(outcomes, in_doubt, self.already_reversed, where)
        # "already reversed" of an item no attempt of ours had in doubt: another run may be sending it
        late = [
            o.key
            for o in outcomes
            if not o.ok and o.kind is FailureKind.PERMANENT and self.already_reversed.matches(o.code, o.message)
        ]
        if late and books is not None:
            elsewhere = books.applied_elsewhere(late)
            outcomes = reconcile(outcomes, elsewhere, self.already_reversed, _runs("concurrent run", elsewhere))
        return outcomes


def send_planned(
    sender: Sender[P],
    requests: Iterable[P],
    describe: Callable[[P], str],
    summary: RunSummary,
    progress: Progress,
    max_concurrency: int,
    log: logging.Logger | Any,
) -> RunAborted | None:
    """Send ``requests`` on the runner; record each answer (the ledger first), count it and log it.

    :return: what stopped the run, if anything did (the caller raises it once the summary is out).
    """
    books = sender.books
    answered = 0

    def on_results(request: P, outcomes: list[Outcome]) -> None:
        nonlocal answered
        answered += 1
        if books is not None:  # recorded before it is counted or logged as done
            books.record(outcomes)
        summary.requests += 1
        ok, bad = summary.add(outcomes)
        log.debug("%s request %d (%s): %d succeeded, %d failed", sender.vendor, answered, describe(request), ok, bad)
        progress.request_done(summary, outcomes)
        if books is not None and books.down is not None:
            raise LedgerDown("the ledger is down")  # stop sending; in-flight answers still land in the spool

    abort = run_requests(
        requests,
        sender,
        on_results,
        max_concurrency=max_concurrency,
        unsent=lambda request, cause: sender.failed(
            request, "not_sent", f"not sent: {type(cause).__name__}", FailureKind.TRANSIENT
        ),
        on_abort=books.stop_claiming if books is not None else None,
    )
    progress.line(summary, final=True)
    if summary.failed_this_run:
        log.info("%s failures this run by code: %s", sender.vendor, dict(summary.codes.most_common()))
    return abort


def _runs(label: str, seen: Mapping[str, Settled]) -> str:
    """``run a, b, c`` naming the (first three) runs behind ``seen``, for a reconciled item's message."""
    runs = sorted({str(s.run_id) for s in seen.values()})
    return f"{label} {', '.join(runs[:3])}" if runs else ""
