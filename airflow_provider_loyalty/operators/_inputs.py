"""Turning what an upstream task pushed to XCom into validated items, safely.

An XComArg arrives as the native list; a Jinja ``xcom_pull`` arrives as its Python repr (or JSON)
unless the DAG renders native objects. Strings are read with ``json`` or, failing that, with the
streaming reader of Python literals in :mod:`._literal` (never ``eval``, never ``ast``).

The rules (docs/design.md, "Trust rules"): an input means what it says. A list/tuple (or any iterable
that is not a string, bytes, another buffer or a mapping) is a list of rows. A single id — an int, a
digit string, the JSON or repr string of one id, an integral Decimal — is that one id; a single dict
with the row's keys is that one row. Anything else is refused with :class:`AirflowFailException`
naming the value: nothing is ever iterated character by character or byte by byte (a ``memoryview``
or ``array`` row, how drivers return BYTEA, is no row). A tuple of two or more unique_ids none of
which is a row is refused as ambiguous: ``(4711, 500)`` is what ``fetch_one`` returns for ``SELECT
unique_id, points``, one row, not two ids. A JSON or repr dict giving a key twice with different
values is refused, as keys naming one field are (``unique_id`` and ``uniqueId``). Values the ledger
cannot store (the rules of :mod:`airflow_provider_loyalty.items`: ids above ``MAX_BIGINT``, text ids
longer than ``MAX_TEXT_ID_CHARS`` or holding control, invisible or unassigned characters) are
refused before any call. Reading is linear in the input's size: numbers are
bounded in length before they are converted, nesting is bounded, and messages show truncated values.
A number written with a fraction or an exponent is a float's text, judged by the same rule as a
float (:func:`~airflow_provider_loyalty.items.float_reason`), on the exact value it spells (never a
binary float): ``123.0`` is 123, ``4710.9999999999999999`` is refused as not an integer (not rounded
to ``4711``), and from 2**53 on it is refused — ``1.2345678901234568e+16`` is how a float column
renders 12345678901234567, and reading it as …568 would reverse another transaction.
"""

from __future__ import annotations

import array
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from numbers import Integral
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty._show import show
from airflow_provider_loyalty.items import (
    BLANKS,
    EarnItem,
    InvalidRow,
    PointItem,
    earn_fields,
    earn_key_text,
    invalid_key,
    positive_int,
    reference_text,
)
from airflow_provider_loyalty.operators._literal import (
    DuplicateKeys,
    ReadError,
    Streamed,
    dict_of_pairs,
    float_text,
    read_literal,
    same_value,
)

#: Invalid rows kept for the summary and the ledger with ``on_invalid="skip"`` (all are counted).
MAX_KEPT = 10_000
#: How many offending values an input error names.
MAX_REPORTED = 5


class InputErrors:
    """Collects bad input values (all of them counted, the first few kept) and raises once.

    Rows are numbered from 1, as a person counts them (and as the message says).

    With ``skip`` (``on_invalid="skip"``) nothing is raised: the valid rows go through, and the
    first :data:`MAX_KEPT` invalid rows are kept (``rows``) for the summary and the ledger.

    :param what: name of the input in messages, e.g. ``unique_ids``.
    :param owner: operator class name prefixed to the message.
    :param skip: collect invalid rows instead of raising.
    """

    def __init__(self, what: str, owner: str, *, skip: bool = False) -> None:
        self.what = what
        self.owner = owner
        self.skip = skip
        #: the first :data:`MAX_KEPT` invalid rows (numbered from 1, with their ledger key), with ``skip``
        self.rows: list[InvalidRow] = []
        #: the input was one value, not a list: messages say "the value", not "row 1"
        self.single = False
        self.count = 0
        self.examples: list[tuple[int, str, str]] = []

    def add(self, position: int, value: Any, reason: str, *, key_value: Any = None, reference: Any = None) -> None:
        """Note that row ``position`` (0-based; shown 1-based) holds ``value``, bad because ``reason``.

        ``key_value``: what the row's ledger key is derived from, when not ``value`` itself (an earn
        row's fields, as ``customer/promotion/earn`` text, so that an extraction can anti-join it).
        ``reference``: the row's business reference, kept with it when it is a valid one (an order's
        junk row is then found by the order on the Reversals page).
        """
        self.count += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append((position, show(value), reason))
        if self.skip and len(self.rows) < MAX_KEPT:
            shown = self.examples[-1][1] if self.count <= MAX_REPORTED else show(value)
            key = invalid_key(value if key_value is None else key_value)
            kept, why = reference_text(reference)
            self.rows.append(InvalidRow(position + 1, shown, reason, key, None if why else kept))

    def report(self, note: str = "") -> str:
        """``3 invalid unique_ids value(s) (rows numbered from 1): row 2: 'x' (not an integer); …``."""
        more = f"; and {self.count - len(self.examples)} more" if self.count > len(self.examples) else ""
        numbered = "" if self.single else " (rows numbered from 1)"
        named = "; ".join(
            f"{'the value' if self.single else f'row {position + 1}'}: {shown} ({reason})"
            for position, shown, reason in self.examples
        )
        return f"{self.count} invalid {self.what} value(s){note}{numbered}: {named}{more}"

    def raise_if_any(self) -> None:
        """Raise :class:`AirflowFailException` naming the first offenders, if any were added (not with ``skip``)."""
        if self.count and not self.skip:
            raise AirflowFailException(f"{self.owner}: {self.report(', nothing was sent')}")


class _Single:
    """The input was one value, not a list of rows."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def read_rows(
    value: Any,
    what: str,
    owner: str,
    on_row: Callable[[int, Any], None],
    one_row: type | tuple[type, ...] = (),
    on_tuple: Callable[[int, Any], None] | None = None,
) -> int | _Single:
    """Pass each row of an XCom value to ``on_row(position, row)`` as it is read; return how many.

    A list/tuple/iterable is its rows; a string or bytes rendering of one (JSON or Python repr) is
    read row by row, never held whole. A single value of a ``one_row`` type (after reading a string)
    is returned, unchecked, as ``_Single(value)``: the caller decides whether it stands for one row.
    Bytes, a ``bytearray`` or a ``memoryview`` is decoded as UTF-8 text; another buffer (an ``array``,
    a NumPy array) is refused, never iterated.

    :param value: the rendered template field.
    :param what: the field's name, for messages.
    :param owner: operator class name, for messages.
    :param on_row: called with each row's 0-based position and the row.
    :param one_row: the types a single value may have (``()``: a single value is refused).
    :param on_tuple: called once, after the rows, when the value was a tuple (native or rendered), with
        the number of rows and the value as given (for messages): it may raise.
    :raises AirflowFailException: the value is neither a list of rows nor a single value of ``one_row``.
    """
    given = value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise AirflowFailException(
                f"{owner}: {what} is bytes that are not UTF-8 ({exc.reason} at byte {exc.start}): {show(bytes(value))}"
            ) from None
    if isinstance(value, str):
        value = parse_rendered(value, what, owner, on_row)
        if isinstance(value, Streamed):
            if value.is_tuple and on_tuple is not None:
                on_tuple(value.rows, given)
            return value.rows
    if value is None:
        raise AirflowFailException(
            f"{owner}: {what} is None — the upstream task pushed no XCom (did the extraction run, "
            "and does it return rows?)"
        )
    if one_row and isinstance(value, one_row) and not isinstance(value, (bytes, bytearray)):
        return _Single(value)
    if (
        isinstance(value, (str, bytes, bytearray, Mapping))
        or not isinstance(value, Iterable)
        or (not isinstance(value, (list, tuple)) and _is_buffer(value))
    ):
        raise AirflowFailException(f"{owner}: {what} must be a list of rows, got {type(value).__name__}: {show(value)}")
    rows = 0  # a list, a tuple, a lazy XCom sequence from mapped upstreams, a set, a generator...
    for rows, row in enumerate(value, 1):
        on_row(rows - 1, row)
    if on_tuple is not None and isinstance(value, tuple):
        on_tuple(rows, given)
    return rows


def load_rows(value: Any, what: str, owner: str, one_row: type | tuple[type, ...] = ()) -> tuple[list[Any], bool]:
    """Return ``(rows, single)``: :func:`read_rows`' rows as a list, and whether the input was one value."""
    rows: list[Any] = []
    read = read_rows(value, what, owner, lambda _, row: rows.append(row), one_row)
    return ([read.value], True) if isinstance(read, _Single) else (rows, False)


def parse_rendered(text: str, what: str, owner: str, on_row: Callable[[int, Any], None] | None = None) -> Any:
    """Read the string a non-native Jinja render produced: JSON, or the Python repr of rows.

    With ``on_row``, the elements of a top-level list or tuple in Python repr are passed to it as
    they are read (so a million rows are never all held at once), and a ``Streamed(rows)`` is
    returned in place of the list. JSON is read whole (by the C parser).

    The Python grammar read is the one reprs of rows use: lists, tuples, sets, dicts with string
    keys, ints, floats, quoted strings, ``None``/``True``/``False`` and ``Decimal('…')`` (how
    PostgreSQL NUMERIC values print). Anything else — names, calls, operators, bytes literals — is
    refused. Empty (or blank) text is an empty list. Floats, in JSON or repr, are read as the exact
    value they spell, marked as a float's text (:func:`float_text`): judged like a float, so only a
    number exactly an integer and below 2**53 becomes an id.
    Only ASCII blanks (space, tab, CR, LF: what JSON and the reader skip) are trimmed around the text.
    An object giving a key twice with different values is a :class:`DuplicateKeys` (refused as a row).

    :raises AirflowFailException: naming the offset and text where reading stopped.
    """
    stripped = text.strip(BLANKS)  # str.strip() would drop U+001C-U+001F, U+0085, U+00A0... around an id
    if not stripped:
        return []
    try:  # 9007199254740993.0 is not ...992.0; {"unique_id": 1, "unique_id": 2} is neither 1 nor 2
        return json.loads(stripped, parse_float=float_text, object_pairs_hook=dict_of_pairs)
    except (ValueError, RecursionError):  # not JSON, too deep, or an int over Python's digit limit
        pass
    try:
        return read_literal(stripped, on_row)
    except ReadError as exc:
        raise AirflowFailException(
            f"{owner}: cannot read {what} from the rendered string {show(stripped)}: at character "
            f"{exc.offset + 1}, {show(stripped[exc.offset : exc.offset + 30])}: {exc.reason}. "
            "Pass the upstream task's output (an XComArg) or set render_template_as_native_obj=True on the DAG."
        ) from None


def normalised_keys(row: Mapping[Any, Any]) -> tuple[dict[str, Any], str]:
    """Map a dict row's string keys to lower case without ``_`` (``unique_id``, ``uniqueId``, ``UNIQUE_ID`` all match).

    :returns: ``(keys, "")``, or ``({}, reason)`` when two keys mean the same field with different raw
        values (:func:`same_value`: ``True`` and ``1``, ``1`` and ``"1"`` differ), or the text the row
        was read from gave one key twice with different values (:class:`DuplicateKeys`).
    """
    if type(row) is DuplicateKeys:
        return {}, row.conflict
    keys: dict[str, Any] = {}
    for key, item in row.items():
        if isinstance(key, str):
            name = key.replace("_", "").lower()
            if name in keys and not same_value(keys[name], item):
                return {}, f"the keys name {name!r} twice, with different values"
            keys[name] = item
    return keys, ""


def _lacks(row: Mapping[Any, Any], fields: set[str]) -> bool:
    """A single dict given for a list names none of the row's fields (a conflict is left to the row check)."""
    keys, conflict = normalised_keys(row)
    return not conflict and not fields & keys.keys()


def _is_buffer(value: Any) -> bool:
    r"""``value`` exposes the buffer protocol (``memoryview``, ``array``, NumPy...): its items are bytes or machine numbers.

    psycopg2 returns a BYTEA column as a ``memoryview``: iterating ``memoryview(b"\x07")`` gives the
    id 7 that nobody wrote. Called only for sequences that are no list, tuple or dict (rare).
    """
    if isinstance(value, (bytes, bytearray, memoryview, array.array)):
        return True
    try:
        with memoryview(value):
            return True
    except TypeError:
        return False
    except Exception:  # a hostile buffer: never a row either
        return True


def _is_row(value: Any) -> bool:
    """A tuple, list, dict, or another mapping or sequence that is neither text nor a buffer (concrete types checked first: cheap)."""
    return isinstance(value, (tuple, list, dict)) or (
        isinstance(value, (Mapping, Sequence))
        and not isinstance(value, (str, bytes, bytearray))
        and not _is_buffer(value)
    )


def parse_unique_ids(
    value: Any,
    owner: str = "CancelPointsOperator",
    *,
    invalid: InputErrors | None = None,
    references: dict[str, str] | None = None,
) -> tuple[list[PointItem], int, int]:
    """Validate an XCom of unique_ids; return ``(items in first-seen order, rows, duplicates)``.

    Accepts a list of ints or digit strings, of 1-column rows (``[(123,), (456,)]``), of dicts with
    ``unique_id``, and the string a non-native Jinja render makes of any of these. A single id (an
    int, digit string, integral Decimal, or the JSON/repr string of one) or a single dict with
    ``unique_id`` is that one row. A tuple of two or more values none of which is a row, native or
    rendered, is refused as ambiguous: ``(4711, 500)`` is one row of ``SELECT unique_id, points`` as
    ``fetch_one`` returns it, or two ids; a list says which.

    A row may carry a business reference (an order id) for the ledger and the Reversals page: a
    second column (``(unique_id, reference)``) or the dict key ``reference``. It is checked as a text
    id (:func:`~airflow_provider_loyalty.items.reference_text`), may be missing, and never names the
    item: a unique_id given twice is one reversal, with the first reference given.

    :param invalid: with ``on_invalid="skip"``, the collector of invalid rows (nothing is raised for
        them; ``duplicates`` then leaves them out).
    :param references: filled with ``item key -> reference`` for the rows that carry one.
    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    errors = invalid if invalid is not None else InputErrors("unique_ids", owner)
    ids: dict[int, None] = {}
    saw_row = False

    def check(position: int, row: Any) -> None:
        nonlocal saw_row
        raw = row
        given_reference: Any = None
        if isinstance(row, (tuple, list)) or (_is_row(row) and not isinstance(row, Mapping)):
            saw_row = True
            if len(row) not in (1, 2):
                errors.add(position, row, f"a row of {len(row)} columns; expected 1 (unique_id) or 2 (and a reference)")
                return
            raw = row[0]
            given_reference = row[1] if len(row) == 2 else None
        elif isinstance(row, Mapping):
            saw_row = True
            keys, conflict = normalised_keys(row)
            if conflict:
                errors.add(position, row, conflict)
                return
            if "uniqueid" not in keys:
                errors.add(position, row, "a dict without unique_id")
                return
            raw = keys["uniqueid"]
            given_reference = keys.get("reference")
        number, reason = positive_int(raw)
        if number is None:
            errors.add(position, raw, reason, reference=given_reference)
            return
        reference, why = reference_text(given_reference)
        if why:
            errors.add(position, row, f"reference {why}")
            return
        ids[number] = None
        if reference is not None and references is not None:
            references.setdefault(str(number), reference)

    def ambiguous(count: int, given: Any) -> None:
        if count >= 2 and not saw_row:
            raise AirflowFailException(
                f"{owner}: unique_ids is a tuple of {count} values, none of them a row: {show(given)}. That is "
                f"ambiguous — one row of {count} columns (what fetch_one returns for SELECT unique_id, points) or "
                f"{count} ids? Nothing was sent. Pass a list: of ids [4711, 500], or of 1-column rows [(4711,), (500,)]"
            )

    rows = read_rows(value, "unique_ids", owner, check, (int, str, float, Decimal, Integral, dict), ambiguous)
    if isinstance(rows, _Single):
        if isinstance(rows.value, dict) and _lacks(rows.value, {"uniqueid"}):
            raise AirflowFailException(
                f"{owner}: unique_ids must be a list of rows, got a dict without unique_id: {show(rows.value)}"
            )
        errors.single = True
        check(0, rows.value)
        rows = 1
    errors.raise_if_any()
    return [PointItem(uid) for uid in ids], rows, rows - len(ids) - errors.count


def parse_earns(
    value: Any,
    owner: str = "RevokeEarnOperator",
    *,
    invalid: InputErrors | None = None,
    references: dict[str, str] | None = None,
) -> tuple[list[EarnItem], int, int]:
    """Validate an XCom of earns; return ``(items in first-seen order, rows, duplicates)``.

    Accepts a list of rows ``(customer_id, promotion_id, earn_id)`` or of dicts with
    ``customer_id``/``promotion_id``/``earn_id`` (camelCase too), and the string a non-native Jinja
    render makes of either. A single dict is that one row. A single row given as a tuple/list (three
    values, none of them a row) is refused: it cannot be told from a list of three bad rows, so the
    message asks for the list.

    A row may carry a business reference (an order id): a fourth column
    (``(customer_id, promotion_id, earn_id, reference)``) or the dict key ``reference``; checked as a
    text id, it may be missing and never names the item (the first reference of an earn given twice
    is kept).

    :param invalid: with ``on_invalid="skip"``, the collector of invalid rows (nothing is raised for
        them; ``duplicates`` then leaves them out).
    :param references: filled with ``item key -> reference`` for the rows that carry one.
    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    errors = invalid if invalid is not None else InputErrors("earns", owner)
    earns: dict[EarnItem, None] = {}
    promotions: dict[str, str] = {}  # one string per promotion: a million earns share a few
    saw_row = False

    def check(position: int, row: Any) -> None:
        nonlocal saw_row
        given_reference: Any = None
        if (isinstance(row, (tuple, list)) or (_is_row(row) and not isinstance(row, Mapping))) and len(row) in (3, 4):
            fields = (row[0], row[1], row[2])
            given_reference = row[3] if len(row) == 4 else None
        elif isinstance(row, Mapping):
            keys, conflict = normalised_keys(row)
            if conflict:
                saw_row = True
                errors.add(position, row, conflict)
                return
            fields = (keys.get("customerid"), keys.get("promotionid"), keys.get("earnid"))
            given_reference = keys.get("reference")
        else:
            saw_row = saw_row or _is_row(row)
            errors.add(
                position, row, "expected (customer_id, promotion_id, earn_id[, reference]) or a dict with those keys"
            )
            return
        saw_row = True
        earn = earn_fields(*fields)
        if isinstance(earn, str):
            errors.add(position, row, earn, key_value=earn_key_text(fields), reference=given_reference)
            return
        reference, why = reference_text(given_reference)
        if why:
            errors.add(position, row, f"reference {why}")
        elif errors.count == 0 or errors.skip:  # stop building once the input is known to be bad
            customer, promotion, earn_id = earn
            item = EarnItem(customer, promotions.setdefault(promotion, promotion), earn_id)
            earns[item] = None
            if reference is not None and references is not None:
                references.setdefault(item.key, reference)

    rows = read_rows(value, "earns", owner, check, dict)
    if isinstance(rows, _Single):
        if _lacks(rows.value, {"customerid", "promotionid", "earnid"}):
            raise AirflowFailException(
                f"{owner}: earns must be a list of rows, got a dict without customer_id, promotion_id or earn_id: "
                f"{show(rows.value)}"
            )
        errors.single = True
        check(0, rows.value)
        rows = 1
    if rows and not saw_row:
        raise AirflowFailException(
            f"{owner}: earns must be a list of rows (customer_id, promotion_id, earn_id), got {rows} single "
            f"value(s), e.g. {'; '.join(shown for _, shown, _ in errors.examples[:3])}. "
            "One row is passed as a list of one row: [(1, 'promo', 'earn')]"
        )
    errors.raise_if_any()
    return list(earns), rows, rows - len(earns) - errors.count
