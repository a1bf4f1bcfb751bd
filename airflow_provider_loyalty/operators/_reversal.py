"""The one path every reversal takes: parse -> skip done -> plan -> send -> record -> summarise -> decide.

Vendor operators supply four small pieces (parse the XCom, list item keys, plan requests, send one
request); everything else — ledger, bounded concurrency, per-request logging, the summary and the
fail/retry decision — lives here once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_loyalty.ledger import ReversalLedger

log = logging.getLogger(__name__)

#: Failures (and, in a dry run, planned requests) listed in the summary XCom; the ledger holds all.
MAX_LISTED_FAILURES = 100

P = TypeVar("P")


@dataclass(slots=True)  # not frozen: one per item, and frozen dataclasses cost 3x to build
class ItemResult:
    """The outcome of one item: its ledger key, identity fields, and what the vendor said.

    :param key: stable item key (``"123"``, ``"<customer>/<promotion>/<earn>"``).
    :param ident: the item's fields as the summary and the ledger show them.
    :param ok: the vendor applied the reversal.
    :param code: vendor error code or our own (``unknown``, ``http_503``, ``not_sent``).
    :param message: the vendor's (or our) message.
    :param transient: a later retry may succeed (transport trouble, unknown outcome).
    :param settles: for a non-transient failure: the vendor refused *this item* for good (already
        redeemed, invalid id...), so the ledger settles it; ``False`` when the whole request was
        refused (bad configuration, 4xx) or the refusal may echo an earlier attempt of ours.
    """

    key: str
    ident: dict[str, Any]
    ok: bool
    code: str | None = None
    message: str = ""
    transient: bool = False
    settles: bool = True

    @property
    def failure_kind(self) -> str | None:
        """How the ledger files a failure: ``permanent`` (settled), ``rejected`` or ``transient``."""
        if self.ok:
            return None
        if self.transient:
            return "transient"
        return "permanent" if self.settles else "rejected"


class RunAborted(Exception):
    """Raised by a sender when no further request can succeed (credentials refused)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class Summary:
    """Counts of one run; :meth:`as_xcom` is the task's small result.

    ``requested`` counts distinct items (duplicate input rows are removed and counted apart), so
    ``succeeded + failed + skipped == requested`` always holds (``planned`` replaces the first two
    in a dry run).
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
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, results: Iterable[ItemResult]) -> tuple[int, int]:
        """Count ``results``; return ``(ok, failed)`` among them."""
        ok = bad = 0
        for result in results:
            if result.ok:
                ok += 1
                continue
            bad += 1
            if result.transient:
                self.failed_transient += 1
            if len(self.failures) < MAX_LISTED_FAILURES:
                self.failures.append({**result.ident, "code": result.code, "message": result.message})
        self.succeeded += ok
        self.failed += bad
        return ok, bad

    def as_xcom(self, **extra: Any) -> dict[str, Any]:
        """Return the JSON-able summary pushed to XCom."""
        return {
            "requested": self.requested,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "duplicates_removed": self.duplicates,
            "requests": self.requests,
            "failed_transient": self.failed_transient,
            "failed_earlier": self.failed_earlier,
            "failures": list(self.failures),
            **extra,
        }


def run_requests(
    plan: Iterable[P],
    send: Callable[[P], list[ItemResult]],
    on_results: Callable[[P, list[ItemResult]], None],
    *,
    max_concurrency: int,
    unsent: Callable[[P, BaseException], list[ItemResult]],
) -> RunAborted | None:
    """Send planned requests on a bounded thread pool; hand each request's results back in this thread.

    At most ``2 * max_concurrency`` requests are planned ahead of the senders, so a million-row
    input is never turned into a million futures. ``on_results`` runs in the calling thread (the
    ledger's connection is not shared across threads). When a sender raises :class:`RunAborted`,
    or results cannot be recorded, nothing more is sent and every request not sent is reported
    through ``unsent``. Whatever ends the loop — an abort, a task timeout, SIGTERM — the answers of
    requests already in flight are still waited for and recorded: nothing the vendor applied is lost.

    :return: the abort, if one happened (the caller raises it after recording everything).
    """
    abort: RunAborted | None = None
    pending: dict[Future[list[ItemResult]], P] = {}
    planned: Iterator[P] = iter(plan)

    def guarded(request: P) -> list[ItemResult]:
        try:
            return send(request)
        except RunAborted:
            raise
        except Exception as exc:  # a bug or an unreadable answer: this request's items are not done
            log.exception("Unexpected error while sending a request; its items count as failed (transient)")
            return unsent(request, exc)

    def record(request: P, results: list[ItemResult]) -> None:
        nonlocal abort
        try:
            on_results(request, results)
        except Exception as exc:  # the ledger is unreachable: stop sending what could not be recorded
            log.exception("Could not record a request's outcomes; stopping")
            abort = abort or RunAborted(exc)

    def collect(future: Future[list[ItemResult]]) -> list[ItemResult]:
        # The future stays pending until its results are recorded: if a task timeout or SIGTERM
        # interrupts the recording, the finally clause below records it (at worst twice, which the
        # append-only ledger tolerates) instead of losing an answered request.
        nonlocal abort
        try:
            return future.result()
        except RunAborted as exc:
            abort = abort or exc
            return unsent(pending[future], exc.cause)

    pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="loyalty")
    try:

        def refill() -> None:
            while abort is None and len(pending) < 2 * max_concurrency:
                request = next(planned, None)
                if request is None:
                    return
                pending[pool.submit(guarded, request)] = request

        refill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                record(pending[future], collect(future))
                pending.pop(future)
            if abort is not None:
                for future, request in list(pending.items()):
                    if future.cancel():
                        pending.pop(future)
                        record(request, unsent(request, abort.cause))
            refill()
    finally:
        for future in list(pending):
            if future.cancel():
                pending.pop(future)  # never started: nothing was sent
        for future in list(pending):  # in flight (or answered, not yet recorded): record it
            try:
                record(pending[future], collect(future))
            except BaseException:  # noqa: BLE001 - best effort while already unwinding
                log.exception("Could not record an in-flight request's outcomes")
            pending.pop(future, None)
        pool.shutdown(wait=True, cancel_futures=True)
    if abort is not None:
        for request in planned:
            record(request, unsent(request, abort.cause))
    return abort


class ReversalOperator(BaseOperator, Generic[P]):
    """Shared base of the vendor operators; subclasses supply parsing, planning and sending.

    :param dry_run: plan and log only; no vendor call at all, not even for a token.
    :param ledger_conn_id: SQL connection (any common-sql ``DbApiHook``) of the outcomes ledger;
        items it records as done are skipped, every outcome is recorded as it arrives.
    :param ledger_table: ledger table name.
    :param max_failed_ratio: tolerated share of failed items (of those sent) before the task fails.
    :param max_requests_per_minute: request rate of this task (``None``: no limit).
    :param max_concurrency: requests in flight at once.
    :param hook_params: extra keyword arguments of the vendor hook (``timeout``, ``retry_policy``...).
    :param retry_refused: resend items the ledger records as refused for good (by default they are
        reported as failed again without a request: the vendor would refuse them the same way).
    """

    template_fields: Sequence[str] = ("dry_run", "max_failed_ratio", "max_requests_per_minute", "ledger_conn_id")
    vendor: str = ""
    what: str = "items"

    def __init__(
        self,
        *,
        dry_run: bool = False,
        ledger_conn_id: str | None = None,
        ledger_table: str = "loyalty_reversal_ledger",
        max_failed_ratio: float = 0.0,
        max_requests_per_minute: float | None = None,
        max_concurrency: int = 8,
        hook_params: dict[str, Any] | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hook_params = dict(hook_params or {})
        self.retry_refused = retry_refused
        # Settings may be Jinja strings (``"{{ params.dry_run }}"``): checked now when they are
        # values, and again after rendering.
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table
        self.max_failed_ratio = max_failed_ratio
        self.max_requests_per_minute = max_requests_per_minute
        self.max_concurrency = max_concurrency
        self._settings(lenient=True)

    def _settings(self, *, lenient: bool = False) -> None:
        """Coerce and check the rendered settings; ``lenient`` lets unrendered templates through."""

        def templated(value: Any) -> bool:
            return lenient and isinstance(value, str) and "{{" in value

        if not templated(self.dry_run):
            self.dry_run = as_bool(self.dry_run, "dry_run")  # type: ignore[assignment,method-assign]
        if not templated(self.max_failed_ratio):
            ratio = as_number(self.max_failed_ratio, "max_failed_ratio")
            if ratio is None or not 0.0 <= ratio <= 1.0:
                raise ValueError(f"max_failed_ratio must be between 0 and 1, got {self.max_failed_ratio!r}")
            self.max_failed_ratio = ratio
        if not templated(self.max_requests_per_minute):
            rate = as_number(self.max_requests_per_minute, "max_requests_per_minute")
            if rate is not None and rate <= 0:
                raise ValueError(f"max_requests_per_minute must be positive or None, got {rate!r}")
            self.max_requests_per_minute = rate
        if not templated(self.max_concurrency):
            concurrency = as_number(self.max_concurrency, "max_concurrency")
            if concurrency is None or concurrency < 1 or concurrency != int(concurrency):
                raise ValueError(f"max_concurrency must be an integer >= 1, got {self.max_concurrency!r}")
            self.max_concurrency = int(concurrency)

    # ---------------------------------------------------------------- what subclasses provide
    def parse(self) -> tuple[Any, int, int]:
        """Validate the input; return ``(items, input_rows, duplicates_removed)``."""
        raise NotImplementedError

    def item_keys(self, items: Any) -> Iterator[str]:
        """Yield the ledger key of every parsed item."""
        raise NotImplementedError

    def drop_done(self, items: Any, done: set[str]) -> Any:
        """Return ``items`` without those whose key is in ``done``."""
        raise NotImplementedError

    def plan(self, items: Any) -> Iterator[P]:
        """Yield the requests that send ``items`` (vendor batching rules)."""
        raise NotImplementedError

    def send(self, request: P) -> list[ItemResult]:
        """Send one planned request; return one result per item (raise :class:`RunAborted` to stop)."""
        raise NotImplementedError

    def request_items(self, request: P, code: str, message: str, *, transient: bool) -> list[ItemResult]:
        """Return a failed result for every item of ``request`` (whole-request failures)."""
        raise NotImplementedError

    def ident(self, key: str) -> dict[str, Any]:
        """Return the identity fields of an item from its ledger key."""
        raise NotImplementedError

    def describe(self, request: P) -> str:
        """Return a short description of a request for logs (counts, no payloads)."""
        raise NotImplementedError

    def call_vendor(self, request: P, call: Callable[..., Any], *args: Any) -> tuple[Any, list[ItemResult]]:
        """Run one hook call for ``request``; return ``(result, [])``, or ``(None, failed items)``.

        Vendor errors of the request as a whole fail its items (transiently or not, never settled);
        errors no further request can escape — refused credentials, a bad URL, a rate limit that
        outlasted the retry budget — stop the run (:class:`RunAborted`).
        """
        from airflow_provider_loyalty.hooks._http import VendorError, VendorRateLimitError

        try:
            return call(*args), []
        except VendorRateLimitError as exc:
            raise RunAborted(exc) from exc  # every further request would meet the same limit
        except VendorError as exc:
            if exc.fatal:
                raise RunAborted(exc) from exc
            code = exc.code or (f"http_{exc.status_code}" if exc.status_code else "unavailable")
            return None, self.request_items(request, code, exc.message, transient=exc.transient)

    def close_hook(self) -> None:
        """Release the hook's pooled connections, if the hook was created."""
        if "hook" in self.__dict__:
            self.__dict__["hook"].close()

    def prepare_hook(self) -> None:
        """Resolve connection, credentials and tokens in the main thread, before the senders start.

        Subclasses expose their vendor hook as the ``hook`` property; its ``prepare()`` does the work.
        """
        self.hook.prepare()  # type: ignore[attr-defined]

    # ---------------------------------------------------------------------- the shared path
    @cached_property
    def ledger(self) -> ReversalLedger | None:
        """The outcomes ledger, when ``ledger_conn_id`` is set."""
        if not self.ledger_conn_id:
            return None
        from airflow_provider_loyalty.ledger import ReversalLedger

        return ReversalLedger(self.ledger_conn_id, table=self.ledger_table)

    def execute(self, context: Context) -> dict[str, Any]:
        """Reverse the input's items at the vendor; return the summary dict."""
        try:
            self._settings()
        except ValueError as exc:
            raise AirflowFailException(f"{type(self).__name__}: {exc}") from None
        items, rows, duplicates = self.parse()
        requested = rows - duplicates  # distinct items: a duplicate row is the same reversal
        summary = Summary(requested=requested, duplicates=duplicates, dry_run=bool(self.dry_run))  # type: ignore[truthy-function]
        if duplicates:
            self.log.info("Removed %d duplicate %s; each is sent once", duplicates, self.what)
        if requested == 0:
            self.log.info("No %s to reverse: the input is empty. Nothing sent.", self.what)
            return summary.as_xcom()

        ledger = self.ledger
        try:
            if ledger is not None:
                items = self._drop_settled(ledger, items, summary, _run_info(context)["run_id"])
            if self.dry_run:  # type: ignore[truthy-function]
                return self._dry_run(items, summary)
            self._send_all(items, summary, context)
        finally:
            if ledger is not None:
                ledger.close()
            self.close_hook()
        return self._decide(summary, context)

    def _drop_settled(self, ledger: ReversalLedger, items: Any, summary: Summary, run_id: str | None) -> Any:
        """Leave out what the ledger says is done (skipped) or was refused for good (failed, not resent).

        Refusals recorded by an earlier DAG run were judged against ``max_failed_ratio`` then
        (``failed_earlier``); those of this run's earlier tries still count in this decision.
        """
        settled = ledger.settled(self.vendor, self.item_keys(items), include_refused=not self.retry_refused)
        if not settled:
            return items
        refused = [
            (
                outcome.run_id,
                ItemResult(key, self.ident(key), False, outcome.code, f"refused earlier: {outcome.message or ''}"),
            )
            for key, outcome in settled.items()
            if not outcome.ok
        ]
        summary.skipped = len(settled) - len(refused)
        summary.add(result for _, result in refused)
        summary.failed_earlier = sum(1 for refused_in, _ in refused if refused_in != run_id)
        if summary.skipped:
            self.log.info("Skipping %d %s the ledger records as done", summary.skipped, self.what)
        if refused:
            self.log.info(
                "Not resending %d %s the vendor refused for good in an earlier attempt (counted as failed; "
                "retry_refused=True resends them)",
                len(refused),
                self.what,
            )
        return self.drop_done(items, set(settled))

    def _dry_run(self, items: Any, summary: Summary) -> dict[str, Any]:
        requests = 0
        planned = 0
        plan: list[str] = []
        for request in self.plan(items):
            requests += 1
            planned += len(self.request_items(request, "dry_run", "", transient=False))
            description = self.describe(request)
            if len(plan) < MAX_LISTED_FAILURES:
                plan.append(description)
            self.log.info("Dry run: would send %s", description)
        summary.requests = requests
        self.log.info(
            "Dry run: %d %s in %d request(s) would be sent; %d skipped as done. Nothing was sent.",
            planned,
            self.what,
            requests,
            summary.skipped,
        )
        return summary.as_xcom(planned=planned, plan=plan)

    def _send_all(self, items: Any, summary: Summary, context: Context) -> None:
        ledger = self.ledger
        run_info = _run_info(context) if ledger is not None else None
        started = time.monotonic()
        try:
            self.prepare_hook()
        except Exception as exc:
            from airflow_provider_loyalty.hooks._http import CredentialsMissingError

            if isinstance(exc, CredentialsMissingError):
                raise AirflowFailException(f"{type(self).__name__}: {exc}") from None
            raise
        state = {"index": 0}

        ledger_error: list[BaseException] = []

        def on_results(request: P, results: list[ItemResult]) -> None:
            state["index"] += 1
            summary.requests += 1
            ok, bad = summary.add(results)
            self.log.info(
                "%s request %d (%s): %d succeeded, %d failed",
                self.vendor,
                state["index"],
                self.describe(request),
                ok,
                bad,
            )
            if ledger is not None and not ledger_error:  # once the ledger is down, stop trying it
                try:
                    ledger.record(self.vendor, results, run_info)
                except Exception as exc:
                    ledger_error.append(exc)
                    raise

        abort = run_requests(
            self.plan(items),
            self.send,
            on_results,
            max_concurrency=self.max_concurrency,
            unsent=lambda request, cause: self.request_items(
                request, "not_sent", f"not sent: {type(cause).__name__}", transient=True
            ),
        )
        elapsed = time.monotonic() - started
        self.log.info(
            "%s: %d requested, %d succeeded, %d failed (%d transient), %d skipped, %d duplicate rows removed; "
            "%d request(s) in %.1f s",
            self.vendor,
            summary.requested,
            summary.succeeded,
            summary.failed,
            summary.failed_transient,
            summary.skipped,
            summary.duplicates,
            summary.requests,
            elapsed,
        )
        if abort is not None:
            self._push_summary(context, summary)
            cause = abort.cause
            if isinstance(cause, AirflowFailException) or getattr(cause, "fatal", False):
                raise AirflowFailException(f"{type(self).__name__}: stopped, {cause}") from cause
            raise AirflowException(f"{type(self).__name__}: stopped, {cause}") from cause

    def _decide(self, summary: Summary, context: Context) -> dict[str, Any]:
        """Apply ``max_failed_ratio`` to this attempt's failures (refusals found in the ledger were decided before)."""
        result = summary.as_xcom()
        failed = summary.failed - summary.failed_earlier
        sent = summary.requested - summary.skipped - summary.failed_earlier
        if summary.failed_earlier:
            self.log.warning(
                "%d %s stay failed: the vendor refused them in an earlier run (see the ledger)",
                summary.failed_earlier,
                self.what,
            )
        if not failed or not sent:
            return result
        ratio = failed / sent
        if ratio <= self.max_failed_ratio:
            self.log.warning(
                "%d of %d %s failed (%.1f%%), within max_failed_ratio=%s",
                failed,
                sent,
                self.what,
                100 * ratio,
                self.max_failed_ratio,
            )
            return result
        self._push_summary(context, summary)
        codes: dict[str, int] = {}
        for failure in summary.failures:
            codes[str(failure.get("code"))] = codes.get(str(failure.get("code")), 0) + 1
        top = ", ".join(f"{code} x{n}" for code, n in sorted(codes.items(), key=lambda kv: -kv[1])[:5])
        message = (
            f"{type(self).__name__}: {failed} of {sent} {self.what} failed "
            f"({summary.failed_transient} transient; codes among the first {len(summary.failures)}: {top}), "
            f"above max_failed_ratio={self.max_failed_ratio}"
        )
        if summary.failed_transient:
            hint = "; a retry sends only what is not done yet" if self.ledger_conn_id else ""
            raise AirflowException(message + hint)
        raise AirflowFailException(message + "; the vendor refused them, retrying cannot help")

    def _push_summary(self, context: Context, summary: Summary) -> None:
        """Push the summary before raising, so downstream ``all_done`` tasks can read it."""
        ti = context.get("ti") if context else None
        if ti is not None:
            try:
                ti.xcom_push(key="return_value", value=summary.as_xcom())
            except Exception:  # never mask the real failure
                self.log.warning("Could not push the summary XCom before failing", exc_info=True)


def as_bool(value: Any, name: str) -> bool:
    """Read a flag given as a bool or as rendered text (``"True"``, ``"false"``, ``"1"``)."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "", "none"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def as_number(value: Any, name: str) -> float | None:
    """Read a number given as such or as rendered text; ``None``/``"None"``/``""`` mean unset."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "null"):
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _run_info(context: Context) -> dict[str, Any]:
    ti = context.get("ti")
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
    }


def chunked(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Yield consecutive slices of at most ``size`` values."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
