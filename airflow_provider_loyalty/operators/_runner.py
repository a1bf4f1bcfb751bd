"""The executor of planned requests: bounded concurrency, answers recorded in the calling thread."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from airflow_provider_loyalty.outcomes import Outcome

log = logging.getLogger(__name__)

P = TypeVar("P")


class RunAborted(Exception):
    """Raised by a sender when no further request can succeed (credentials refused, ledger down).

    :param cause: what stopped the run.
    :param outcomes: the outcomes of the request that met it, when it was sent and answered (a 401
        is a refusal of that request, not "not sent").
    """

    def __init__(self, cause: BaseException, outcomes: list[Outcome] | None = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.outcomes = outcomes


def run_requests(
    plan: Iterable[P],
    send: Callable[[P], list[Outcome]],
    on_results: Callable[[P, list[Outcome]], None],
    *,
    max_concurrency: int,
    unsent: Callable[[P, BaseException], list[Outcome]],
    on_abort: Callable[[], None] | None = None,
) -> RunAborted | None:
    """Send planned requests on a bounded thread pool; hand each request's outcomes back in this thread.

    At most ``2 * max_concurrency`` requests are planned
    ahead of the senders, so a million-row input is never turned into a million futures.
    ``on_results`` runs in the calling thread (the ledger's connection is not shared across
    threads). When a sender raises :class:`RunAborted`, or outcomes cannot be recorded, nothing more
    is sent and every request not sent is reported through ``unsent``. Whatever ends the loop — an
    abort, a task timeout, SIGTERM — the answers of requests already in flight are still waited for
    and recorded: nothing the vendor applied is lost.

    :param on_abort: called once the run stopped, before the requests still planned are taken
        (only to be reported unsent): a plan that claims its items as it goes stops claiming.
    :return: the abort, if one happened (the caller raises it after recording everything).
    """
    abort: RunAborted | None = None
    pending: dict[Future[list[Outcome]], P] = {}
    planned: Iterator[P] = iter(plan)

    def guarded(request: P) -> list[Outcome]:
        try:
            return send(request)
        except RunAborted:
            raise
        except Exception as exc:  # a bug or an unreadable answer: this request's items are not done
            log.exception("Unexpected error while sending a request; its items count as failed (transient)")
            return unsent(request, exc)

    def record(request: P, results: list[Outcome]) -> None:
        nonlocal abort
        try:
            on_results(request, results)
        except Exception as exc:  # the ledger is unreachable: stop sending what could not be recorded
            log.exception("Could not record a request's outcomes; stopping")
            abort = abort or RunAborted(exc)

    def collect(future: Future[list[Outcome]]) -> list[Outcome]:
        # The future stays pending until its results are recorded: if a task timeout or SIGTERM
        # interrupts the recording, the finally clause below records it (at worst twice, which the
        # append-only ledger tolerates) instead of losing an answered request.
        nonlocal abort
        try:
            return future.result()
        except RunAborted as exc:
            abort = abort or exc
            return exc.outcomes if exc.outcomes is not None else unsent(pending[future], exc.cause)

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
        for future, request in list(pending.items()):
            if future.cancel():  # never started: nothing was sent (its intent gets its "not sent" answer)
                pending.pop(future)
                try:
                    record(request, unsent(request, abort.cause if abort else RuntimeError("interrupted")))
                except BaseException:  # noqa: BLE001 - best effort while already unwinding
                    log.exception("Could not record that a request was not sent")
        for future in list(pending):  # in flight (or answered, not yet recorded): record it
            try:
                record(pending[future], collect(future))
            except BaseException:  # noqa: BLE001 - best effort while already unwinding
                log.exception("Could not record an in-flight request's outcomes")
            pending.pop(future, None)
        pool.shutdown(wait=True, cancel_futures=True)
    if abort is not None:
        if on_abort is not None:
            on_abort()
        for request in planned:
            record(request, unsent(request, abort.cause))
    return abort
