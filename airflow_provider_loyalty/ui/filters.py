"""The page's filters, read and checked once per request (one FastAPI dependency for every route).

Every route of the page and its API takes the same :class:`Filters`: the search text, the vendor,
the outcome, the failure code and the window. A value that is not allowed answers 422 before any
query runs; every value that reaches SQL is a bound parameter (:mod:`.queries`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Depends, HTTPException, Query

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.ui.queries import ITEM_STATUSES, MAX_CODE_CHARS, MAX_QUERY_CHARS, check_code, check_query

#: The longest window, in days.
MAX_DAYS = 366
#: The windows the page offers (any other length in ``1..MAX_DAYS`` is accepted too).
WINDOWS = (7, 14, 30, 90)
DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Filters:
    """What a request asks for (checked).

    :param query: search text (an id, an item key or a run id); empty: no search.
    :param vendor: one vendor, or ``None`` for all.
    :param status: an item state now (``succeeded``, ``refused``, ``invalid``, ``in_doubt``,
        ``not_sent``, ``failed``...); ``None`` for any.
    :param code: a failure code (or ``already_reversed``, ``invalid``); empty for any.
    :param days: the window, today included.
    :param reference: a business reference (an order id), or the start of one; empty for any.
    """

    query: str = ""
    vendor: str | None = None
    status: str | None = None
    code: str = ""
    days: int = DEFAULT_DAYS
    reference: str = ""

    def params(self, **changes: Any) -> dict[str, Any]:
        """The query-string parameters that ask for these filters (empty ones left out), with ``changes``."""
        names = {"query": "q"}
        values = {names.get(k, k): v for k, v in asdict(self).items()}
        return {k: v for k, v in {**values, **changes}.items() if v not in (None, "")}

    @property
    def any(self) -> bool:
        """A filter other than the window is set."""
        return bool(self.query or self.vendor or self.status or self.code or self.reference)

    def kwargs(self) -> dict[str, Any]:
        """The filters as the reader's keyword arguments."""
        return {
            "query": self.query,
            "vendor": self.vendor,
            "status": self.status,
            "code": self.code,
            "reference": self.reference,
            "days": self.days,
        }


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str | None:
    """An optional filter from a query string: ``""`` means all; anything else must be allowed."""
    value = value.strip()
    if not value:
        return None
    if value not in allowed:
        raise HTTPException(status_code=422, detail=f"{name} must be one of {', '.join(allowed)} (or empty)")
    return value


def _checked(check: Any, value: str, name: str) -> str:
    try:
        return str(check(value))
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"{name}: {exc}") from None


def read_filters(
    q: str = Query(
        "",
        max_length=MAX_QUERY_CHARS,
        description="an id of an item (any of its vendor's id fields), its item key, a run id or an approver",
    ),
    vendor: str = Query("", max_length=16, description="a vendor's name, or empty for all"),
    status: str = Query(
        "", max_length=16, description=f"items in this state now: {', '.join(ITEM_STATUSES)}; empty for any"
    ),
    code: str = Query("", max_length=MAX_CODE_CHARS, description="items with an attempt of this code"),
    days: int = Query(DEFAULT_DAYS, ge=1, le=MAX_DAYS, description="window length in days, today included"),
    reference: str = Query("", max_length=MAX_QUERY_CHARS, description="items whose reference starts with this"),
) -> Filters:
    """The request's :class:`Filters` (422 for a value that is not allowed)."""
    return Filters(
        query=_checked(check_query, q, "q"),
        vendor=_choice(vendor, tuple(s.name for s in vendors.all_specs()), "vendor"),
        status=_choice(status, ITEM_STATUSES, "status"),
        code=_checked(check_code, code, "code"),
        days=days,
        reference=_checked(check_query, reference, "reference"),
    )


#: The dependency every route declares: ``filters: Filters = FILTERS``.
FILTERS: Any = Depends(read_filters)
