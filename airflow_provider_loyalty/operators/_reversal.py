"""The one path every reversal takes: parse -> skip done -> guard -> plan -> send -> record -> summarise -> decide.

Vendor operators supply their parser, planner and the hook call of one request; everything else
lives here once: bounded concurrency (:mod:`._runner`), the ledger's part — spool replay, skipping
settled items, intents before sends, outcomes before reports (:mod:`._run_ledger`) —,
reconciliation of "already reversed" answers, progress and the summary (:mod:`._summary`), and the
fail/retry decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_loyalty import _metrics as metrics
from airflow_provider_loyalty.items import Item
from airflow_provider_loyalty.operators import _settings
from airflow_provider_loyalty.operators._inputs import InputErrors
from airflow_provider_loyalty.operators._run_ledger import IntentNotRecorded, LedgerDown, RunLedger
from airflow_provider_loyalty.operators._runner import RunAborted, run_requests
from airflow_provider_loyalty.operators._summary import MAX_LISTED, Progress, RunSummary
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
    from airflow.sdk import Context

    from airflow_provider_loyalty.ledger import ReversalLedger

log = logging.getLogger(__name__)

P = TypeVar("P")

__all__ = ["ReversalOperator", "RunAborted", "RunSummary", "run_requests"]


class ReversalOperator(BaseOperator, Generic[P]):
    """Shared base of the vendor operators; subclasses supply parsing, planning and sending.

    :param dry_run: plan and log only; no vendor call at all, not even for a token.
    :param ledger_conn_id: SQL connection (any common-sql ``DbApiHook``) of the outcomes ledger;
        items it records as done are skipped, every item is marked as being sent before its request
        leaves, and every outcome is recorded as it arrives.
    :param ledger_table: ledger table name.
    :param max_failed_ratio: tolerated share of failed items (of those sent) before the task fails.
    :param max_requests_per_minute: request rate of this task (``None``: no limit), or ``"auto"``:
        find the vendor's limit and hold just under it, starting from what earlier runs of the
        connection learned (Variable ``loyalty_rate__<vendor>__<conn_id>``).
    :param max_requests_per_minute_cap: (templated) with ``"auto"``, never pace above this.
    :param max_concurrency: requests in flight at once.
    :param max_items: (templated) refuse to send more than this many items in one run (after
        de-duplication and the ledger's skip): the task fails before any vendor call. ``None``: no limit.
    :param already_reversed: which refusals of a resent item that an earlier attempt may have
        applied mean "already reversed" (recorded as succeeded, code ``already_reversed``): ``None``
        for the vendor's defaults, ``False`` for never, or ``{"codes": [...], "messages": [regex...]}``.
    :param hook_params: extra keyword arguments of the vendor hook (``timeout``, ``retry_policy``...).
    :param retry_refused: resend items the ledger records as refused for good (by default they are
        reported as failed again without a request: the vendor would refuse them the same way).
    :param on_invalid: (templated) ``"fail"`` (default): any invalid input row fails the task before
        anything is sent; ``"skip"``: invalid rows are reported (count and first rows), recorded in
        the ledger with status ``invalid``, counted as failed (``max_failed_ratio`` applies), and the
        valid rows go through.
    """

    template_fields: Sequence[str] = (
        "dry_run",
        "max_failed_ratio",
        "max_requests_per_minute",
        "max_requests_per_minute_cap",
        "max_items",
        "on_invalid",
        "ledger_conn_id",
    )
    vendor: str = ""
    what: str = "items"
    #: the vendor's "already reversed" answers (subclasses set theirs)
    default_already_reversed: AlreadyReversed = AlreadyReversed()

    def __init__(
        self,
        *,
        dry_run: bool = False,
        ledger_conn_id: str | None = None,
        ledger_table: str = "loyalty_reversal_ledger",
        max_failed_ratio: float = 0.0,
        max_requests_per_minute: float | str | None = None,
        max_requests_per_minute_cap: float | None = None,
        max_concurrency: int = 8,
        max_items: int | None = None,
        already_reversed: Any = None,
        hook_params: dict[str, Any] | None = None,
        retry_refused: bool = False,
        on_invalid: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_provider_loyalty.ledger.schema import check_table_name

        self.hook_params = dict(hook_params or {})
        self.retry_refused = retry_refused
        self.ledger_table = check_table_name(ledger_table)
        self.already_reversed = AlreadyReversed.coerce(already_reversed, self.default_already_reversed)
        # Settings may be Jinja strings (``"{{ params.dry_run }}"``): checked now when they are
        # values, and again after rendering.
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.ledger_conn_id = ledger_conn_id
        self.max_failed_ratio = max_failed_ratio
        self.max_requests_per_minute = max_requests_per_minute
        self.max_requests_per_minute_cap = max_requests_per_minute_cap
        self.max_concurrency = max_concurrency
        self.max_items = max_items
        self.on_invalid = on_invalid
        self._settings(lenient=True)
        self._invalid: InputErrors | None = None
        self._books: RunLedger | None = None

    def _settings(self, *, lenient: bool = False) -> None:
        """Coerce and check the rendered settings; ``lenient`` lets unrendered templates through."""
        checks: dict[str, Callable[[Any, str], Any]] = {
            "dry_run": _settings.as_bool,
            "max_failed_ratio": _settings.ratio,
            "max_requests_per_minute": _settings.rate_or_auto,
            "max_requests_per_minute_cap": _settings.positive_or_none,
            "max_concurrency": _settings.count,
            "max_items": lambda v, n: _settings.count(v, n, minimum=0, optional=True, blank_is_unset=False),
            "on_invalid": _settings.on_invalid,
        }
        for name, check in checks.items():
            value = getattr(self, name)
            if not (lenient and _settings.templated(value)):
                setattr(self, name, check(value, name))

    # ---------------------------------------------------------------- what subclasses provide
    def parse(self) -> tuple[list[Any], int, int]:
        """Validate the input; return ``(items, input_rows, duplicates_removed)``."""
        raise NotImplementedError

    def plan(self, items: list[Any]) -> Iterator[P]:
        """Yield the requests that send ``items`` (vendor batching rules)."""
        raise NotImplementedError

    def items_of(self, request: P) -> Sequence[Item]:
        """The items one planned request carries."""
        raise NotImplementedError

    def call(self, request: P, before_send: Callable[[], object] | None) -> VendorResult:
        """Send one planned request through the hook; return its result (one outcome per item).

        ``before_send`` goes to the hook, which calls it right before the request leaves.
        """
        raise NotImplementedError

    def describe(self, request: P) -> str:
        """Return a short description of a request for logs (counts, no payloads)."""
        raise NotImplementedError

    @property
    def hook(self) -> Any:
        """The vendor hook (subclasses return theirs)."""
        raise NotImplementedError

    # ------------------------------------------------------------------- shared vendor calling
    def call_vendor(self, request: P, call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[Outcome]]:
        """Run one hook call for ``request``; return ``(result, [])``, or ``(None, failed items)``.

        Vendor errors of the request as a whole fail its items (transiently, or ``rejected``: never
        settled); errors no further request can escape — refused credentials, a bad URL, a rate
        limit that outlasted the retry budget — stop the run (:class:`RunAborted`).
        """
        from airflow_provider_loyalty.hooks.errors import VendorError, VendorRateLimitError, VendorResponseError

        try:
            return call(*args, **kwargs), []
        except VendorError as exc:
            if exc.may_have_been_applied:
                # An attempt went unanswered: whatever the last answer, the vendor may have applied
                # the items. They stay in doubt (a later try reconciles them), never refused or unsent.
                doubt = self.failed_request(
                    request, NO_ANSWER, f"{exc.message} (the vendor may have applied it)", FailureKind.TRANSIENT
                )
                if exc.fatal or isinstance(exc, VendorRateLimitError):
                    raise RunAborted(exc, doubt) from exc
                return None, doubt
            if isinstance(exc, VendorRateLimitError):
                raise RunAborted(exc) from exc  # every further request would meet the same limit
            code = exc.code or (f"http_{exc.http_status}" if exc.http_status else "unavailable")
            if exc.fatal:  # this request was refused as a whole; the ones after it are not sent
                refused = self.failed_request(request, code, exc.message, FailureKind.REJECTED)
                raise RunAborted(exc, refused if exc.http_status else None) from exc
            if isinstance(exc, VendorResponseError) and exc.http_status is not None and exc.http_status < 300:
                # A 2xx whose body we cannot read (cut off, not JSON): processed, outcome unknown.
                return None, self.failed_request(request, NO_ANSWER, exc.message, FailureKind.TRANSIENT)
            kind = FailureKind.TRANSIENT if exc.transient else FailureKind.REJECTED
            return None, self.failed_request(request, code, exc.message, kind)

    def failed_request(self, request: P, code: str, message: str, kind: FailureKind) -> list[Outcome]:
        """A failed outcome for every item of ``request`` (the request as a whole failed)."""
        return [Outcome.failed(item, code, message, kind) for item in self.items_of(request)]

    def send(self, request: P, before_send: Callable[[], object] | None) -> tuple[list[Outcome], bool]:
        """Send one planned request; return one outcome per item, and whether it was a resend.

        The flag is true when an earlier attempt of this very request may have been applied (the
        hook resent it after a timeout or 5xx): "already reversed" answers then reconcile.
        """
        result, failed = self.call_vendor(request, self.call, request, before_send)
        if result is None:
            return failed, False
        items = self.items_of(request)
        outcomes = result.outcomes
        if len(outcomes) != len(items) or any(o.item != item for o, item in zip(outcomes, items, strict=True)):
            # The hooks answer per item, in order; anything else cannot be attributed to an item.
            return self.failed_request(
                request, UNKNOWN, "answer not attributable per item", FailureKind.TRANSIENT
            ), False
        return outcomes, result.after_ambiguous_attempt

    def _send_one(self, request: P) -> list[Outcome]:
        """Send (in a sender thread); reconcile the "already reversed" answers of items in doubt.

        With a ledger, the request's items are recorded as ``sending`` right before the request
        leaves — after pacing, so that an intent means "sent, or about to be" and never "waiting
        in a queue" — and once for all its resends. If that cannot be written, nothing is sent.

        An unexpected error once the request has left (an answer no reader foresaw, a bug) leaves
        its items ``unknown`` — in doubt, reconciled by a later try — never ``not_sent``: the vendor
        may have applied them.
        """
        books = self._books
        sent = False

        def before_send() -> None:
            nonlocal sent
            if not sent and books is not None:
                books.intent(self.items_of(request))
            sent = True

        started = time.monotonic()
        try:
            outcomes, resent = self.send(request, before_send)
        except IntentNotRecorded as exc:
            raise RunAborted(exc.cause) from exc  # not sent; nothing more will be
        except RunAborted:
            raise
        except Exception as exc:
            if not sent:
                raise  # never left: the runner reports its items as not sent
            log.exception("Unexpected error after a %s request was sent; its items stay in doubt", self.vendor)
            # the type only: an unforeseen error's text may quote what was being sent (a header
            # with a token); the traceback above goes to the task log, whose masker knows the secrets
            message = f"{type(exc).__name__} after the request was handed to the HTTP client (see the task log)"
            outcomes, resent = self.failed_request(request, UNKNOWN, message, FailureKind.TRANSIENT), False
        metrics.timing(self.vendor, "request_seconds", time.monotonic() - started)
        maybe_applied: dict[str, Settled] = books.maybe_applied if books is not None else {}
        if resent:
            attempted = [item.key for item in self.items_of(request)]
            where = "an earlier attempt of this request in this try"
        else:
            earlier = {
                item.key: maybe_applied[item.key] for item in self.items_of(request) if item.key in maybe_applied
            }
            attempted, where = list(earlier), _runs("run", earlier)
        outcomes = reconcile(outcomes, attempted, self.already_reversed, where)
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

    def close_hook(self) -> None:
        """Release the hook's pooled connections, if the hook was created."""
        if "hook" in self.__dict__:
            self.__dict__["hook"].close()

    # ---------------------------------------------------------------------- the shared path
    @cached_property
    def ledger(self) -> ReversalLedger | None:
        """The outcomes ledger, when ``ledger_conn_id`` is set."""
        if not self.ledger_conn_id:
            return None
        from airflow_provider_loyalty.ledger import ReversalLedger

        return ReversalLedger(self.ledger_conn_id, table=self.ledger_table, read_only=bool(self.dry_run))

    def execute(self, context: Context) -> dict[str, Any]:
        """Reverse the input's items at the vendor; return the summary dict."""
        try:
            self._settings()
        except ValueError as exc:
            raise AirflowFailException(f"{type(self).__name__}: {exc}") from None
        self._invalid = InputErrors(self.what, type(self).__name__, skip=True) if self.on_invalid == "skip" else None
        items, rows, duplicates = self.parse()
        requested = rows - duplicates  # distinct items (and invalid rows): a duplicate row is the same reversal
        summary = RunSummary(requested=requested, duplicates=duplicates, dry_run=bool(self.dry_run))  # type: ignore[truthy-function]
        invalid = self._invalid
        if invalid is not None and invalid.count:
            summary.add_invalid(invalid.rows, invalid.count)
            self.log.warning("Skipping (on_invalid='skip'), counted as failed: %s", invalid.report())
        self._run_summary = summary  # counted in place; read by get_openlineage_facets_on_complete
        if duplicates:
            self.log.info("Removed %d duplicate %s; each is sent once", duplicates, self.what)
        if requested == 0:
            self.log.info("No %s to reverse: the input is empty. Nothing sent.", self.what)
            return summary.as_xcom()

        ledger = self.ledger
        books = self._books = (
            RunLedger(
                ledger,
                owner=type(self).__name__,
                vendor=self.vendor,
                what=self.what,
                conn_id=str(self.ledger_conn_id),
                run=_run_info(context),
                log=self.log,
            )
            if ledger is not None
            else None
        )
        try:
            if books is not None:
                if not self.dry_run:  # type: ignore[truthy-function]  # a dry run writes nothing: the next real try replays
                    books.replay_spool()
                if invalid is not None and invalid.rows and not self.dry_run:  # type: ignore[truthy-function]
                    books.record_invalid(invalid.rows)
                items = books.drop_settled(items, summary, retry_refused=self.retry_refused)
            if self.dry_run:  # type: ignore[truthy-function]
                return self._dry_run(items, summary)
            self._guard(items)
            if items:
                self._send_all(items, summary, context)
        finally:
            if ledger is not None:
                ledger.close()
            self.close_hook()
        return self._decide(summary, context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage outputs: the vendor's operation and the ledger table; ``None`` without the provider."""
        from airflow_provider_loyalty.operators._lineage import operator_lineage

        return operator_lineage(self, getattr(self, "_run_summary", None))

    def _guard(self, items: list[Item]) -> None:
        """Refuse a runaway reversal before any vendor call (not even a token)."""
        if self.max_items is not None and len(items) > self.max_items:  # type: ignore[operator]
            raise AirflowFailException(
                f"{type(self).__name__}: {len(items)} {self.what} to send, above max_items={self.max_items}; "
                "nothing was sent. Check the extraction (a broken join?) or raise max_items."
            )

    def _dry_run(self, items: list[Item], summary: RunSummary) -> dict[str, Any]:
        requests = 0
        plan: list[str] = []
        for request in self.plan(items):
            requests += 1
            description = self.describe(request)
            if len(plan) < MAX_LISTED:
                plan.append(description)
            self.log.debug("Dry run: would send %s", description)
        summary.requests = requests
        over = self.max_items is not None and len(items) > self.max_items  # type: ignore[operator]
        self.log.info(
            "Dry run: %d %s in %d request(s) would be sent; %d skipped as done. Nothing was sent.%s",
            len(items),
            self.what,
            requests,
            summary.skipped,
            f" A real run would refuse: above max_items={self.max_items}." if over else "",
        )
        sample = [item.ident() for item in items[:MAX_LISTED]]
        return summary.as_xcom(planned=len(items), plan=plan, sample=sample, max_items_exceeded=over)

    def _send_all(self, items: list[Item], summary: RunSummary, context: Context) -> None:
        books = self._books
        try:
            self.hook.prepare()
        except Exception as exc:
            if getattr(exc, "fatal", False):  # credentials missing or refused, a bad URL
                raise AirflowFailException(f"{type(self).__name__}: {exc}") from None
            raise
        progress = Progress(
            self.log,
            self.vendor,
            self.what,
            len(items),
            getattr(self.hook, "waited_seconds", None),
            getattr(self.hook, "pace_text", None),
        )
        state = {"index": 0}

        def on_results(request: P, outcomes: list[Outcome]) -> None:
            state["index"] += 1
            if books is not None:  # recorded before it is counted or logged as done
                books.record(outcomes)
            summary.requests += 1
            ok, bad = summary.add(outcomes)
            self.log.debug(
                "%s request %d (%s): %d succeeded, %d failed",
                self.vendor,
                state["index"],
                self.describe(request),
                ok,
                bad,
            )
            progress.request_done(summary, outcomes)
            if books is not None and books.down is not None:
                raise LedgerDown("the ledger is down")  # stop sending; in-flight answers still land in the spool

        abort = run_requests(
            self.plan(items),
            self._send_one,
            on_results,
            max_concurrency=self.max_concurrency,  # type: ignore[arg-type]
            unsent=lambda request, cause: self.failed_request(
                request, "not_sent", f"not sent: {type(cause).__name__}", FailureKind.TRANSIENT
            ),
        )
        progress.line(summary, final=True)
        if hasattr(self.hook, "pace_report"):  # the pace in force and what "auto" learned, in the XCom
            summary.pace = self.hook.pace_report()
            metrics.timing(self.vendor, "vendor_wait_seconds", summary.pace.get("waited_seconds", 0.0))
        if summary.failed_this_run:
            self.log.info("%s failures this run by code: %s", self.vendor, dict(summary.codes.most_common()))
        if books is not None and books.down is not None:
            self._push_summary(context, summary)
            raise books.went_down()
        if abort is not None:
            self._push_summary(context, summary)
            cause = abort.cause
            fatal = isinstance(cause, AirflowFailException) or getattr(cause, "fatal", False)
            not_sent = summary.codes.get("not_sent", 0)
            message = (
                f"{type(self).__name__}: stopped, {cause}. {summary.succeeded} {self.what} succeeded, "
                f"{summary.failed_this_run - not_sent} failed, {not_sent} not sent "
                f"({'sent again by the next run once this is fixed' if fatal else 'a retry sends them'})"
            )
            raise (AirflowFailException if fatal else AirflowException)(message) from cause

    def _decide(self, summary: RunSummary, context: Context) -> dict[str, Any]:
        """Apply ``max_failed_ratio`` to this run's failures (refusals of earlier runs were decided then)."""
        result = summary.as_xcom()
        failed = summary.failed_this_run
        sent = summary.requested - summary.skipped - summary.failed_earlier
        if summary.failed_earlier:
            self.log.warning("%s: %s (see the ledger)", self.what, summary.earlier_report())
        if summary.reconciled:
            self.log.info(
                "%d %s were already reversed by an earlier attempt that recorded no answer: recorded as done",
                summary.reconciled,
                self.what,
            )
        if not failed or not sent:
            return result
        ratio = failed / sent
        if ratio <= self.max_failed_ratio:  # type: ignore[operator]
            self.log.warning(
                "%d of %d %s failed this run (%.1f%%), within max_failed_ratio=%s; %s",
                failed,
                sent,
                self.what,
                100 * ratio,
                self.max_failed_ratio,
                summary.failure_report(),
            )
            return result
        self._push_summary(context, summary)
        earlier = f" Also {summary.earlier_report()}." if summary.failed_earlier else ""
        message = (
            f"{type(self).__name__}: {failed} of {sent} {self.what} failed this run "
            f"({summary.failed_transient} transient), above max_failed_ratio={self.max_failed_ratio}; "
            f"{summary.failure_report()}.{earlier}"
        )
        self.log.error("%s", message)
        if summary.failed_transient:
            hint = " A retry sends only what is not done yet." if self.ledger_conn_id else ""
            raise AirflowException(message + hint)
        raise AirflowFailException(message + " The vendor refused them: retrying cannot help.")

    def _push_summary(self, context: Context, summary: RunSummary) -> None:
        """Push the summary before raising, so downstream ``all_done`` tasks can read it."""
        ti = context.get("ti") if context else None
        if ti is not None:
            try:
                ti.xcom_push(key="return_value", value=summary.as_xcom())
            except Exception:  # never mask the real failure
                self.log.warning("Could not push the summary XCom before failing", exc_info=True)


def _run_info(context: Context) -> dict[str, Any]:
    ti = context.get("ti") if context else None
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
    }


def _runs(label: str, seen: Mapping[str, Settled]) -> str:
    """``run a, b, c`` naming the (first three) runs behind ``seen``, for a reconciled item's message."""
    runs = sorted({str(s.run_id) for s in seen.values()})
    return f"{label} {', '.join(runs[:3])}" if runs else ""
