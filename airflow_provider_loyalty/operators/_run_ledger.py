"""The ledger's part in one run of a reversal operator.

Before anything is sent: write what an earlier try answered while the ledger was down (the spool),
and leave out what the ledger records as settled. While sending: an intent right before each
request leaves (none written, none sent), each answer as it arrives, and — once the ledger refuses
a write after its retries — the answers in the spool instead, so nothing answered is lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk.exceptions import AirflowException

from airflow_provider_loyalty import _metrics as metrics
from airflow_provider_loyalty.items import InvalidRow, Item
from airflow_provider_loyalty.outcomes import CLAIMED_ELSEWHERE, NO_ANSWER, FailureKind, Outcome, Settled

P = TypeVar("P")

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_loyalty.ledger import LedgerRow, ReversalLedger
    from airflow_provider_loyalty.ledger.spool import LedgerSpool
    from airflow_provider_loyalty.operators._run_claims import RunClaims
    from airflow_provider_loyalty.operators._summary import RunSummary


class LedgerDown(Exception):
    """The ledger refused a write after its retries; what was answered is kept in the spool."""


class IntentNotRecorded(Exception):
    """A request's intent could not be written: the request must not leave."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class RunLedger:
    """One run's use of the ledger (thread-safe where the senders call it: :meth:`intent`).

    :param ledger: the ledger writer.
    :param owner: the operator's class name, for messages.
    :param vendor: the vendor whose items these are.
    :param what: the input's name, for messages (``unique_ids``, ``earns``).
    :param conn_id: the ledger's connection id, for messages and the spool's key.
    :param run: the task instance's dag_id, run_id, task_id, map_index and try_number.
    :param log: the operator's logger.
    :param references: item key -> the business reference its input row carried, written beside it.
    :param claim_lease: seconds an item's claim lasts unless renewed; ``None``: no claims (a dry run).
    """

    def __init__(
        self,
        ledger: ReversalLedger,
        *,
        owner: str,
        vendor: str,
        what: str,
        conn_id: str,
        run: dict[str, Any],
        log: logging.Logger | Any,
        references: Mapping[str, str] | None = None,
        claim_lease: float | None = None,
    ) -> None:
        self.ledger = ledger
        self.owner = owner
        self.vendor = vendor
        self.what = what
        self.conn_id = conn_id
        self.run = run
        self.log = log
        self.references: Mapping[str, str] = references or {}
        #: the items in doubt (an earlier attempt may have applied them: ``ledger.state``), by key
        self.in_doubt: dict[str, Settled] = {}
        #: why the ledger is down (a write failed after its retries), or ``None``
        self.down: str | None = None
        #: outcomes kept in the spool since the ledger went down
        self.spooled = 0
        #: this attempt's claims on its items (``None``: items are not claimed)
        self.claims: RunClaims | None = None
        #: the run stopped: requests still planned are not claimed (:meth:`stop_claiming`)
        self.stopped = False
        #: chunks of items claimed so far (the first one fails the task when it cannot be claimed)
        self.chunks = 0
        self.retry_refused = False
        if claim_lease is not None:
            from airflow_provider_loyalty.operators._run_claims import RunClaims

            self.claims = RunClaims(ledger, vendor=vendor, run=run, lease=claim_lease, log=log)

    @cached_property
    def spool(self) -> LedgerSpool:
        """Where answers wait while the ledger is down (a Variable per task instance and ledger)."""
        from airflow_provider_loyalty.ledger.spool import LedgerSpool, spool_key

        return LedgerSpool(spool_key(self.conn_id, self.ledger.table, self.run))

    # ------------------------------------------------------------------------------ before sending
    def replay_spool(self) -> None:
        """Write what an earlier try answered but could not record, before anything is sent."""
        spool = self.spool
        try:
            rows = spool.pending()
        except Exception as exc:  # an unreadable spool must not be taken for an empty one...
            from airflow_provider_loyalty._variables import in_task_context

            if not in_task_context():  # ...but outside Airflow (a script, no metadata DB) none was ever written
                self.log.warning("No metadata DB to read a ledger spool from (%s); none can exist", type(exc).__name__)
                return
            raise AirflowException(
                f"{self.owner}: cannot read the ledger spool Variable {spool.key} "
                f"({type(exc).__name__}: {exc}); nothing was sent"
            ) from exc
        if not rows:
            return
        try:
            written = self.ledger.insert_unrecorded(rows)  # a replay cut short by a crash is not doubled
        except Exception as exc:
            raise AirflowException(
                f"{self.owner}: the ledger {self.conn_id!r} is still unreachable "
                f"({type(exc).__name__}); {len(rows)} answered outcome(s) stay in Variable {spool.key}; nothing was sent"
            ) from exc
        spool.clear()
        self.log.info(
            "Replayed %d outcome(s) an earlier try kept while the ledger was down (%d already recorded)",
            written,
            len(rows) - written,
        )

    def invalid_rows(self, rows: Sequence[InvalidRow], *, write: bool) -> dict[str, bool]:
        """Record the values of input rows skipped as invalid (``on_invalid="skip"``) that the ledger lacks.

        Return those it already holds as invalid: ``{key: recorded by an earlier DAG run}``. An
        earlier run judged its junk then (reported apart, like its refusals); an earlier try of this
        run's junk still counts in this run's decision. Nothing is recorded twice; ``write=False``
        (a dry run) only looks.
        """
        from airflow_provider_loyalty.ledger.state import ItemState

        try:
            states = self.ledger.states(self.vendor, {row.key for row in rows})
        except Exception as exc:
            raise AirflowException(
                f"{self.owner}: cannot read the ledger {self.conn_id!r} "
                f"({type(exc).__name__}: {str(exc)[:200]}); nothing was sent"
            ) from exc
        known = {
            key: not self.this_run(found.row)
            for key, found in states.items()
            if found.state is ItemState.INVALID and found.row is not None
        }
        if write:
            self.ledger.record_invalid(self.vendor, [row for row in rows if row.key not in known], self.run)
        earlier = sum(1 for row in rows if known.get(row.key))
        if earlier:
            self.log.info(
                "%d invalid %s row(s) hold values already recorded as invalid by earlier runs: reported apart, "
                "not counted in this run's max_failed_ratio",
                earlier,
                self.what,
            )
        return known

    def drop_settled(self, items: list[Item], summary: RunSummary, *, retry_refused: bool) -> list[Item]:
        """Leave out what the ledger says is done (skipped) or was refused for good (failed, not resent).

        ``max_failed_ratio`` judges this DAG run over all its tries: the items an earlier try of this
        run settled — its successes (``done_earlier_try``) and its refusals — count in this try's
        decision as they did in that try's. What earlier DAG runs settled was judged then (skipped;
        refusals as ``failed_earlier``). Items in doubt are kept for reconciliation.

        With claims, this look-up plans the run; each chunk is looked up again once claimed
        (:meth:`claim_ahead`), which is what decides whether it is sent.
        """
        self.retry_refused = retry_refused
        if self.claims is not None and items:
            self.claims.start()  # the claim table (or a DuckDB file's refusal) before any look-up
        settled, self.in_doubt = self._lookup([item.key for item in items])
        if self.in_doubt:
            self.log.info(
                "%d %s may have been applied by an earlier attempt that recorded no answer (in doubt): "
                "resending them, an 'already reversed' answer counts as done",
                len(self.in_doubt),
                self.what,
            )
        return self._leave_out(items, settled, summary)

    def _lookup(self, keys: list[str]) -> tuple[dict[str, Settled], dict[str, Settled]]:
        try:
            return self.ledger.lookup(self.vendor, keys, include_refused=not self.retry_refused)
        except Exception as exc:
            raise AirflowException(
                f"{self.owner}: cannot read the ledger {self.conn_id!r} "
                f"({type(exc).__name__}: {str(exc)[:200]}); nothing was sent"
            ) from exc

    def _leave_out(self, items: list[Item], settled: Mapping[str, Settled], summary: RunSummary) -> list[Item]:
        """``items`` but those ``settled``: those counted as skipped, or as refused (earlier)."""
        if not settled:
            return items
        kept: list[Item] = []
        skipped = refused = 0
        for item in items:
            outcome = settled.get(item.key)
            if outcome is None:
                kept.append(item)
            elif outcome.ok:
                skipped += 1
                summary.done_earlier_try += self.this_run(outcome)
            else:
                refused += 1
                refusal = Outcome.failed(
                    item, outcome.code, f"refused earlier: {outcome.message or ''}", FailureKind.PERMANENT
                )
                summary.add_refused([refusal], earlier_run=not self.this_run(outcome))
        summary.skipped += skipped
        metrics.incr(self.vendor, "items.skipped", skipped)
        if skipped:
            self.log.info("Skipping %d %s the ledger records as done", skipped, self.what)
        if refused:
            self.log.info(
                "Not resending %d %s the vendor refused for good in an earlier attempt (counted as failed; "
                "retry_refused=True resends them)",
                refused,
                self.what,
            )
        return kept

    def this_run(self, seen: Settled | LedgerRow) -> bool:
        """Whether ``seen`` was recorded by a try of this DAG run (any task of it)."""
        return (seen.run_id, seen.dag_id) == (self.run.get("run_id"), self.run.get("dag_id"))

    # --------------------------------------------------------------------------------- while sending
    def applied_elsewhere(self, keys: list[str]) -> dict[str, Settled]:
        """Those of ``keys`` that another run applied meanwhile (a success, or sent with no answer yet).

        ``keys`` were refused as "already reversed" although no attempt of ours was in doubt.

        Two runs over the same items at once (a manual trigger beside the scheduled run) both send;
        the vendor applies one and refuses the other, and that refusal is this evidence, not a failure.
        A ledger that cannot be read leaves the refusals as they are.
        """
        try:
            settled, doubt = self.ledger.lookup(self.vendor, keys, include_refused=False)
        except Exception as exc:  # noqa: BLE001 - the refusals stand; the outcome write reports the ledger
            self.log.warning("Could not re-read the ledger for %d refusal(s) (%s)", len(keys), type(exc).__name__)
            return {}
        found = {key: seen for key, seen in settled.items() if seen.ok}
        found.update({key: seen for key, seen in doubt.items() if key not in found and not self.this_run(seen)})
        return found

    def before_send(self, items: Sequence[Item], *, first: bool) -> None:
        """Right before a request (``first``) or its resend leaves: the intent, and the claims' fence."""
        if first:
            self.intent(items)
        elif self.claims is not None:
            self._fenced(items, None, first=False)

    def intent(self, items: Sequence[Item]) -> None:
        """Record ``items`` as being sent; raise :class:`IntentNotRecorded` (the request must not leave)."""
        if self.down is not None:
            raise IntentNotRecorded(LedgerDown(self.down))
        if self.claims is not None:
            self._fenced(
                items, self.ledger.intent_rows(self.vendor, items, self.run, references=self.references), first=True
            )
            return
        try:
            self.ledger.record_intent(self.vendor, items, self.run, references=self.references)
        except Exception as exc:
            self.down = self.down or f"{type(exc).__name__}: {str(exc)[:200]}"
            raise IntentNotRecorded(exc) from exc

    def record(self, outcomes: list[Outcome]) -> None:
        """Write outcomes to the ledger (it retries); once it is down, keep them in the spool instead.

        With claims, the outcomes of items this attempt claimed are written with their release,
        fenced (:meth:`RunClaims.settle`); an item it never claimed was never sent (a request not
        reached when the run stopped, an item outside the approved plan): its row is written as is.
        """
        if self.claims is not None:  # items left to another attempt's claim are not this attempt's facts
            epochs = self.claims.epochs
            claimed = [o for o in outcomes if o.code != CLAIMED_ELSEWHERE and o.key in epochs]
            outcomes = [o for o in outcomes if o.code != CLAIMED_ELSEWHERE and o.key not in epochs]
            if claimed and self.down is None:
                try:
                    self.claims.settle(
                        claimed,
                        lambda settled: self.ledger.rows(self.vendor, settled, self.run, references=self.references),
                    )
                    claimed = []
                except Exception as exc:
                    self.down = f"{type(exc).__name__}: {str(exc)[:200]}"
                    self.log.error("The ledger %r is down (%s); keeping answers in the spool", self.conn_id, exc)
            outcomes = claimed + outcomes
            if not outcomes:
                return
        if self.down is not None:
            # Requests that never left tell the next try nothing: keep only what the vendor answered
            # (a run stopped early would otherwise rewrite a growing spool once per unsent request).
            outcomes = [o for o in outcomes if o.code != "not_sent"]
            if not outcomes:
                return
        rows = self.ledger.rows(self.vendor, outcomes, self.run, references=self.references)
        if self.down is None:
            try:
                self.ledger.insert(rows)
                return
            except Exception as exc:
                self.down = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.log.error("The ledger %r is down (%s); keeping answers in the spool", self.conn_id, exc)
        try:
            self.spool.add(rows)
            self.spooled += len(rows)
        except Exception:
            # Last resort: the rows in the task log, where a person can replay them by hand.
            self.log.exception(
                "Could not keep answered outcomes in the spool either; they are only in this log: %s",
                json.dumps([r._asdict() for r in rows], default=str),
            )
            raise

    def went_down(self) -> AirflowException:
        """The error that ends a run whose ledger went down mid-run."""
        return AirflowException(
            f"{self.owner}: the ledger {self.conn_id!r} went down mid-run ({self.down}); {self.spooled} "
            f"answered outcome(s) are kept in Variable {self.spool.key} and are written to the ledger "
            "before the next try sends anything"
        )

    # ------------------------------------------------------------------------------------ claims
    def claim_ahead(
        self,
        requests: Iterable[P],
        items_of: Callable[[P], Sequence[Item]],
        replan: Callable[[list[Item]], Iterable[P]],
        summary: RunSummary,
    ) -> Iterator[P]:
        """The planned ``requests``, each chunk of them claimed (and looked up again) just before it goes out.

        The runner takes requests a few ahead of the senders, so a chunk is claimed while the
        requests before it wait for the pace. Items of a chunk under another attempt's live claim
        are counted ``claimed_elsewhere``; those the ledger settled since the run's first look-up
        (their previous owner's outcome, seen once the claim is made) are skipped; a request that
        lost items is planned again from those left. Without claims, the requests as they are.
        """
        if self.claims is None:
            yield from requests
            return
        from airflow_provider_loyalty.operators._run_claims import AHEAD

        chunk: list[P] = []
        size = 0
        for request in requests:
            chunk.append(request)
            size += len(items_of(request))
            if size >= AHEAD:
                yield from self._claimed(chunk, items_of, replan, summary)
                chunk, size = [], 0
        if chunk:
            yield from self._claimed(chunk, items_of, replan, summary)

    def stop_claiming(self) -> None:
        """The run stopped: the requests still planned are reported unsent, without claiming them."""
        self.stopped = True

    def _claimed(
        self,
        chunk: list[P],
        items_of: Callable[[P], Sequence[Item]],
        replan: Callable[[list[Item]], Iterable[P]],
        summary: RunSummary,
    ) -> Iterator[P]:
        assert self.claims is not None
        if self.stopped or self.down is not None:  # not sent: claiming them would only hold them back
            yield from chunk
            return
        items = [item for request in chunk for item in items_of(request)]
        first, self.chunks = self.chunks == 0, self.chunks + 1
        try:
            held = self.claims.claim(items)
            settled, doubt = self._lookup([item.key for item in held])
            if settled:
                self.claims.drop(list(settled))
        except Exception as exc:
            if first:  # nothing was sent yet: the task fails with the claim's own message
                raise
            self.down = self.down or f"{type(exc).__name__}: {str(exc)[:200]}"
            self.log.error("Could not claim the next %d %s (%s); stopping", len(items), self.what, self.down)
            yield from chunk  # their intents are refused (the ledger is down): none of them is sent
            return
        summary.add_claimed_elsewhere(self.claims.elsewhere[i.key] for i in items if i.key in self.claims.elsewhere)
        self.in_doubt.update(doubt)
        sendable = {item.key for item in self._leave_out(held, settled, summary)}
        for request in chunk:
            carried = items_of(request)
            if all(item.key in sendable for item in carried):
                yield request
                continue
            left = [item for item in carried if item.key in sendable]
            if left:
                yield from replan(left)

    def _fenced(self, items: Sequence[Item], rows: list[Any] | None, *, first: bool) -> None:
        """The claims' fence (and the intent ``rows`` with it); the ledger failing is :class:`IntentNotRecorded`."""
        from airflow_provider_loyalty.operators._run_claims import ClaimLost

        assert self.claims is not None
        try:
            self.claims.fence(items, rows, first=first)
        except ClaimLost:
            raise
        except Exception as exc:
            self.down = self.down or f"{type(exc).__name__}: {str(exc)[:200]}"
            if first:
                raise IntentNotRecorded(exc) from exc
            # a resend not resent: the first attempt went unanswered, so its items stay in doubt
            message = f"not resent: the ledger failed ({type(exc).__name__}); an earlier attempt got no answer"
            raise ClaimLost([Outcome.failed(i, NO_ANSWER, message, FailureKind.TRANSIENT) for i in items]) from exc

    def finish(self) -> None:
        """Stop renewing claims and release those of items never sent (before the ledger closes)."""
        if self.claims is not None:
            self.claims.finish()


def run_info(context: Context | None) -> dict[str, Any]:
    """The task instance a run's ledger rows name: dag_id, run_id, task_id, map_index, try_number."""
    ti = context.get("ti") if context else None
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
    }
