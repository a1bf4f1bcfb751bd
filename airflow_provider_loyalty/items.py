"""What one item to reverse is, and which values may name one.

At the bottom of the import graph with :mod:`~airflow_provider_loyalty.outcomes`: the operators'
parsers and the hooks build items with the same rules, so a value is judged once, the same way,
whoever receives it. An item carries its own ledger key and columns (the SQL key expression next to
the Python one); nothing ever splits a key back into fields.

The rules are the ledger's limits (docs/design.md, "Trust rules"): ids are positive integers up to
:data:`MAX_BIGINT`; text ids are non-empty, at most :data:`MAX_TEXT_ID_CHARS` characters, without
control, invisible, unassigned or separator characters (:data:`_REFUSED`) and without whitespace
other than spaces at either end; a promotion id holds no ``/`` (the earn key's separator).
"""

from __future__ import annotations

import hashlib
import operator
import re
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from numbers import Integral
from typing import Any, NamedTuple

from airflow_provider_loyalty._show import bounded_repr, show

#: The largest id the ledger can store (``BIGINT`` in SQLite, DuckDB, PostgreSQL, Snowflake).
MAX_BIGINT = 2**63 - 1
#: The ledger's ``promotion_id`` / ``earn_id`` columns are ``VARCHAR(200)``.
MAX_TEXT_ID_CHARS = 200
#: Digits ``MAX_BIGINT`` has; a longer integer cannot be an id the ledger stores.
MAX_ID_DIGITS = len(str(MAX_BIGINT))
#: Unicode categories a text id may not hold, anywhere: ``Cc`` controls (NUL cannot be stored in
#: PostgreSQL text at all; a stray ``\r`` of a CRLF file or a tab is a different id than the vendor's),
#: ``Cf`` invisible format characters (U+200B zero-width space, U+202E right-to-left override that
#: makes a log or the UI show another id than the one sent, U+FEFF the BOM on a CSV's first cell),
#: ``Cs`` lone surrogates (cannot be encoded as UTF-8 for the vendor's JSON body or the ledger), ``Co``
#: private-use, ``Cn`` unassigned code points and noncharacters (U+FFFF), ``Zl``/``Zp`` line and
#: paragraph separators. None is ever part of a vendor id: they come from a broken extraction, and
#: refusing them names the row, where sending them would reverse nothing we can trace. These are the
#: characters ``str.isprintable()`` is False for, less the ``Zs`` spaces (allowed inside an id).
_REFUSED = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point or a noncharacter",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
#: Blanks trimmed around a digit string (CSV and SQL habits); any other character around it is refused.
BLANKS = " \t\r\n"
#: From here on a binary float cannot tell an id from its neighbour: ``float(2**53 + 1) == 2**53``.
FLOAT_EXACT_LIMIT = 2**53


class FloatText(Decimal):
    """A number written with a fraction or an exponent (``4711.0``, ``1.2345678901234568e+16``): a float's text.

    The text readers (JSON and the repr reader) return it for such a number: its value is the exact
    one the text spells, and it is judged by the same rule as a float (:func:`float_reason`),
    because that is what printing a float gives — a warehouse's 12345678901234567 in a float column
    renders as ``1.2345678901234568e+16``. Its ``repr`` is the text as written.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str, value: Decimal | None = None) -> FloatText:
        """``text`` as written; ``value`` the exact Decimal it spells (``Decimal(text)`` if not given)."""
        number = super().__new__(cls, value if value is not None else text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text


def float_reason(value: float | Decimal) -> str:
    """Why a float (or a float's text, :class:`FloatText`) is no id; ``""`` when it is one exactly.

    The one rule for every reader: a finite integral value below 2**53 in magnitude (``123.0``
    is 123); from 2**53 on, the float (or its text) may stand for a neighbouring id.
    """
    beyond = "a float, or a float's text, at or above 2**53: it may stand for a neighbouring id"
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "not a finite number"
        if value and value.adjusted() >= 16:  # above 2**53 whatever its digits: no sums with a huge exponent
            return beyond
        if value != value.to_integral_value():
            return "not an integer"
    else:
        if value != value or value in (float("inf"), float("-inf")):
            return "not a finite number"
        if not value.is_integer():
            return "not an integer"
    magnitude = value.copy_abs() if isinstance(value, Decimal) else abs(value)
    return beyond if magnitude >= FLOAT_EXACT_LIMIT else ""


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

#: An invalid input value's ledger key: ``invalid:`` and the value's text (a string as it is, any
#: other value as its repr: ``invalid:abc``, ``invalid:-5``, ``invalid:{'unique_id': 2}``).
INVALID_PREFIX = "invalid:"
#: ...or, for a long or unprintable value, a digest of its text (a prefix no text key has).
INVALID_DIGEST_PREFIX = "invalid-sha256:"
#: Longest value text kept as it is in an invalid key.
INVALID_TEXT_CHARS = 200
#: Characters of a huge value's text that go into its digest (bounds the cost of any value).
_INVALID_DIGEST_CHARS = 100_000
#: SQL expression of the invalid key of a text (or integer) column, for an extraction's anti-join.
INVALID_KEY_SQL = "'" + INVALID_PREFIX + "' || CAST({value} AS VARCHAR)"


def invalid_key(value: Any) -> str:
    """The ledger key of an invalid input value: stable from run to run, bounded, never an item's key.

    Item keys start with a digit; these start with ``invalid``. The same offending value gives the
    same key whatever its row, so tomorrow's run knows it (and an extraction can anti-join it with
    :data:`INVALID_KEY_SQL`).
    """
    text = _value_text(value, _INVALID_DIGEST_CHARS)
    if len(text) <= INVALID_TEXT_CHARS and text.isprintable():
        return INVALID_PREFIX + text
    digest = hashlib.sha256(text[:_INVALID_DIGEST_CHARS].encode("utf-8", "surrogatepass")).hexdigest()
    return INVALID_DIGEST_PREFIX + digest


def earn_key_text(fields: Sequence[Any]) -> str:
    """An earn row's fields as its key would read (``customer/promotion/earn``), whatever they hold, at a bounded cost."""
    return "/".join(
        f[:_INVALID_DIGEST_CHARS] if isinstance(f, str) else _value_text(f, INVALID_TEXT_CHARS) for f in fields
    )


def _value_text(value: Any, budget: int) -> str:
    """A value's text as the extraction's SQL cast writes it, where it can tell: a number as its digits.

    A driver's Decimal (a NUMERIC column through psycopg or DuckDB) and any integer type (numpy's
    too) are written as ``CAST(... AS VARCHAR)`` writes them (``-5``, not ``Decimal('-5')``), so an
    extraction's anti-join on :data:`INVALID_KEY_SQL` finds them; anything else as its bounded repr.
    A float's text read from a rendered string (:class:`FloatText`) keeps the text as written.
    """
    if isinstance(value, str):
        return value
    if type(value) is Decimal and value.is_finite() and len(value.as_tuple().digits) <= budget:
        return str(value)
    if isinstance(value, Integral) and not isinstance(value, bool):
        try:
            number = operator.index(value)
        except (TypeError, ValueError):
            return bounded_repr(value, budget)
        return str(number) if number.bit_length() <= min(4 * budget, 14_000) else bounded_repr(number, budget)
    return bounded_repr(value, budget)


class InvalidRow(NamedTuple):
    """An input row skipped as invalid (``on_invalid="skip"``): where, what, why, and its ledger key."""

    #: row number, counted from 1
    number: int
    #: the offending value as messages show it (bounded)
    shown: str
    reason: str
    #: :func:`invalid_key` of the offending value
    key: str
    #: the business reference the row carried (when that part of it was valid)
    reference: str | None = None


def positive_int(value: Any) -> tuple[int | None, str]:
    """Return ``(id, "")`` for a positive integer id the ledger can store, else ``(None, reason)``.

    Accepted: an int, a digit string (one ``+`` and surrounding ASCII blanks — space, tab, CR, LF —
    allowed; other whitespace around it, U+00A0 or U+001C, is refused, not dropped), an integral finite
    Decimal, or an integral float — or a float's text read from a rendered string
    (:class:`FloatText`) — below 2**53 (:func:`float_reason`: from 2**53 on, a float cannot tell an
    id from its neighbour: ``float(2**53 + 1) == 2**53``). Never more than 19 digits are converted, so no value
    costs more than a constant to check (a Decimal: at most linear in its digits).
    """
    if isinstance(value, bool):
        return None, "a boolean, not an id"
    if isinstance(value, int):
        number = int.__int__(value)  # the plain int: a subclass (IntEnum, a driver's type) must compare as one
    elif isinstance(value, str):
        text = value.strip(BLANKS)  # str.strip() would silently drop U+001C-U+001F, U+0085, U+00A0...
        match = _DIGITS.fullmatch(text) if len(text) <= 2 * MAX_ID_DIGITS + 1 else None
        if match is None:
            return None, "not an integer" if len(
                text
            ) <= 2 * MAX_ID_DIGITS + 1 else f"not an id ({len(text)} characters)"
        digits = match[2].lstrip("0") or "0"
        if len(digits) > MAX_ID_DIGITS:
            return None, f"above {MAX_BIGINT}, the largest id the ledger stores"
        number = -int(digits) if match[1] == "-" else int(digits)
    elif isinstance(value, (float, FloatText)):
        reason = float_reason(value)
        if reason:
            return None, reason
        number = int(value)
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

    Surrounding ASCII spaces are dropped, nothing else. Refused: empty, longer than
    :data:`MAX_TEXT_ID_CHARS`, holding a character of a :data:`_REFUSED` category anywhere (a trailing
    ``\r`` or tab, U+200B, U+202E, U+FEFF, U+2028, U+FFFF...: the reason names the code point), or
    starting or ending with whitespace other than a space (U+00A0, U+3000...).
    """
    if isinstance(value, str):
        text = value.strip(" ")  # spaces only: str.strip() would silently drop \r, \x85, U+00A0... (refused below)
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
    if not text.isprintable():  # a cheap "none at all": isprintable() is False for every refused character
        why = _unprintable(text)
        if why:
            return None, why
    return text, ""


def reference_text(value: Any) -> tuple[str | None, str]:
    """Return ``(reference, "")`` for an item's optional business reference (an order id), else ``(None, reason)``.

    A reference is carried beside an item into the ledger, the summary and the Reversals page, and
    never names the item: two rows of one item with different references are still one reversal
    (the first reference given is kept). Missing (``None``, or an empty or blank string) is no
    reference: ``(None, "")``. Anything else follows the rules of a text id (:func:`text_id`): at most
    :data:`MAX_TEXT_ID_CHARS` characters, no control, invisible or unassigned character.
    """
    if value is None or (isinstance(value, str) and not value.strip(" ")):
        return None, ""
    return text_id(value)


def _code_point(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE`` (with the name where Unicode gives one)."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}{' ' + name if name else ''}"


def _unprintable(text: str) -> str:
    """Why a text id that is not ``isprintable()`` is refused, or ``""`` (it only holds ``Zs`` spaces inside).

    At most :data:`MAX_TEXT_ID_CHARS` characters are looked at: constant work per id.
    """
    for char in text:
        kind = _REFUSED.get(unicodedata.category(char))
        if kind is not None:
            return f"holds {_code_point(char)}, {kind}"
    # what is left unprintable is Zs, a space other than U+0020: allowed inside an id, never around it
    for char, where in ((text[0], "starts"), (text[-1], "ends")):
        if char.isspace():
            return f"{where} with {_code_point(char)}, whitespace other than a space (only spaces are trimmed)"
    return ""


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
