"""What one item to reverse is, and which values may name one.

At the bottom of the import graph with :mod:`~airflow_provider_loyalty.outcomes`: the operators'
parsers and the hooks build items with the same rules, so a value is judged once, the same way,
whoever receives it. An item carries its own ledger key and columns (the SQL key expression next to
the Python one); nothing ever splits a key back into fields.

The rules are the ledger's limits (DESIGN.md, "Trust rules"): ids are positive integers up to
:data:`MAX_BIGINT`; text ids are non-empty, at most :data:`MAX_TEXT_ID_CHARS` characters, without
control characters; a promotion id holds no ``/`` (the earn key's separator).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from numbers import Integral
from typing import Any, NamedTuple

from airflow_provider_loyalty._show import show

#: The largest id the ledger can store (``BIGINT`` in SQLite, DuckDB, PostgreSQL, Snowflake).
MAX_BIGINT = 2**63 - 1
#: The ledger's ``promotion_id`` / ``earn_id`` columns are ``VARCHAR(200)``.
MAX_TEXT_ID_CHARS = 200
#: Digits ``MAX_BIGINT`` has; a longer integer cannot be an id the ledger stores.
MAX_ID_DIGITS = len(str(MAX_BIGINT))
#: Characters a text id may not hold. NUL cannot be stored in PostgreSQL text at all. The other C0/C1
#: control characters and lone surrogates are never part of a vendor id: they come from a broken
#: extraction (a stray ``\r`` of a CRLF file, binary garbage), cannot be encoded as UTF-8 (surrogates)
#: for the vendor's JSON body or the ledger, and would make logs, CSV exports and the UI lie about
#: which id was reversed. Refusing them names the row; sending them would reverse nothing we can trace.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DIGITS = re.compile(r"([+-]?)([0-9]+)")


class PointItem(NamedTuple):
    """One Xoxoday points issuance to cancel."""

    unique_id: int

    @property
    def key(self) -> str:
        """The ledger's ``item_key``."""
        return str(self.unique_id)

    def ident(self) -> dict[str, Any]:
        """The item's fields as the summary and failure messages show them."""
        return {"unique_id": self.unique_id}


class EarnItem(NamedTuple):
    """One Capillary cart-promotion earn to revoke."""

    customer_id: int
    promotion_id: str
    earn_id: str

    @property
    def key(self) -> str:
        """The ledger's ``item_key`` (``promotion_id`` never contains ``/``: the parser refuses it)."""
        return f"{self.customer_id}/{self.promotion_id}/{self.earn_id}"

    def ident(self) -> dict[str, Any]:
        """The item's fields as the summary and failure messages show them."""
        return {"customer_id": self.customer_id, "promotion_id": self.promotion_id, "earn_id": self.earn_id}


Item = PointItem | EarnItem

#: SQL expressions of ``item_key`` over an extraction's columns, next to the Python ``key`` above.
POINTS_KEY_SQL = "CAST({unique_id} AS VARCHAR)"
EARN_KEY_SQL = "CAST({customer_id} AS VARCHAR) || '/' || {promotion_id} || '/' || {earn_id}"


def positive_int(value: Any) -> tuple[int | None, str]:
    """Return ``(id, "")`` for a positive integer id the ledger can store, else ``(None, reason)``.

    Accepted: an int, a digit string (surrounding blanks and one ``+`` allowed), an integral finite
    Decimal, or an integral float below 2**53 (from 2**53 on, a float cannot tell an id from its
    neighbour: ``float(2**53 + 1) == 2**53``). Never more than 19 digits are converted, so no value
    costs more than a constant to check (a Decimal: at most linear in its digits).
    """
    if isinstance(value, bool):
        return None, "a boolean, not an id"
    if isinstance(value, int):
        number = int.__int__(value)  # the plain int: a subclass (IntEnum, a driver's type) must compare as one
    elif isinstance(value, str):
        text = value.strip()
        match = _DIGITS.fullmatch(text) if len(text) <= 2 * MAX_ID_DIGITS + 1 else None
        if match is None:
            return None, "not an integer" if len(
                text
            ) <= 2 * MAX_ID_DIGITS + 1 else f"not an id ({len(text)} characters)"
        digits = match[2].lstrip("0") or "0"
        if len(digits) > MAX_ID_DIGITS:
            return None, f"above {MAX_BIGINT}, the largest id the ledger stores"
        number = -int(digits) if match[1] == "-" else int(digits)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return None, "not a finite number"
        if value <= 0:
            return None, "must be positive"
        if value.adjusted() >= MAX_ID_DIGITS:
            return None, f"above {MAX_BIGINT}, the largest id the ledger stores"
        integral = value.to_integral_value()
        if integral != value:
            return None, "not an integer"
        number = int(integral)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None, "not a finite number"
        if not value.is_integer():
            return None, "not an integer"
        if abs(value) >= 2**53:
            return None, "not an exact integer (a float at or above 2**53)"
        number = int(value)
    elif value is None:
        return None, "missing"
    elif isinstance(value, Integral):  # numpy and other integer types
        try:
            number = operator.index(value)
        except (TypeError, ValueError):
            return None, f"a {type(value).__name__}, not an integer"
    else:
        return None, f"a {type(value).__name__}, not an integer"
    if number <= 0:
        return None, "must be positive"
    if number > MAX_BIGINT:
        return None, f"above {MAX_BIGINT}, the largest id the ledger stores"
    return number, ""


def text_id(value: Any) -> tuple[str | None, str]:
    r"""Return ``(id, "")`` for a non-empty text id the ledger can store (ints are stringified), else ``(None, reason)``.

    Surrounding spaces are dropped. Refused: empty, longer than :data:`MAX_TEXT_ID_CHARS`, or holding
    a control character anywhere, a trailing ``\r`` or tab included (see :data:`_CONTROL` for why).
    """
    if isinstance(value, str):
        text = value.strip(" ")  # spaces only: str.strip() would silently drop \r, \x85... (refused below)
    elif isinstance(value, bool):
        return None, "a boolean, not an id"
    elif isinstance(value, int):
        if value.bit_length() > 4 * MAX_TEXT_ID_CHARS:  # str() would be long, or raise past 4300 digits
            return None, f"longer than {MAX_TEXT_ID_CHARS} characters"
        text = str(int.__int__(value))
    elif value is None:
        return None, "missing"
    else:
        return None, f"a {type(value).__name__}, not a string id"
    if not text:
        return None, "empty"
    if len(text) > MAX_TEXT_ID_CHARS:
        return None, f"longer than {MAX_TEXT_ID_CHARS} characters ({len(text)})"
    bad = None if text.isprintable() else _CONTROL.search(text)  # isprintable: a cheap "none at all"
    if bad is not None:
        return None, f"holds the control character {bad.group()!r}"
    return text, ""


def earn_fields(customer_id: Any, promotion_id: Any, earn_id: Any) -> tuple[int, str, str] | str:
    """The fields of a valid earn, or why they are not one (``"promotion_id contains '/'"``)."""
    customer, why = positive_int(customer_id)
    if customer is None:
        return f"customer_id {why}"
    promotion, why = text_id(promotion_id)
    if promotion is None:
        return f"promotion_id {why}"
    if "/" in promotion:  # the ledger key is customer/promotion/earn: a '/' would make it ambiguous
        return "promotion_id contains '/'"
    earn, why = text_id(earn_id)
    if earn is None:
        return f"earn_id {why}"
    return customer, promotion, earn


def point_items(values: Sequence[Any]) -> list[PointItem]:
    """``values`` as items of one request: :class:`PointItem` as they are, other values read as ids.

    :raises ValueError: naming the values that are no id, or an id given twice (nothing is sent).
    """
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"expected a non-empty list of unique_ids, got {show(values)}")
    items: list[PointItem] = []
    bad: list[str] = []
    for value in values:
        if isinstance(value, PointItem):
            value = value.unique_id  # re-checked: a NamedTuple can be built around any value
        number, why = positive_int(value)
        if number is None:
            bad.append(f"{show(value)} ({why})")
        else:
            items.append(PointItem(number))
    _refuse(bad, "unique_ids", items)
    return items


def earn_items(customer_id: int, earns: Sequence[EarnItem] | Mapping[str, Sequence[str]]) -> list[EarnItem]:
    """The earns of one revoke request for ``customer_id``, as items.

    :param earns: :class:`EarnItem` of that customer, or ``{promotion_id: [earn_id, ...]}``.
    :raises ValueError: naming the values that are no earn of that customer, or an earn given twice.
    """
    if isinstance(earns, Mapping):
        given: list[tuple[Any, Any, Any]] = []
        for promotion, earn_ids in earns.items():
            if isinstance(earn_ids, (str, bytes)) or not isinstance(earn_ids, Sequence):
                raise ValueError(f"earn ids of promotion {show(promotion)} must be a list, got {show(earn_ids)}")
            given.extend((customer_id, promotion, earn) for earn in earn_ids)
    elif isinstance(earns, (str, bytes)) or not isinstance(earns, Sequence):
        raise ValueError(f"expected EarnItems or {{promotion_id: [earn_id, ...]}}, got {show(earns)}")
    else:
        given = []
        for item in earns:
            if not isinstance(item, EarnItem):
                raise ValueError(f"expected EarnItems or {{promotion_id: [earn_id, ...]}}, got {show(item)}")
            given.append(tuple(item))  # type: ignore[arg-type]
    if not given:
        raise ValueError(f"no earn to revoke for customer {show(customer_id)}")
    customer_number, why = positive_int(customer_id)
    if customer_number is None:
        raise ValueError(f"customer_id {show(customer_id)}: {why}")
    items: list[EarnItem] = []
    bad: list[str] = []
    for customer, promotion, earn in given:
        fields = earn_fields(customer, promotion, earn)
        if isinstance(fields, str):
            bad.append(f"{show((customer, promotion, earn))} ({fields})")
        elif fields[0] != customer_number:
            bad.append(f"{show((customer, promotion, earn))} (not customer {show(customer_id)}'s)")
        else:
            items.append(EarnItem(*fields))
    _refuse(bad, "earns", items)
    return items


def _refuse(bad: list[str], what: str, items: Sequence[Item]) -> None:
    """Raise ``ValueError`` naming the first bad values, or the first item given twice."""
    if bad:
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(f"{len(bad)} invalid {what}: {'; '.join(bad[:5])}{more}")
    seen: set[Item] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{what}: {item.key} is given twice in one request")
        seen.add(item)
