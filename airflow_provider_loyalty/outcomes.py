"""What became of one item: the vocabulary the hooks' answer readers, the runner and the ledger share.

At the bottom of the import graph (nothing of Airflow; of the provider only
:mod:`~airflow_provider_loyalty.items`), so the hooks, the ledger, the operators and the UI all speak
it without importing each other. An outcome says what became of one item in one attempt:

============================  ==========  ================  =====================================
what happened                 ``status``  ``failure_kind``  next try / run
============================  ==========  ================  =====================================
vendor confirmed it            succeeded   –                 skipped (done)
resent after an attempt that   succeeded   –                 skipped (done); ``code`` is
may have applied it, vendor                                  ``already_reversed``
says "already reversed"
vendor refused this item       failed      permanent         not resent (``retry_refused`` resends)
vendor refused the request     failed      rejected          resent (configuration, credentials...)
unclear, transport trouble     failed      transient         resent
about to be sent (intent)      sending     –                 an item whose latest row is
                                                             ``sending`` is *in doubt*
============================  ==========  ================  =====================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, Protocol

from airflow_provider_loyalty.items import Item

#: ``code`` of an item resent after an attempt that may have applied it, and answered "already reversed".
ALREADY_REVERSED = "already_reversed"
#: ``code`` of a request's items when the request may have reached the vendor but no answer came
#: back (read timeout, connection dropped after sending).
NO_ANSWER = "no_answer"
#: ``code`` of an item the vendor's answer did not clearly settle (not mentioned, contradictory).
UNKNOWN = "unknown"
#: ``code`` of an item under another attempt's live claim: not sent, not recorded, left for its owner
#: (counted as ``claimed_elsewhere`` in the summary, never as failed).
CLAIMED_ELSEWHERE = "claimed_elsewhere"
#: ``code`` of a vendor answer that reached an attempt after another attempt took its claim over:
#: kept as a fact (the message quotes the answer), settling nothing over the new owner's outcome.
SUPERSEDED = "superseded"
#: Transient failures that leave an item *in doubt* (the vendor may have applied it), so that a resend
#: answered "already reversed" is reconciled: no answer, an unclear one, a gateway timeout
#: (``http_504``, as the HTTP layer judges it). An error page (``http_503``) or a refused connection
#: is not among them: the request did not go through, so "already reversed" (Capillary's 731 also
#: means "invalid") would not be the echo of ours. See :mod:`airflow_provider_loyalty.ledger.state`.
IN_DOUBT_CODES = (NO_ANSWER, UNKNOWN, "http_504")


class Status(str, Enum):
    """The ``status`` column of a ledger row."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: intent: written (and committed) just before the request leaves
    SENDING = "sending"
    #: an input row that was not valid, skipped with ``on_invalid="skip"`` (never sent)
    INVALID = "invalid"


class FailureKind(str, Enum):
    """Why an item failed, which decides whether a later try sends it again."""

    #: the vendor refused *this item* for good (already redeemed, invalid id): settled, not resent
    PERMANENT = "permanent"
    #: the vendor refused the request as a whole (credentials, configuration): not settled, resent
    REJECTED = "rejected"
    #: transport trouble or an unclear answer: the vendor may or may not have applied it; resent
    TRANSIENT = "transient"


@dataclass(slots=True)  # not frozen: one per item, and frozen dataclasses cost 3x to build
class Outcome:
    """What became of one item in one attempt.

    :param item: the item.
    :param ok: the vendor confirmed the reversal of exactly this item (or, reconciled, that it was
        already reversed after an attempt of ours that may have applied it).
    :param code: the vendor's code, or ours (``unknown``, ``http_503``, ``not_sent``, ``already_reversed``).
    :param message: the vendor's (or our) message.
    :param kind: for a failure, what kind (decides whether it is resent).
    """

    item: Item
    ok: bool
    code: str | None = None
    message: str = ""
    kind: FailureKind | None = None

    @property
    def key(self) -> str:
        """The item's ledger key."""
        return self.item.key

    @property
    def transient(self) -> bool:
        """A later try may get a different answer."""
        return self.kind is FailureKind.TRANSIENT

    @property
    def reconciled(self) -> bool:
        """Done by an earlier attempt, as the vendor's "already reversed" answer to a resend shows."""
        return self.ok and self.code == ALREADY_REVERSED

    @classmethod
    def succeeded(cls, item: Item, message: str = "") -> Outcome:
        """The vendor confirmed it."""
        return cls(item, True, None, message)

    @classmethod
    def failed(cls, item: Item, code: str | None, message: str, kind: FailureKind) -> Outcome:
        """The item is not done."""
        return cls(item, False, code, message, kind)

    def as_failure(self) -> dict[str, Any]:
        """The entry of the summary's ``failures`` list."""
        return {**self.item.ident(), "code": self.code, "message": self.message}


class VendorResult(Protocol):
    """What a hook's reversal call returns: one outcome per item sent, in order."""

    @property
    def outcomes(self) -> list[Outcome]:
        """One per item, in request order."""
        ...

    @property
    def after_ambiguous_attempt(self) -> bool:
        """An earlier attempt of this very request may have been applied (it was resent)."""
        ...


class Settled(NamedTuple):
    """What the ledger already knows of an item: settled (done or refused for good), or in doubt."""

    ok: bool
    code: str | None
    message: str | None
    run_id: str | None = None
    dag_id: str | None = None


@dataclass(frozen=True)
class AlreadyReversed:
    """Which refusals mean "this item is already reversed" (an earlier attempt of ours applied it).

    Used only for items an earlier attempt may have applied (an intent in the ledger with no
    outcome, or a resend after an ambiguous answer in this attempt): for any other item the same
    answer stays a refusal.

    :param codes: vendor codes that mean it (Capillary: ``731`` invalid earn id — the earn was valid
        when we sent it, and a revoked earn is no longer valid).
    :param messages: regular expressions searched (case-insensitive) in the vendor's message.
    """

    codes: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()

    @classmethod
    def coerce(cls, value: Any, default: AlreadyReversed) -> AlreadyReversed:
        """Read the operator argument.

        ``None`` means the vendor's default, ``False`` never; otherwise an :class:`AlreadyReversed`
        or a dict ``{"codes": [...], "messages": [...]}``.
        """
        if value is None or value is True:
            return default
        if value is False:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict) and set(value) <= {"codes", "messages"}:
            codes, messages = value.get("codes") or (), value.get("messages") or ()
            if isinstance(codes, (str, int)) or isinstance(messages, str):
                raise ValueError("already_reversed: 'codes' and 'messages' must be lists")
            matcher = cls(tuple(str(c) for c in codes), tuple(str(m) for m in messages))
            matcher.patterns  # noqa: B018 - compile now: a bad expression fails at DAG parse, not mid-run
            return matcher
        raise ValueError(f"already_reversed must be None, False or a dict with 'codes'/'messages' lists, got {value!r}")

    @property
    def patterns(self) -> list[re.Pattern[str]]:
        """The compiled message expressions (one that matches an empty message would match any refusal)."""
        try:
            compiled = [re.compile(m, re.IGNORECASE) for m in self.messages]
        except re.error as exc:
            raise ValueError(f"already_reversed: bad message pattern ({exc})") from None
        loose = [p.pattern for p in compiled if p.search("") or p.search("Earn already redeemed refused")]
        if loose:
            raise ValueError(
                f"already_reversed: message pattern {loose[0]!r} matches any refusal (even an empty message or "
                "'Earn already redeemed'); name what 'already reversed' says"
            )
        return compiled

    def matches(self, code: str | None, message: str | None) -> bool:
        """Whether a refusal with ``code`` and ``message`` says the item is already reversed."""
        if code is not None and str(code) in self.codes:
            return True
        text = message or ""
        return any(p.search(text) for p in self.patterns)


def reconcile(
    outcomes: Sequence[Outcome], in_doubt: Iterable[str], matcher: AlreadyReversed, earlier: str
) -> list[Outcome]:
    """Turn the "already reversed" refusals of items an earlier attempt may have applied into successes.

    :param outcomes: one request's outcomes.
    :param in_doubt: keys of the items in doubt (an earlier attempt may have applied them).
    :param matcher: what "already reversed" looks like at this vendor.
    :param earlier: where the earlier attempt was, for the message (e.g. ``run scheduled__…``).
    """
    in_doubt = set(in_doubt)
    if not in_doubt:
        return list(outcomes)
    result = []
    for outcome in outcomes:
        if (
            not outcome.ok
            and outcome.kind is FailureKind.PERMANENT
            and outcome.key in in_doubt
            and matcher.matches(outcome.code, outcome.message)
        ):
            outcome = Outcome(
                outcome.item,
                True,
                ALREADY_REVERSED,
                f"reversed by an earlier attempt ({earlier}); the vendor now answers: "
                f"{outcome.code + ' ' if outcome.code else ''}{outcome.message}".strip(),
            )
        result.append(outcome)
    return result
