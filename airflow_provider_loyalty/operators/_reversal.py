"""The one path every reversal takes: parse -> skip done -> guard -> plan -> send -> record -> summarise -> decide.

Vendor operators supply their parser, planner and the hook call of one request; everything else
lives here once, each step in its module: the settings (:mod:`._settings`), the ledger's part —
spool replay, skipping settled items, intents before sends, outcomes before reports
(:mod:`._run_ledger`) —, a dry run's plan (:mod:`._plan`), sending one request and reconciling
"already reversed" answers (:mod:`._sending`), bounded concurrency (:mod:`._runner`), progress and
the summary (:mod:`._summary`), and the fail/retry decision (:mod:`._verdict`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty import _metrics as metrics
from airflow_provider_loyalty.items import Item
from airflow_provider_loyalty.operators import _settings, _verdict
from airflow_provider_loyalty.operators._hook import ReversalHook
from airflow_provider_loyalty.operators._inputs import InputErrors
from airflow_provider_loyalty.operators._plan import plan_only
from airflow_provider_loyalty.operators._run_ledger import RunLedger, run_info
from airflow_provider_loyalty.operators._runner import RunAborted, run_requests
from airflow_provider_loyalty.operators._sending import Sender, send_planned
from airflow_provider_loyalty.operators._summary import Progress, RunSummary, push_summary
from airflow_provider_loyalty.outcomes import AlreadyReversed, VendorResult

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_loyalty.ledger import ReversalLedger
    from airflow_provider_loyalty.vendors import VendorSpec

P = TypeVar("P")

__all__ = ["ReversalHook", "ReversalOperator", "RunAborted", "RunSummary", "run_requests"]


class ReversalOperator(BaseOperator, Generic[P]):
    """Shared base of the vendor operators; subclasses supply parsing, planning and sending.

    :param dry_run: (templated) plan and log only; no vendor call at all, not even for a token.
        Kept as :attr:`plan_only`: ``dry_run`` is a method of ``BaseOperator``.
    :param ledger_conn_id: SQL connection (any common-sql ``DbApiHook``) of the outcomes ledger;
        items it records as done are skipped, every item is marked as being sent before its request
        leaves, and every outcome is recorded as it arrives.
    :param ledger_table: ledger table name.
    :param max_failed_ratio: tolerated share of failed items (of those sent) before the task fails.
    :param max_requests_per_minute: request rate of this task (``None``: no limit), or ``"auto"``:
        find the vendor's limit and hold just under it, starting from what earlier runs of the
        connection learned (Variable ``loyalty_rate__<vendor>__<conn_id>``).
    :param max_requests_per_minute_cap: (templated) with ``"auto"``, never pace above this.
    :param rate_limit_timeout: (templated) seconds one request may be held back by the vendor's
        rate-limit answers (429, ``penaltySeconds``) before the task gives up, naming the rate the
        vendor accepted; its items and those after it are left not sent. Default 600.
    :param defer_rate_limit_after: with a ledger, a vendor rate-limit window longer than this
        (seconds) is waited out deferred (``TimeDeltaTrigger``: no worker slot held, nothing sent);
        the task then resumes from the ledger. ``None``: always wait in the worker. Default 30.
    :param rate_budget_conn_id: (templated) a ``redis`` or ``postgres`` connection: every task using the same
        vendor key (vendor, host, client id or till) shares one rate budget and one penalty window
        kept there, and ``"auto"`` keeps what it learned there. ``None``: the task paces alone.
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
    :param claim_lease_seconds: with a ledger, each item is claimed in the ledger's database before
        its intent is written, on a lease of this many seconds renewed while the task works: items
        under another attempt's live claim are not sent (counted as ``claimed_elsewhere``). ``None``
        turns claims off (docs/ledger.md, "Claims").
    :param approval: (templated) ``ApprovalGate.receipt(plan_task_id)`` of
        :mod:`~airflow_provider_loyalty.operators.approval`: a dry run records its plan (the keys and
        their digest) for a person to approve; a real run sends only items of the approved (or
        under-threshold) plan, records the others as ``not_approved`` unsent, and writes the receipt
        (approver, time, digest) on every ledger row.
    """

    template_fields: Sequence[str] = (
        "plan_only",
        "max_failed_ratio",
        "max_requests_per_minute",
        "max_requests_per_minute_cap",
        "rate_limit_timeout",
        "rate_budget_conn_id",
        "max_items",
        "on_invalid",
        "ledger_conn_id",
        "approval",
    )
    #: the vendor's facts (:mod:`airflow_provider_loyalty.vendors`): each vendor operator sets its own
    spec: ClassVar[VendorSpec]

    @property
    def vendor(self) -> str:
        """The vendor's name (ledger rows, metrics, the summary's ``vendor``)."""
        return self.spec.name

    @property
    def what(self) -> str:
        """What the items are called in messages: the input argument's name."""
        return self.spec.input_name

    def __init__(
        self,
        *,
        dry_run: bool = False,
        ledger_conn_id: str | None = None,
        ledger_table: str = "loyalty_reversal_ledger",
        max_failed_ratio: float = 0.0,
        max_requests_per_minute: float | str | None = None,
        max_requests_per_minute_cap: float | None = None,
        rate_limit_timeout: float | None = None,
        rate_budget_conn_id: str | None = None,
        defer_rate_limit_after: float | None = 30.0,
        max_concurrency: int = 8,
        max_items: int | None = None,
        already_reversed: Any = None,
        hook_params: dict[str, Any] | None = None,
        retry_refused: bool = False,
        on_invalid: str = "fail",
        claim_lease_seconds: float | None = 60.0,
        approval: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_provider_loyalty.ledger.schema import check_table_name

        self.hook_params = dict(hook_params or {})
        self.retry_refused = retry_refused
        self.ledger_table = check_table_name(ledger_table)
        self.already_reversed = AlreadyReversed.coerce(already_reversed, self.spec.already_reversed)
        # Settings may be Jinja strings (``"{{ params.dry_run }}"``): checked now when they are
        # values, and again after rendering (:func:`._settings.check` gives them their types).
        self.plan_only: Any = dry_run
        self.ledger_conn_id = ledger_conn_id
        self.max_failed_ratio: Any = max_failed_ratio
        self.max_requests_per_minute: Any = max_requests_per_minute
        self.max_requests_per_minute_cap: Any = max_requests_per_minute_cap
        self.rate_limit_timeout: Any = rate_limit_timeout
        self.rate_budget_conn_id: Any = rate_budget_conn_id
        self.defer_rate_limit_after = defer_rate_limit_after
        self.max_concurrency: Any = max_concurrency
        self.max_items: Any = max_items
        self.on_invalid = on_invalid
        self.claim_lease_seconds = claim_lease_seconds
        self.approval = approval
        _settings.check(self, lenient=True)
        self._invalid: InputErrors | None = None
        #: item key -> the business reference its input row carried (never identity)
        self._references: dict[str, str] = {}
        self._books: RunLedger | None = None

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
    def hook(self) -> ReversalHook:
        """The vendor hook (subclasses return theirs, as a ``cached_property``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------- the shared path
    @cached_property
    def ledger(self) -> ReversalLedger | None:
        """The outcomes ledger, when ``ledger_conn_id`` is set."""
        if not self.ledger_conn_id:
            return None
        from airflow_provider_loyalty.ledger import ReversalLedger

        return ReversalLedger(self.ledger_conn_id, table=self.ledger_table, read_only=bool(self.plan_only))

    def execute(self, context: Context) -> dict[str, Any]:
        """Reverse the input's items at the vendor; return the summary dict."""
        owner = type(self).__name__
        try:
            _settings.check(self)
        except ValueError as exc:
            raise AirflowFailException(f"{owner}: {exc}") from None
        self._invalid = InputErrors(self.what, owner, skip=True) if self.on_invalid == "skip" else None
        self._references = {}
        items, rows, duplicates = self.parse()
        requested = rows - duplicates  # distinct items (and invalid rows): a duplicate row is the same reversal
        summary = RunSummary(
            self.vendor, requested=requested, duplicates=duplicates, dry_run=self.plan_only, references=self._references
        )
        invalid = self._invalid
        if invalid is not None and invalid.count:
            self.log.warning("Skipping (on_invalid='skip'), counted as failed: %s", invalid.report())
        self._run_summary = summary  # counted in place; read by get_openlineage_facets_on_complete
        if duplicates:
            self.log.info("Removed %d duplicate %s; each is sent once", duplicates, self.what)
        if requested == 0:
            self.log.info("No %s to reverse: the input is empty. Nothing sent.", self.what)
            return summary.as_xcom(**self._plan_record(context, []))

        ledger = self.ledger
        books = self._books = (
            RunLedger(
                ledger,
                owner=owner,
                vendor=self.vendor,
                what=self.what,
                conn_id=str(self.ledger_conn_id),
                run=run_info(context),
                log=self.log,
                references=self._references,
                claim_lease=None if self.plan_only else self.claim_lease_seconds,
            )
            if ledger is not None
            else None
        )
        try:
            known_invalid: dict[str, bool] = {}
            if books is not None:
                if not self.plan_only:  # a dry run writes nothing: the next real try replays
                    books.replay_spool()
                if invalid is not None and invalid.rows:
                    known_invalid = books.invalid_rows(invalid.rows, write=not self.plan_only)
                items = books.drop_settled(items, summary, retry_refused=self.retry_refused)
            if invalid is not None and invalid.count:
                summary.add_invalid(invalid.rows, invalid.count, known_invalid)
            if self.plan_only:
                result = plan_only(items, self.plan(items), self.describe, summary, self.what, self.max_items, self.log)
                return {**result, **self._plan_record(context, items)}
            if self.approval is not None:  # only the approved plan's items go on (the others are recorded)
                from airflow_provider_loyalty.operators._receipt import check

                items = check(self, items, context, books, summary)
            if refused := _verdict.over_max_items(owner, self.what, len(items), self.max_items):
                raise refused
            if items:
                self._send_all(items, summary, context)
        finally:
            if books is not None:
                books.finish()
            if ledger is not None:
                ledger.close()
            if "hook" in self.__dict__:  # created: release its pooled connections
                self.hook.close()
        verdict = _verdict.decide(summary, owner, self.what, self.max_failed_ratio, bool(self.ledger_conn_id), self.log)
        if verdict is not None:
            push_summary(context, summary, self.log)
            raise verdict
        return summary.as_xcom()

    def _plan_record(self, context: Context, items: list[Item]) -> dict[str, Any]:
        """A dry run given ``approval``: the exact plan a person approves (keys to XCom, digest to the summary)."""
        if not (self.plan_only and self.approval is not None):
            return {}
        from airflow_provider_loyalty.operators._receipt import record_plan

        return record_plan(context, items, vendor=self.vendor, what=self.what)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage outputs: the vendor's operation and the ledger table; ``None`` without the provider."""
        from airflow_provider_loyalty.operators._lineage import operator_lineage

        return operator_lineage(self, getattr(self, "_run_summary", None))

    def _send_all(self, items: list[Item], summary: RunSummary, context: Context) -> None:
        """Send the planned requests, record and count every answer; raise when the run was stopped."""
        from airflow_provider_loyalty.hooks.errors import VendorError, VendorRateLimitError

        books = self._books
        hook = self.hook
        try:
            hook.prepare()
        except VendorError as exc:
            if exc.fatal:  # credentials missing or refused, a bad URL
                raise AirflowFailException(f"{type(self).__name__}: {exc}") from None
            raise
        progress = Progress(self.log, self.vendor, self.what, len(items), hook.waited_seconds, hook.pace_text)
        sender = Sender(self.vendor, self.items_of, self.call, self.already_reversed, books)
        if books is not None:  # a long vendor window goes to the triggerer: the ledger says where to resume
            hook.defer_rate_limits_after(self.defer_rate_limit_after)
        requests = self.plan(items)
        if books is not None:  # each chunk claimed just ahead of sending it (when claims are on)
            requests = books.claim_ahead(requests, self.items_of, self.plan, summary)
        abort = send_planned(sender, requests, self.describe, summary, progress, self.max_concurrency, self.log)
        summary.pace = hook.pace_report()  # the pace in force and what "auto" learned, in the XCom
        metrics.timing(self.vendor, "vendor_wait_seconds", summary.pace.get("waited_seconds", 0.0))
        if books is not None and books.down is not None:
            push_summary(context, summary, self.log)
            raise books.went_down()
        if abort is not None and isinstance(abort.cause, VendorRateLimitError) and abort.cause.resume_after is not None:
            self._defer_for_rate_limit(abort.cause.resume_after, summary)
        if abort is not None:
            push_summary(context, summary, self.log)
            raise _verdict.stopped(type(self).__name__, self.what, abort, summary) from abort.cause

    def _defer_for_rate_limit(self, seconds: float, summary: RunSummary) -> None:
        """Hand the vendor's window to the triggerer (a timer: it never talks to the vendor); no worker slot is held."""
        from datetime import timedelta

        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        self.log.info(
            "%s: the vendor's rate-limit window is %.0f s: deferring (%d %s succeeded so far; the rest is "
            "sent after it, from the ledger)",
            self.vendor,
            seconds,
            summary.succeeded,
            self.what,
        )
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=seconds)), method_name="resume_after_rate_limit")

    def resume_after_rate_limit(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Back from the triggerer after the vendor's window: send what the ledger says is not done yet."""
        return self.execute(context)
