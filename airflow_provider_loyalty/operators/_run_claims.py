"""Claims in one run of a reversal operator: claim before the intent, fence before each send.

The order for an item: claim it (one statement per chunk of about :data:`AHEAD` items, made just
ahead of sending the chunk, while the requests before it wait for the pace) -> look it up again
(after the claim, so that an outcome its previous owner recorded is seen) -> fence + intent in one
transaction right before its request leaves (items whose claim was taken over are not sent) ->
outcome + release in one transaction. A heartbeat renews every claim of the attempt while it works.
Claiming per chunk, not every item up front, keeps the claims' cost behind the vendor's pace, and
leaves the items not reached yet free for an attempt that runs beside this one.

Items under another attempt's live claim are not sent: they are counted as ``claimed_elsewhere``
and left to their owner, except the claims of an earlier try of this very task instance, whose
lease is waited out (at most one lease, once per earlier try), and those of a process of this host
that no longer runs, taken over at once. Of the items taken over from an owner whose lease ran out
without an outcome, those it may have sent are in doubt — its fence and its intent commit together,
so each has its intent in the ledger — and their resend reconciles "already reversed"; the others
are sent like any item (a Capillary 731 for one of them stays a refusal).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from airflow_provider_loyalty.coordination import claims
from airflow_provider_loyalty.items import Item
from airflow_provider_loyalty.outcomes import (
    CLAIMED_ELSEWHERE,
    IN_DOUBT_CODES,
    NO_ANSWER,
    SUPERSEDED,
    FailureKind,
    Outcome,
)

if TYPE_CHECKING:
    from airflow_provider_loyalty.ledger import ReversalLedger
    from airflow_provider_loyalty.ledger.schema import LedgerRow

#: Seconds between two claim attempts while an earlier try's lease runs out.
WAIT_POLL = 2.0
#: Items claimed at a time, just ahead of sending them (whole requests: a chunk may hold a few more).
AHEAD = 100
#: Tokens of the attempts of this process that hold claims now (an ended one is no longer here).
_LIVE_TOKENS: set[str] = set()


class ClaimLost(Exception):
    """Right before a request left, the fence found some of its items claimed by another attempt.

    :param outcomes: one per item of the request: the lost ones ``claimed_elsewhere`` (not sent, not
        recorded), the others ``not_sent`` (or ``no_answer`` on a resend: an earlier attempt of the
        request went unanswered).
    """

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__(f"{sum(o.code == CLAIMED_ELSEWHERE for o in outcomes)} item(s) claimed by another attempt")
        self.outcomes = outcomes


def single_writer_refusal(ledger: ReversalLedger, exc: BaseException) -> str | None:
    """A clear refusal when ``exc`` is DuckDB's lock on the ledger file by another process, else ``None``."""
    text = str(exc)
    if "Could not set lock on file" not in text and "Conflicting lock is held" not in text:
        return None
    pid = re.search(r"\(PID (\d+)\)", text)
    holder = f"PID {pid.group(1)}" if pid else ""
    path = ""
    try:
        path = str(ledger.hook.connection.host or "")
    except Exception:  # noqa: BLE001 - the message names the connection instead
        path = ""
    return (
        f"the ledger {path or ledger.conn_id!r} is a DuckDB file, which admits one writing process, and another "
        f"process holds it{f' ({holder})' if holder else ''}: nothing was sent. Run one task on it at a time, "
        "or keep the ledger in a server database (PostgreSQL...) so that runs can share it"
    )


class RunClaims:
    """One attempt's claims on its items (the heartbeat runs from :meth:`claim` to :meth:`finish`).

    :param ledger: the ledger writer (its database holds the claim table beside the ledger).
    :param vendor: the vendor whose items these are.
    :param run: the task instance's dag_id, run_id, task_id, map_index and try_number.
    :param lease: seconds a claim lasts unless renewed (renewed every quarter of it).
    :param log: the operator's logger.
    :param clock: this host's UTC seconds (tests pass a fake one); on a server ledger, corrected to the server's clock.
    """

    def __init__(
        self,
        ledger: ReversalLedger,
        *,
        vendor: str,
        run: dict[str, Any],
        lease: float,
        log: Any,
        clock: Callable[[], float] = claims.wall_clock,
    ) -> None:
        self.ledger = ledger
        self.vendor = vendor
        self.lease = float(lease)
        self.log = log
        self._local_clock = clock
        #: the ledger server's clock minus this host's (0 for a file ledger): leases are the server's
        self.offset = 0.0
        self.owner = claims.Owner(run)
        self.table = claims.claims_table(ledger.table)
        #: key -> epoch of the items this attempt holds (released ones are removed)
        self.held: dict[str, int] = {}
        #: key -> the epoch of this attempt's claim (kept after release: it goes with the outcome row)
        self.epochs: dict[str, int] = {}
        #: key -> the owner whose lease ran out without an outcome. Nothing more is needed to know
        #: what it sent: its fence and its intent commit together, so an item it may have sent has its
        #: intent in the ledger, which the look-up (after the claim) reads as in doubt.
        self.taken_over: dict[str, str] = {}
        #: key -> the label of the owner of an item left to it
        self.elsewhere: dict[str, str] = {}
        #: keys whose intent this attempt wrote (their claim stays until their outcome is written)
        self.intended: set[str] = set()
        self._holders: dict[str, claims.Holder] = {}
        #: labels of the earlier tries of this task whose lease was waited out once (never twice)
        self._waited: set[str] = set()
        self._started = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def clock(self) -> float:
        """UTC seconds on the ledger server's clock (this host's for a file ledger): what leases are measured on."""
        return self._local_clock() + self.offset

    def _measure_offset(self) -> None:
        """Read how far this host's clock is from the ledger server's (once per attempt)."""
        try:
            sql = claims.server_clock_sql(self.ledger.hook.connection.conn_type)
        except Exception:  # noqa: BLE001 - no connection type to go by: this host's clock
            sql = None
        if sql is None:
            return

        def read(conn: Any) -> float:
            before = self._local_clock()
            server = claims.server_time(conn, sql)
            return server - (before + self._local_clock()) / 2

        self.offset = float(self._tx("claim clock", read))
        if abs(self.offset) > self.lease / 4:
            self.log.warning(
                "This host's clock is %.1f s off the ledger server's; claims' leases are measured on the server's",
                -self.offset,
            )

    # ------------------------------------------------------------------------------ claiming
    def _tx(self, what: str, operation: Callable[[Any], Any]) -> Any:
        return self.ledger.transaction(what, lambda conn, insert: operation(conn))

    def start(self) -> None:
        """Before anything is looked up or sent: the claim table, and the ledger server's clock.

        Raises :class:`AirflowException` (nothing was sent) when the claim table cannot be had:
        missing for a role that may not create it, or a DuckDB file another process writes.
        """
        if self._started:
            return
        try:
            self._tx("claim table", lambda conn: claims.ensure_table(conn, self.table))
            self._measure_offset()
        except claims.ClaimTableMissing as exc:
            raise AirflowException(f"{exc}; nothing was sent") from exc
        except Exception as exc:
            raise self._refusal(exc) from exc
        self._started = True

    def _refusal(self, exc: BaseException) -> AirflowException:
        refusal = single_writer_refusal(self.ledger, exc)
        return AirflowException(
            refusal
            or f"cannot claim items in the ledger {self.ledger.conn_id!r} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); nothing was sent"
        )

    def claim(self, items: Sequence[Item]) -> list[Item]:
        """Claim ``items`` (a chunk); return those this attempt now holds (the rest is in :attr:`elsewhere`).

        Raises :class:`AirflowException` when the claim cannot be written (none of ``items`` is sent).
        """
        self.start()
        try:
            result = self._claim_now([i.key for i in items])
        except Exception as exc:
            raise self._refusal(exc) from exc
        _LIVE_TOKENS.add(self.owner.token)
        before = len(self.taken_over)
        self._absorb(result)
        self._start_heartbeat()
        self._take_over_the_dead(result.elsewhere)
        self._wait_for_earlier_tries()
        if len(self.taken_over) > before:
            self.log.warning(
                "Took over %d item(s) from an attempt whose claim ran out without an outcome (%s): those it sent "
                "have its intent in the ledger and are in doubt (an 'already reversed' answer counts as done)",
                len(self.taken_over) - before,
                ", ".join(sorted(set(self.taken_over.values()))[:3]),
            )
        left = [self.elsewhere[i.key] for i in items if i.key in self.elsewhere]
        if left:
            self.log.warning(
                "Not sending %d item(s) under another attempt's live claim, left to it: %s",
                len(left),
                ", ".join(f"{owner} x{n}" for owner, n in Counter(left).most_common(3)),
            )
        return [item for item in items if item.key in self.held]

    def drop(self, keys: Sequence[str]) -> None:
        """Release the claims of ``keys``, which this attempt will not send (the ledger settled them meanwhile)."""
        keys = sorted(k for k in set(keys) if k in self.held and k not in self.intended)
        if not keys:
            return
        p = self.ledger.placeholder
        self._tx("claim release", lambda conn: claims.release(conn, self.table, p, self.vendor, keys, self.owner.token))
        for key in keys:
            self.held.pop(key, None)

    def _absorb(self, result: claims.ClaimResult) -> None:
        self.held.update(result.mine)
        self.epochs.update(result.mine)
        self.taken_over.update(result.expired)
        for key in result.mine:
            self.elsewhere.pop(key, None)
        self.elsewhere.update({key: holder.label for key, holder in result.elsewhere.items()})
        self._holders = result.elsewhere

    def _take_over_the_dead(self, elsewhere: dict[str, claims.Holder]) -> None:
        """Take over at once the claims of attempts of this host that no longer run.

        A process of this host that is gone, or an attempt of this very process that has ended
        (its token is no longer among the live ones: an earlier ``execute`` whose ledger went down).
        """
        pid = self.owner.pid
        candidates = [
            key
            for key, holder in elsewhere.items()
            if holder.host == self.owner.host and (holder.pid == pid or not claims.pid_alive(holder.pid))
        ]
        if not candidates:
            return
        p = self.ledger.placeholder
        tokens = self._tx("claim look-up", lambda conn: claims.tokens_of(conn, self.table, p, self.vendor, candidates))
        tokens = {k: t for k, t in tokens.items() if elsewhere[k].pid != pid or t not in _LIVE_TOKENS}
        if not tokens:
            return
        taken = self._tx(
            "claim take-over",
            lambda conn: claims.take_over(
                conn, self.table, p, self.vendor, tokens, self.owner, now=self.clock(), lease=self.lease
            ),
        )
        for key, epoch in taken.items():
            self.held[key] = epoch
            self.epochs[key] = epoch
            self.taken_over[key] = f"{elsewhere[key].label}, no longer running"
            self.elsewhere.pop(key, None)

    def _wait_for_earlier_tries(self) -> None:
        """Wait (at most one lease) for the claims of an earlier try of this task instance to run out.

        A retried task whose previous try died on another worker finds that try's claims live
        until their lease runs out; a zombie that still works renews them, and is left to finish.
        Each earlier try is waited for once: a chunk claimed later that meets it again leaves its
        items to it (a zombie that still renews works through them itself).
        """
        run = self.owner.run
        waiting = {
            k: h
            for k, h in self._holders.items()
            if k in self.elsewhere and h.same_task_earlier_try(run) and h.label not in self._waited
        }
        if not waiting:
            return
        self._waited.update(h.label for h in waiting.values())
        deadline = min(max(h.lease_expiry for h in waiting.values()) + 1.0, self.clock() + self.lease + 1.0)
        self.log.info(
            "%d item(s) are claimed by an earlier try of this task (%s); waiting up to %.0f s for its lease",
            len(waiting),
            next(iter(waiting.values())).label,
            max(0.0, deadline - self.clock()),
        )
        while waiting and self.clock() < deadline:
            self._stop.wait(min(WAIT_POLL, max(0.0, deadline - self.clock())))
            result = self._claim_now(list(waiting))
            self._absorb(result)
            waiting = {k: h for k, h in result.elsewhere.items() if h.same_task_earlier_try(run)}

    def _claim_now(self, keys: list[str]) -> claims.ClaimResult:
        p = self.ledger.placeholder
        result: claims.ClaimResult = self._tx(
            "claim",
            lambda conn: claims.claim(
                conn, self.table, p, self.vendor, keys, self.owner, now=self.clock(), lease=self.lease
            ),
        )
        return result

    # ------------------------------------------------------------------------------- sending
    def fence(self, items: Sequence[Item], rows: list[LedgerRow] | None, *, first: bool) -> None:
        """Renew and check this attempt's claims on ``items``, and write ``rows`` (the intent) with it.

        One transaction: the fence and the intent commit together. Raises :class:`ClaimLost` (nothing
        written, nothing to send) when another attempt took any of them over.
        """
        keys = [item.key for item in items]
        p = self.ledger.placeholder

        def operation(conn: Any, insert: Callable[[Sequence[Any]], None]) -> set[str]:
            held = claims.fence(
                conn, self.table, p, self.vendor, keys, self.owner.token, now=self.clock(), lease=self.lease
            )
            if len(held) == len(set(keys)) and rows:
                insert(self._with_epochs(rows))
            return held

        held = self.ledger.transaction("fence", operation)
        if len(held) < len(set(keys)):
            lost = [key for key in keys if key not in held]
            self.log.warning(
                "%d item(s) of a request were taken over by another attempt (this one paused past its lease?): "
                "the request is not sent",
                len(lost),
            )
            for key in lost:
                self.held.pop(key, None)
            raise ClaimLost(
                [
                    Outcome.failed(
                        item, CLAIMED_ELSEWHERE, "claim taken over by another attempt; not sent", FailureKind.TRANSIENT
                    )
                    if item.key not in held
                    else Outcome.failed(
                        item,
                        "not_sent" if first else NO_ANSWER,
                        "not sent: another item of the request was claimed by another attempt"
                        if first
                        else "an earlier attempt of this request got no answer (the vendor may have applied it)",
                        FailureKind.TRANSIENT,
                    )
                    for item in items
                ]
            )
        if first:
            self.intended.update(keys)

    def settle(self, outcomes: list[Outcome], rows_of: Callable[[list[Outcome]], list[LedgerRow]]) -> None:
        """Write ``outcomes`` and release their claims, in one transaction.

        An answer for an item another attempt took over meanwhile is kept as a fact, but a refusal
        or failure of it is recorded ``superseded`` (transient): it must not settle the item over
        its new owner's outcome. Changes those outcomes in place, so the summary counts them apart.
        A request left unanswered (:data:`~airflow_provider_loyalty.outcomes.IN_DOUBT_CODES`) is
        recorded as it is, though: the vendor may have applied it, which keeps the item in doubt
        whoever holds it now, and a doubt settles nothing over the new owner.
        """
        keys = [o.key for o in outcomes]
        p = self.ledger.placeholder
        unanswered: list[Outcome] = []

        def operation(conn: Any, insert: Callable[[Sequence[Any]], None]) -> set[str]:
            held = claims.fence(
                conn, self.table, p, self.vendor, keys, self.owner.token, now=self.clock(), lease=self.lease
            )
            unanswered.clear()  # the transaction may run again
            for outcome in outcomes:
                if outcome.key not in held and not outcome.ok and outcome.code in IN_DOUBT_CODES:
                    unanswered.append(outcome)
                elif outcome.key not in held and not outcome.ok and outcome.code != SUPERSEDED:
                    outcome.message = (
                        f"answered after another attempt took the item's claim over: "
                        f"{outcome.code or ''} {outcome.message}".strip()
                    )[:1000]
                    outcome.code, outcome.kind = SUPERSEDED, FailureKind.TRANSIENT
            insert(self._with_epochs(rows_of(outcomes)))
            claims.release(conn, self.table, p, self.vendor, sorted(held), self.owner.token)
            return held

        held = self.ledger.transaction("insert", operation)
        for outcome in unanswered:  # recorded as unanswered; the summary counts it apart, as the new owner's
            outcome.code, outcome.kind = SUPERSEDED, FailureKind.TRANSIENT
        for key in keys:
            self.held.pop(key, None)
        if len(held) < len(set(keys)):
            self.log.warning(
                "%d answer(s) came after another attempt took their items over", len(set(keys)) - len(held)
            )

    def _with_epochs(self, rows: Sequence[LedgerRow]) -> list[LedgerRow]:
        """The ledger rows with the epoch of this attempt's claim on their item."""
        return [row._replace(epoch=self.epochs.get(row.item_key)) for row in rows]

    # ----------------------------------------------------------------------------- heartbeat
    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name="loyalty-claims", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        p = self.ledger.placeholder
        while not self._stop.wait(self.lease / 4):
            try:
                self._tx(
                    "claim renewal",
                    lambda conn: claims.renew_all(
                        conn, self.table, p, self.owner.token, now=self.clock(), lease=self.lease
                    ),
                )
            except Exception as exc:  # noqa: BLE001 - the fence before each send still decides
                self.log.warning("Could not renew the claims (%s); the next fence decides", type(exc).__name__)

    def finish(self) -> None:
        """Stop the heartbeat; release the claims of items never sent (sent ones keep theirs until answered)."""
        self._stop.set()
        _LIVE_TOKENS.discard(self.owner.token)
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=30)
        unsent = sorted(key for key in self.held if key not in self.intended)
        if not unsent:
            return
        p = self.ledger.placeholder
        try:
            self._tx(
                "claim release", lambda conn: claims.release(conn, self.table, p, self.vendor, unsent, self.owner.token)
            )
        except Exception as exc:  # noqa: BLE001 - their leases run out; nothing was sent for them
            self.log.warning("Could not release %d unsent claim(s) (%s); their leases run out", len(unsent), exc)
