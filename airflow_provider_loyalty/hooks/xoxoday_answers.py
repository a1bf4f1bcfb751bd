"""Reading a cancelBalance answer strictly: one outcome per requested id, success only when confirmed.

Kept apart from the hook (tokens, sending) because it is the part trust depends on: pure functions
over the parsed answer, tested on their own and by hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow_provider_loyalty.hooks._answers import is_json_int, show
from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.outcomes import UNKNOWN, FailureKind, Outcome

if TYPE_CHECKING:
    from airflow_provider_loyalty.models import CancelPointsResult, XoxodayCancelBalance

#: ``code`` of an id the vendor answered ``success: false`` for (Xoxoday gives no code of its own).
REFUSED = "refused"


def interpret_cancel(items: Sequence[PointItem], balance: XoxodayCancelBalance) -> CancelPointsResult:
    """Turn a cancel answer's ``data.cancelBalance`` into one outcome per requested item, in order.

    Per docs/design.md the per-recipient ``success`` is the outcome (the overall ``error`` flag does not
    say which ids failed), read strictly, since a wrong success is never retried:

    * a recipient speaks for an id of ours only when its ``unique_id`` is a JSON integer equal to it
      (``true``, ``"5"``, ``5.0`` are not ids of ours; recipients for ids we did not request are
      ignored);
    * its outcome is ``success`` only when that is a JSON boolean (``"true"``, ``1``, ``null`` or a
      missing flag leave the id unknown);
    * an id listed more than once counts only if every listing says the same; a contradiction
      (cancelled and refused) is unknown. Listings naming the id mistyped (``"5"``, ``5.0``) are
      not outcomes, but one whose ``success`` is not the same JSON boolean contradicts the
      outcome: the id is unknown.

    * a success stands only when nothing in the answer contradicts the request as a whole: the
      overall ``error`` flag may be ``true`` only beside a refused recipient (it does not say which
      ids failed; ``true`` with every entry claiming success says the operation failed, and a value
      that is not a JSON boolean is unclear), the answer must carry no top-level ``errors`` beside
      ``data``, and no recipient entry that cannot be attributed to an id (not an object, or naming
      ``null``, ``"5.0"``, ``"²"``, ``5.5``...) may say anything but success: such an entry could be
      about any of ours, so every would-be success of the request is unknown. Refusals stand (the
      vendor said so for exactly that id).

    A cancelled id succeeds; a refused one fails for good (:attr:`FailureKind.PERMANENT`, code
    ``refused``); any other is ``unknown`` (:attr:`FailureKind.TRANSIENT`) with a message naming
    what was off.

    :param items: the items sent, in request order.
    :param balance: the answer's ``data.cancelBalance``.
    """
    from airflow_provider_loyalty.models import CancelPointsResult

    requested = {item.unique_id for item in items}
    said: dict[int, list[tuple[object, str]]] = {}
    #: listings naming one of our ids with the wrong JSON type: (raw id, flag) — not ours, but evidence
    mistyped: dict[int, list[tuple[object, object]]] = {}
    #: the first recipient entry that cannot be attributed to any id: it may be about any of ours
    unattributed: str | None = None
    for recipient in balance.recipients:
        uid, message = recipient.unique_id, recipient.message or ""
        if not recipient.is_object:
            unattributed = unattributed or f"recipients[] holds {show(recipient.raw)}, not an object naming an id"
        elif is_json_int(uid):
            if uid in requested:
                said.setdefault(uid, []).append((recipient.success, message))
        elif (as_int := _looks_like(uid)) is not None:
            if as_int in requested:
                mistyped.setdefault(as_int, []).append((uid, recipient.success))
        elif isinstance(uid, str) and _ASCII_DIGITS.fullmatch(uid.strip()):
            pass  # a digit string too long for any id of ours: another transaction's, mistyped
        elif unattributed is None and recipient.success is not True:  # a stray success contradicts nothing
            named = "unique_id null or missing" if uid is None else f"unique_id {show(uid)}"
            unattributed = f"recipients[] holds an entry with {named}, which names no id"
    doubt = _request_doubt(balance, unattributed)
    outcomes = []
    for item in items:
        uid = item.unique_id
        listings = said.get(uid)
        if not listings:
            why = "not mentioned in the vendor's answer"
            if uid in mistyped:
                why = f"the answer names it only as unique_id {show(mistyped[uid][0][0])}, not a JSON integer"
            elif unattributed is not None:
                why = f"{why}, but {unattributed}"
            outcomes.append(_unknown(item, why))
            continue
        flags = {flag for flag, _ in listings if type(flag) is bool}
        odd = next((flag for flag, _ in listings if type(flag) is not bool), _NOTHING)
        if odd is not _NOTHING:
            why = "no success flag" if odd is None else f"success {show(odd)}, not a JSON boolean"
            vendor_message = next((m for f, m in listings if f is odd and m), "")
            outcomes.append(_unknown(item, f"{why}{': ' + vendor_message if vendor_message else ''}"))
        elif len(flags) > 1:
            outcomes.append(
                _unknown(item, f"listed {len(listings)} times with different outcomes (success true and false)")
            )
        else:
            flag = flags.pop()
            # a mistyped listing is no outcome of ours, but one saying otherwise contradicts ours
            other = next(((raw, f) for raw, f in mistyped.get(uid, ()) if f is not flag), None)
            if other is not None:
                said_other = "no success flag" if other[1] is None else f"success {show(other[1])}"
                outcomes.append(
                    _unknown(
                        item,
                        f"listed with success {show(flag)}, but a listing with unique_id {show(other[0])} "
                        f"says {said_other}",
                    )
                )
            elif flag and doubt is not None:
                outcomes.append(_unknown(item, f"listed with success true, but {doubt}"))
            elif flag:
                outcomes.append(Outcome.succeeded(item, listings[0][1]))
            else:
                outcomes.append(Outcome.failed(item, REFUSED, listings[0][1], FailureKind.PERMANENT))
    return CancelPointsResult(
        outcomes=outcomes,
        error=balance.error if isinstance(balance.error, bool) else None,
        message=balance.message,
    )


_NOTHING = object()


def _request_doubt(balance: XoxodayCancelBalance, unattributed: str | None) -> str | None:
    """What in the answer casts doubt on every success of the request (``None``: nothing).

    The top-level ``errors`` (anything but absent, ``null`` or ``[]``), an overall ``error`` true
    while no recipient is refused (or not a JSON boolean), or a recipient entry that names no id.
    """
    errors = balance.answer_errors
    if errors is not None and errors != []:
        return f"the answer carries errors {show(errors)} beside data"
    error = balance.error
    # ``error`` does not say which ids failed (docs/design.md): true beside a refused recipient is the usual
    # partial answer, and each recipient's own flag decides. True with no refusal anywhere says the
    # operation failed while every entry claims success: a contradiction.
    refused_any = any(r.is_object and r.success is False for r in balance.recipients)
    if error is True and not refused_any:
        said = f" ({balance.message})" if balance.message else ""
        return f"data.cancelBalance.error is true{said} although no recipient is refused: the cancellation failed"
    if error is not None and type(error) is not bool:
        return f"data.cancelBalance.error is {show(error)}, not a JSON boolean"
    return unattributed


def _unknown(item: PointItem, why: str) -> Outcome:
    """The answer did not clearly settle ``item``: a later try asks again."""
    return Outcome.failed(item, UNKNOWN, why, FailureKind.TRANSIENT)


def _looks_like(value: object) -> int | None:
    """The integer a mistyped id (digit string, integral number, boolean) resembles, for messages only."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _ASCII_ID.fullmatch(value.strip()):  # not str.isdigit: "²" is a digit
        return int(value.strip())
    return None


_ASCII_ID = re.compile(r"[0-9]{1,19}")
_ASCII_DIGITS = re.compile(r"[0-9]+")
