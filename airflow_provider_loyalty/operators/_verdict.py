"""The task's verdict on a run: done, retry (something transient), or fail for good (refusals, a guard).

Each function returns the exception the operator raises (after pushing the summary, so that
downstream ``all_done`` tasks can read it), or ``None`` when the run stands.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_loyalty.hooks.errors import VendorError
from airflow_provider_loyalty.operators._runner import RunAborted
from airflow_provider_loyalty.operators._summary import RunSummary


def over_max_items(owner: str, what: str, count: int, max_items: int | None) -> AirflowFailException | None:
    """Refuse a runaway reversal before any vendor call (not even a token)."""
    if max_items is None or count <= max_items:
        return None
    return AirflowFailException(
        f"{owner}: {count} {what} to send, above max_items={max_items}; "
        "nothing was sent. Check the extraction (a broken join?) or raise max_items."
    )


def is_fatal(cause: BaseException) -> bool:
    """Whether no retry can help: the task failed for good, or the vendor said so (credentials, URL)."""
    return isinstance(cause, AirflowFailException) or (isinstance(cause, VendorError) and cause.fatal)


def stopped(owner: str, what: str, abort: RunAborted, summary: RunSummary) -> AirflowException:
    """The error of a run a vendor error stopped half-way: what succeeded, failed and was not sent."""
    cause = abort.cause
    fatal = is_fatal(cause)
    message = (
        f"{owner}: stopped, {cause}. {summary.accounting(what)} "
        f"({'sent again by the next run once this is fixed' if fatal else 'a retry sends them'})"
    )
    return (AirflowFailException if fatal else AirflowException)(message)


def decide(
    summary: RunSummary,
    owner: str,
    what: str,
    max_failed_ratio: float,
    with_ledger: bool,
    log: logging.Logger | Any,
) -> AirflowException | None:
    """Apply ``max_failed_ratio`` to this DAG run's failures over all its tries (:attr:`RunSummary.items_this_run`).

    Numerator and denominator are one population: the items this run answers for, whichever try
    settled them. What earlier DAG runs settled was decided then and is in neither.
    """
    failed = summary.failed_this_run
    judged = summary.items_this_run
    if summary.failed_earlier:
        log.warning("%s: %s (see the ledger)", what, summary.earlier_report())
    if summary.reconciled:
        log.info(
            "%d %s were already reversed by an earlier attempt that recorded no answer: recorded as done",
            summary.reconciled,
            what,
        )
    if not failed or not judged:
        return None
    ratio = failed / judged
    if ratio <= max_failed_ratio:
        log.warning(
            "%d of %d %s failed this run (%.1f%%), within max_failed_ratio=%s; %s",
            failed,
            judged,
            what,
            100 * ratio,
            max_failed_ratio,
            summary.failure_report(),
        )
        return None
    earlier = f" Also {summary.earlier_report()}." if summary.failed_earlier else ""
    message = (
        f"{owner}: {failed} of {judged} {what} failed this run "
        f"({summary.failed_transient} transient), above max_failed_ratio={max_failed_ratio}; "
        f"{summary.accounting(what)}; {summary.failure_report()}.{earlier}"
    )
    log.error("%s", message)
    if summary.failed_transient:
        hint = " A retry sends only what is not done yet." if with_ledger else ""
        return AirflowException(message + hint)
    invalid = summary.codes.get("invalid", 0)
    refused = failed - invalid
    causes = [f"the vendor refused {refused}"] if refused else []
    if invalid:
        causes.append(
            f"{invalid} {'is' if invalid == 1 else 'are'} invalid input (fix the input, or keep it out of the "
            "extraction; the ledger knows these values and the next run reports them apart)"
        )
    cause = "; ".join(causes)
    return AirflowFailException(f"{message} {cause[:1].upper()}{cause[1:]}: retrying cannot help.")
