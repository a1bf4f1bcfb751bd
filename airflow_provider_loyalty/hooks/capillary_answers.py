"""Reading a revokeEarn answer strictly: one outcome per requested earn, "revoked" only when confirmed.

Kept apart from the hook (auth, sending) because it is the part trust depends on: pure functions
over the parsed answer, tested on their own and by hypothesis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.hooks._answers import is_json_int, show
from airflow_provider_loyalty.items import EarnItem
from airflow_provider_loyalty.outcomes import UNKNOWN, FailureKind, Outcome

if TYPE_CHECKING:
    from airflow_provider_loyalty.models import RevokeEarnResult

#: ``revokedDetails[].status`` values (any ASCII case) under which the listed ``revokedEarnIds`` count as
#: revoked. The docs define ``revokedEarnIds`` as the earns "successfully revoked"; a promotion with
#: some earns refused answers PARTIAL_SUCCESS and names the refused ones in ``errors[]`` (as the
#: sandbox does). Any other status (``FAILED``, missing, not a string) confirms nothing.
CONFIRMING_STATUSES = frozenset({"SUCCESS", "PARTIAL_SUCCESS"})


def interpret_revoke(items: Sequence[EarnItem], parsed: Any) -> RevokeEarnResult:
    """Turn a revokeEarn answer (either documented shape) into one outcome per requested earn.

    Strict about success, since a wrong "revoked" is never retried (trust rules in docs/design.md):

    * **revoked** only when a ``data.revokedDetails`` entry with status ``SUCCESS`` (or
      ``PARTIAL_SUCCESS``, any case: :data:`CONFIRMING_STATUSES`) names the earn id under exactly its requested promotion (both JSON strings), the answer's
      ``data.customerId`` is the requested customer (a JSON integer), and nothing contradicts it:
      no ``errors[]`` entry names it or may concern it, no entry with another status lists it,
      and ``data`` carries no ``code``/``message`` (the documented failure shape) beside it.
      Earn ids are the vendor's own, so an ``errors[]`` entry or a non-confirming
      ``revokedDetails`` entry naming the earn under another promotion (one we did not ask for,
      or another of ours) also contradicts it: unknown.
    * **failed** when an ``errors[]`` entry names it: by earn id (within the entry's promotion, if
      it names one), by promotion when the entry names no earn ids, or the whole request when it
      names neither — unless the answer also lists the earn as revoked (contradiction: unknown).
      The second documented shape (``data:{code,message}``) names no customer: failures need no
      customer confirmation, but a ``customerId`` naming another customer voids every outcome.
    * **unknown** otherwise, with a message naming the answer field that was off. A
      ``revokedDetails`` entry without a (string) ``promotionId`` cannot be attributed: the strict
      option is taken, its earn ids are at most unknown, even when requested under one promotion only.
      Likewise an ``errors[]`` entry that cannot be attributed precisely (not an object, a blank or
      non-string ``promotionId``, ``earnIds`` not a list of strings) makes every earn it could
      concern unknown: its promotion's, the earns it names, or the whole request's.

    Revoked earns succeed; failed ones fail for good (:attr:`FailureKind.PERMANENT`), or, when
    the refusal was of the request as a whole, :attr:`FailureKind.REJECTED` (not settled: resent);
    unknown ones are :attr:`FailureKind.TRANSIENT` with code ``unknown``.

    :param items: the earns sent, all of one customer, in request order.
    :param parsed: the :class:`~airflow_provider_loyalty.models.RevokeEarnResponse` received.
    :return: one :class:`~airflow_provider_loyalty.outcomes.Outcome` per item, in order.
    """
    from airflow_provider_loyalty.models import RevokeEarnResult

    customer_id = items[0].customer_id
    wanted = [(item.promotion_id, item.earn_id) for item in items]
    by_earn: dict[str, list[str]] = {}
    for promo, earn in wanted:
        promos = by_earn.setdefault(earn, [])
        if promo not in promos:
            promos.append(promo)
    by_promo: dict[str, list[tuple[str, str]]] = {}
    for key in dict.fromkeys(wanted):
        by_promo.setdefault(key[0], []).append(key)

    data = parsed.data
    answered_customer = data.customerId if data is not None else None
    if answered_customer is not None and not is_json_int(answered_customer, customer_id):
        why = f"answer names customer {show(answered_customer)}, not {customer_id}"
        return RevokeEarnResult(
            customer_id=customer_id,
            outcomes=[_unknown(item, why) for item in items],
        )

    evidence = _Evidence()
    for detail in data.revokedDetails if data is not None else ():
        evidence.read_detail(detail, by_earn, by_promo)
    if data is not None and (data.code is not None or data.message is not None):
        # the documented failure shape (data:{code,message}); beside revokedDetails it contradicts them
        said = f"data.code {data.code}" if data.code is not None else "data.message"
        evidence.top_level_failure = f"{said} ({data.message or 'no message'}) accompanies revokedDetails"
    fallback_code = data.code if data is not None and data.code else None
    fallback_message = data.message if data is not None and data.message else ""
    for error in parsed.errors:
        evidence.read_error(error, wanted, by_earn, by_promo, fallback_code, fallback_message)

    customer_named = answered_customer is not None
    outcomes = [evidence.decide(item, customer_named) for item in items]
    return RevokeEarnResult(customer_id=customer_id, outcomes=outcomes)


_Key = tuple[str, str]


class _Evidence:
    """What one answer says about each requested (promotion, earn) key, before deciding."""

    def __init__(self) -> None:
        self.revoked: dict[_Key, str] = {}  # clean claims: key -> status text
        self.unattributed: dict[_Key, str] = {}  # SUCCESS entries lacking a usable promotionId
        self.contradicted: dict[_Key, str] = {}  # entries listing it with a non-confirming status
        self.failed: dict[_Key, tuple[str | None, str, bool]] = {}
        self.unclear: dict[_Key, str] = {}  # errors[] entries that may concern it but cannot be read
        #: ``data.code``/``data.message`` beside the revoked details: the request as a whole failed?
        self.top_level_failure: str | None = None

    def read_detail(self, detail: Any, by_earn: dict[str, list[str]], by_promo: dict[str, list[_Key]]) -> None:
        """Record one ``revokedDetails`` entry."""
        promo, status, earns = detail.promotionId, detail.status, detail.revokedEarnIds
        attributed = isinstance(promo, str) and promo != ""
        success = is_confirming(status)
        if not isinstance(earns, list):
            if earns is not None and attributed and promo in by_promo:
                for key in by_promo[promo]:
                    self.unclear.setdefault(key, f"revokedDetails revokedEarnIds of promotion {promo} is not a list")
            return
        for earn in earns:
            if not isinstance(earn, str) or earn not in by_earn:
                continue  # not an earn id of ours (a number is never one: ours are strings)
            if attributed and success:
                if promo not in by_earn[earn]:
                    continue  # revoked under a promotion we did not ask it under: no claim of ours
                keys = [(promo, earn)]
            else:
                # unattributed, or (earn ids being the vendor's own) listed unrevoked under any
                # promotion: every key of the earn is in doubt
                keys = [(p, earn) for p in by_earn[earn]]
            for key in keys:
                if not success:
                    said = "no status" if status is None else f"status {show(status)}"
                    where = f"promotion {promo}" if attributed else "no promotionId"
                    self.contradicted.setdefault(key, f"revokedDetails entry ({where}) lists it with {said}")
                elif attributed:
                    self.revoked[key] = status
                else:
                    self.unattributed.setdefault(
                        key, f"revokedDetails entry lists it without a usable promotionId (got {show(promo)})"
                    )

    def read_error(
        self,
        error: Any,
        wanted: list[_Key],
        by_earn: dict[str, list[str]],
        by_promo: dict[str, list[_Key]],
        fallback_code: str | None,
        fallback_message: str,
    ) -> None:
        """Record one ``errors[]`` entry: a failure of the keys it names, or doubt if it cannot be read.

        An entry is attributed only when it is a JSON object whose ``promotionId`` is absent or a
        non-blank string and whose ``earnIds`` is absent or a list of strings. Otherwise every
        requested key it could concern is in doubt: the keys of its promotion, or those of the earn
        ids it names when the promotion is unreadable, or the whole request when nothing narrows it.
        """
        if not error.is_object:
            for key in wanted:
                self.unclear.setdefault(key, f"errors[] holds {show(error.raw)}, not an object naming earns")
            return
        promo, earns = error.promotionId, error.earnIds
        code = error.code or fallback_code
        message = error.message or fallback_message or "refused"
        promo_readable = promo is None or (isinstance(promo, str) and promo.strip() != "")
        if promo_readable and promo is not None and isinstance(earns, list):
            # earn ids are the vendor's own: one of ours named under a promotion we did not request it
            # under (another request's, or another of ours) is evidence against it, though not its refusal
            for earn in earns:
                for p in by_earn.get(earn, ()) if isinstance(earn, str) else ():
                    if p != promo:
                        self.unclear.setdefault(
                            (p, earn),
                            f"an errors[] entry (code {code}: {message}) names it under promotionId {promo}",
                        )
        if promo_readable and promo is not None and promo not in by_promo:
            return  # otherwise about a promotion we did not ask for
        in_scope = by_promo[promo] if promo_readable and promo is not None else wanted
        odd_earn = _first_non_string(earns)
        if not promo_readable or odd_earn is not _NOTHING:
            if odd_earn is _NOTHING and earns:  # only the promotion is unreadable: narrow by the earn ids
                in_scope = [k for k in in_scope if k[1] in earns]
            if not promo_readable:
                what = "not a string" if not isinstance(promo, str) else "blank"
                why = f"an errors[] entry names promotionId {show(promo)} ({what})"
            elif not isinstance(earns, list):
                why = f"an errors[] entry's earnIds is {show(earns)}, not a list"
            else:
                why = f"an errors[] entry's earnIds holds {show(odd_earn)}, not a string earn id"
            for key in in_scope:
                self.unclear.setdefault(key, why)
            return
        whole_request = False
        if earns:
            targets = [(p, earn) for earn in earns for p in by_earn.get(earn, ()) if promo is None or p == promo]
        elif promo is not None:
            targets = list(in_scope)
        else:  # an error naming no promotion and no earn is about the request itself
            targets, whole_request = list(wanted), True
        for key in targets:
            self.failed.setdefault(key, (code, message, whole_request))

    def decide(self, item: EarnItem, customer_named: bool) -> Outcome:
        """What the answer says of ``item``, all evidence weighed."""
        key = (item.promotion_id, item.earn_id)
        failure = self.failed.get(key)
        claimed = key in self.revoked
        if failure is not None:
            code, message, whole = failure
            if claimed or key in self.unattributed:
                return _unknown(item, f"listed as revoked and in errors[] (code {code}: {message})")
            return Outcome.failed(item, code, message, FailureKind.REJECTED if whole else FailureKind.PERMANENT)
        if claimed or key in self.unattributed:
            if self.top_level_failure is not None:
                return _unknown(item, f"listed as revoked, but {self.top_level_failure}")
        if claimed:
            if key in self.contradicted:
                return _unknown(item, f"listed as revoked, but a {self.contradicted[key]}")
            if key in self.unclear:
                return _unknown(item, f"listed as revoked, but {self.unclear[key]}")
            if not customer_named:
                return _unknown(item, "listed as revoked, but the answer has no data.customerId")
            return Outcome.succeeded(item, self.revoked[key])
        for doubts in (self.contradicted, self.unattributed, self.unclear):
            if key in doubts:
                return _unknown(item, doubts[key])
        return _unknown(item, "neither revoked nor named in an error")


def is_confirming(status: object) -> bool:
    """Whether a ``revokedDetails[].status`` confirms its earns: :data:`CONFIRMING_STATUSES`, any ASCII case.

    ASCII only: ``str.upper`` maps ``"ſuccess"`` (long s) to ``"SUCCESS"``.
    """
    return isinstance(status, str) and status.isascii() and status.upper() in CONFIRMING_STATUSES


def _unknown(item: EarnItem, why: str) -> Outcome:
    """The answer did not clearly settle ``item``: a later try asks again."""
    return Outcome.failed(item, UNKNOWN, why, FailureKind.TRANSIENT)


_NOTHING: Any = object()


def _first_non_string(earns: object) -> object:
    """Return what keeps ``earns`` from being a list of string earn ids, or :data:`_NOTHING`.

    That is its first element that is not a string, or ``earns`` itself when it is neither a list
    nor absent.
    """
    if earns is None:
        return _NOTHING
    if not isinstance(earns, list):
        return earns
    return next((earn for earn in earns if not isinstance(earn, str)), _NOTHING)
