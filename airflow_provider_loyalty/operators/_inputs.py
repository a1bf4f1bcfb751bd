"""Turning what an upstream task pushed to XCom into validated items, safely.

An XComArg arrives as the native list; a Jinja ``xcom_pull`` arrives as its Python repr (or JSON)
unless the DAG renders native objects. Strings are read with ``json`` or, failing that, with a small
hand-written reader of the Python literals a repr of rows is made of — never ``eval``, never ``ast``
(``ast.parse`` of a million tuples costs seconds and gigabytes before a single row is checked).

The rules (DESIGN.md, "Trust rules"): an input means what it says. A list/tuple (or any iterable
that is not a string, bytes or a mapping) is a list of rows. A single id — an int, a digit string,
the JSON or repr string of one id, an integral Decimal — is that one id; a single dict with the
row's keys is that one row. Anything else is refused with :class:`AirflowFailException` naming the
value: nothing is ever iterated character by character or byte by byte. Values the ledger cannot
store (ids above ``MAX_BIGINT``, text ids longer than ``MAX_TEXT_ID_CHARS`` or holding control
characters) are refused before any call. Reading is linear in the input's size: numbers are
bounded in length before they are converted, nesting is bounded, and messages show truncated values.
A number written with a fraction or an exponent is read as the exact :class:`~decimal.Decimal` it
spells, never as a binary float: ``9007199254740993.0`` is that id (not ``…992``), and
``4710.9999999999999999`` is refused as not an integer (not rounded to ``4711``).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from numbers import Integral
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty.outcomes import MAX_BIGINT, MAX_TEXT_ID_CHARS, EarnItem, PointItem

#: Invalid rows kept for the summary and the ledger with ``on_invalid="skip"`` (all are counted).
MAX_KEPT = 10_000
#: How many offending values an input error names.
MAX_REPORTED = 5
#: How many characters of an offending value a message shows.
SHOW_CHARS = 80
#: Containers nested deeper than this in a rendered string are refused (a valid input nests 2 deep:
#: the list, a row; a few more levels give a row-level message rather than a reader error).
MAX_DEPTH = 8
#: Digits ``MAX_BIGINT`` has; a longer integer cannot be an id the ledger stores.
MAX_ID_DIGITS = len(str(MAX_BIGINT))
#: Longest number token the reader converts: an int that may become a text id (``MAX_TEXT_ID_CHARS``
#: digits) plus room for a sign, fraction and exponent. Longer ones are refused unconverted: ``int()``
#: and ``float()`` of huge digit strings cost quadratic time or hit Python's 4300-digit limit.
MAX_NUMBER_CHARS = MAX_TEXT_ID_CHARS + 40
#: Longest ``Decimal('…')`` argument read: PostgreSQL NUMERIC ids print in at most a few dozen.
MAX_DECIMAL_CHARS = 100
#: Exponents beyond this are clamped to it when a number literal is read (``Decimal`` refuses exponents
#: past about 10**18). Clamping keeps the verdict on the value exact: a zero stays zero, a non-zero value
#: with a larger exponent stays above every id, and one with a smaller exponent stays non-integral
#: (its digits, bounded by the input's length, could never bring it back to an integer).
_EXPONENT_CLAMP = 10**15
#: Characters a text id may not hold. NUL cannot be stored in PostgreSQL text at all. The other C0/C1
#: control characters and lone surrogates are never part of a vendor id: they come from a broken
#: extraction (a stray ``\r`` of a CRLF file, binary garbage), cannot be encoded as UTF-8 (surrogates)
#: for the vendor's JSON body or the ledger, and would make logs, CSV exports and the UI lie about
#: which id was reversed. Refusing them names the row; sending them would reverse nothing we can trace.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DIGITS = re.compile(r"([+-]?)([0-9]+)")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:s?NaN|Inf(?:inity)?)")


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
        #: ``(row number from 1, shown value, reason)`` of the first :data:`MAX_KEPT` invalid rows, with ``skip``
        self.rows: list[tuple[int, str, str]] = []
        #: the input was one value, not a list: messages say "the value", not "row 1"
        self.single = False
        self.count = 0
        self.examples: list[tuple[int, str, str]] = []

    def add(self, position: int, value: Any, reason: str) -> None:
        """Note that row ``position`` (0-based; shown 1-based) holds ``value``, bad because ``reason``."""
        self.count += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append((position, _show(value), reason))
        if self.skip and len(self.rows) < MAX_KEPT:
            shown = self.examples[-1][1] if self.count <= MAX_REPORTED else _show(value)
            self.rows.append((position + 1, shown, reason))

    def report(self) -> str:
        """``3 invalid unique_ids value(s) (rows numbered from 1): row 2: 'x' (not an integer); …``."""
        more = f"; and {self.count - len(self.examples)} more" if self.count > len(self.examples) else ""
        numbered = "" if self.single else " (rows numbered from 1)"
        named = "; ".join(
            f"{'the value' if self.single else f'row {position + 1}'}: {shown} ({reason})"
            for position, shown, reason in self.examples
        )
        return f"{self.count} invalid {self.what} value(s){numbered}: {named}{more}"

    def raise_if_any(self) -> None:
        """Raise :class:`AirflowFailException` naming the first offenders, if any were added (not with ``skip``)."""
        if self.count and not self.skip:
            more = f"; and {self.count - len(self.examples)} more" if self.count > len(self.examples) else ""
            numbered = "" if self.single else " (rows numbered from 1)"
            named = "; ".join(
                f"{'the value' if self.single else f'row {position + 1}'}: {shown} ({reason})"
                for position, shown, reason in self.examples
            )
            raise AirflowFailException(
                f"{self.owner}: {self.count} invalid {self.what} value(s), nothing was sent{numbered}: {named}{more}"
            )


def _show(value: Any) -> str:
    """A repr of ``value`` of at most :data:`SHOW_CHARS` characters, at a cost bounded by that, whatever the value."""
    text = _bounded_repr(value, SHOW_CHARS + 1, 0)
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 3] + "..."


def _bounded_repr(value: Any, budget: int, depth: int) -> str:
    if isinstance(value, (str, bytes, bytearray)):
        return repr(value[:budget])
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 4 * budget:  # repr would be long (or raise: the 4300-digit limit)
            return f"<int of about {int(value.bit_length() * 0.30103) + 1} digits>"
        return repr(value)
    if isinstance(value, Decimal) and value.is_finite() and len(value.as_tuple().digits) > budget:
        return f"<Decimal of {len(value.as_tuple().digits)} digits, exponent {value.as_tuple().exponent}>"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        brackets = "[]" if isinstance(value, list) else "()" if isinstance(value, tuple) else "{}"
        opener, closer = brackets[0], brackets[1]
        if depth > 3:
            return f"{opener}...{closer}"
        parts: list[str] = []
        used = 1
        items: Iterable[Any] = value.items() if isinstance(value, dict) else value
        for element in items:
            if used >= budget:
                parts.append("...")
                break
            if isinstance(value, dict):
                key, item = element
                part = (
                    f"{_bounded_repr(key, budget - used, depth + 1)}: {_bounded_repr(item, budget - used, depth + 1)}"
                )
            else:
                part = _bounded_repr(element, budget - used, depth + 1)
            parts.append(part)
            used += len(part) + 2
        trailing = "," if isinstance(value, tuple) and len(parts) == 1 and parts[0] != "..." else ""
        return f"{opener}{', '.join(parts)}{trailing}{closer}"
    try:
        text = repr(value)
    except Exception:  # a hostile or broken __repr__ must not hide the real error
        return f"<{type(value).__name__}>"
    return text[:budget]


class _Single:
    """The input was one value, not a list of rows."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def read_rows(
    value: Any, what: str, owner: str, on_row: Callable[[int, Any], None], one_row: type | tuple[type, ...] = ()
) -> int | _Single:
    """Pass each row of an XCom value to ``on_row(position, row)`` as it is read; return how many.

    A list/tuple/iterable is its rows; a string or bytes rendering of one (JSON or Python repr) is
    read row by row, never held whole. A single value of a ``one_row`` type (after reading a string)
    is returned, unchecked, as ``_Single(value)``: the caller decides whether it stands for one row.

    :param value: the rendered template field.
    :param what: the field's name, for messages.
    :param owner: operator class name, for messages.
    :param on_row: called with each row's 0-based position and the row.
    :param one_row: the types a single value may have (``()``: a single value is refused).
    :raises AirflowFailException: the value is neither a list of rows nor a single value of ``one_row``.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise AirflowFailException(
                f"{owner}: {what} is bytes that are not UTF-8 ({exc.reason} at byte {exc.start}): {_show(bytes(value))}"
            ) from None
    if isinstance(value, str):
        value = parse_rendered(value, what, owner, on_row)
        if isinstance(value, _Streamed):
            return value.rows
    if value is None:
        raise AirflowFailException(
            f"{owner}: {what} is None — the upstream task pushed no XCom (did the extraction run, "
            "and does it return rows?)"
        )
    if one_row and isinstance(value, one_row) and not isinstance(value, (bytes, bytearray)):
        return _Single(value)
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise AirflowFailException(
            f"{owner}: {what} must be a list of rows, got {type(value).__name__}: {_show(value)}"
        )
    rows = 0  # a list, a tuple, a lazy XCom sequence from mapped upstreams, a set, a generator...
    for rows, row in enumerate(value, 1):
        on_row(rows - 1, row)
    return rows


def load_rows(value: Any, what: str, owner: str, one_row: type | tuple[type, ...] = ()) -> tuple[list[Any], bool]:
    """Return ``(rows, single)``: :func:`read_rows`' rows as a list, and whether the input was one value."""
    rows: list[Any] = []
    read = read_rows(value, what, owner, lambda _, row: rows.append(row), one_row)
    return ([read.value], True) if isinstance(read, _Single) else (rows, False)


def parse_rendered(text: str, what: str, owner: str, on_row: Callable[[int, Any], None] | None = None) -> Any:
    """Read the string a non-native Jinja render produced: JSON, or the Python repr of rows.

    With ``on_row``, the elements of a top-level list or tuple in Python repr are passed to it as
    they are read (so a million rows are never all held at once), and a ``_Streamed(rows)`` is
    returned in place of the list. JSON is read whole (by the C parser).

    The Python grammar read is the one reprs of rows use: lists, tuples, sets, dicts with string
    keys, ints, floats, quoted strings, ``None``/``True``/``False`` and ``Decimal('…')`` (how
    PostgreSQL NUMERIC values print). Anything else — names, calls, operators, bytes literals — is
    refused. Empty (or blank) text is an empty list. Floats, in JSON or repr, are read as exact
    ``Decimal`` values (:func:`exact_number`): only a number that is exactly an integer becomes an id.

    :raises AirflowFailException: naming the offset and text where reading stopped.
    """
    stripped = text.strip()
    if not stripped:
        return []
    try:
        return json.loads(stripped, parse_float=exact_number)  # 9007199254740993.0 is not ...992.0
    except (ValueError, RecursionError):  # not JSON, too deep, or an int over Python's digit limit
        pass
    try:
        return _read_literal(stripped, on_row)
    except _ReadError as exc:
        raise AirflowFailException(
            f"{owner}: cannot read {what} from the rendered string {_show(stripped)}: at character "
            f"{exc.offset + 1}, {_show(stripped[exc.offset : exc.offset + 30])}: {exc.reason}. "
            "Pass the upstream task's output (an XComArg) or set render_template_as_native_obj=True on the DAG."
        ) from None


class _Streamed:
    """A top-level list whose rows were passed to ``on_row`` as they were read."""

    __slots__ = ("rows",)

    def __init__(self, rows: int) -> None:
        self.rows = rows


class _ReadError(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


#: Fast paths for the rows a repr of SQL results is made of — ``(123,)``, ``[123]``,
#: ``(Decimal('123'),)``, ``(123, 'promo', 'earn')``, ``{'unique_id': 123}`` — read as one token each
#: (ids of up to 19 digits, strings without escapes or quotes, dicts of up to 20 such pairs). They
#: denote exactly what the general tokens below would read, only faster (the property tests check
#: that both agree); anything else falls through to the general tokens.
_FAST_NUM = r"(?:([1-9][0-9]{0,18})|Decimal\('([1-9][0-9]{0,18})'\))"  # groups: int, Decimal
_FAST_TEXT = r"'([^'\\\n]*)'"
_FAST_PAIR = r"'[^'\\\n]*':[ ]*(?:[1-9][0-9]{0,18}|'[^'\\\n]*'|None)"
_PAIR = re.compile(r"'([^'\\\n]*)':[ ]*(?:([1-9][0-9]{0,18})|'([^'\\\n]*)'|(None))")
_FAST_ROWS = rf"""
     (?P<row1t>\([ ]*{_FAST_NUM}[ ]*,[ ]*\))
    |(?P<row3t>\([ ]*{_FAST_NUM}[ ]*,[ ]*{_FAST_TEXT}[ ]*,[ ]*{_FAST_TEXT}[ ]*\))
    |(?P<row1l>\[[ ]*{_FAST_NUM}[ ]*\])
    |(?P<row3l>\[[ ]*{_FAST_NUM}[ ]*,[ ]*{_FAST_TEXT}[ ]*,[ ]*{_FAST_TEXT}[ ]*\])
    |(?P<rowd>\{{[ ]*(?:{_FAST_PAIR}[ ]*,[ ]*){{0,19}}{_FAST_PAIR}[ ]*\}})
    |"""
_GENERAL_TOKENS = r"""
     (?P<comma>,[ \t\r\n]*)
    |(?P<str>'[^'\\\n]*(?:\\.[^'\\\n]*)*'|"[^"\\\n]*(?:\\.[^"\\\n]*)*")
    |(?P<int>[+-]?[0-9]+(?![0-9.eEjJ_xXoObB]))
    |(?P<colon>:[ \t\r\n]*)
    |(?P<open>[\[({][ \t\r\n]*)
    |(?P<close>[\])}])
    |(?P<ws>[ \t\r\n]+)
    |(?P<float>[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?(?![0-9.eEjJ_]))
    |(?P<decimal>Decimal\([ ]*(?:'(?P<dq1>[^'\\\n]*)'|"(?P<dq2>[^"\\\n]*)"|(?P<dint>[+-]?[0-9]+))[ ]*\))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<other>.)
    """
#: Every position of the text matches one alternative (``other`` takes any character), so the
#: tokens ``finditer`` yields are contiguous: nothing is skipped unread.
_TOKEN = re.compile(_FAST_ROWS + _GENERAL_TOKENS, re.VERBOSE | re.DOTALL)
#: The same grammar without the fast paths (the property tests read with both and compare).
_GENERAL_TOKEN = re.compile(_GENERAL_TOKENS, re.VERBOSE | re.DOTALL)


def _fast_num(digits: str | None, decimal_digits: str) -> int | Decimal:
    return int(digits) if digits is not None else Decimal(decimal_digits)


def _fast_row(match: re.Match[str], kind: str) -> Any:
    """The value of a fast-path row token (its fields are the groups after the row's own)."""
    first = match.lastindex or 0
    if kind == "rowd":
        return {
            key: (int(number) if number else None if none else text)
            for key, number, text, none in _PAIR.findall(match[first])
        }
    number = _fast_num(match[first + 1], match[first + 2])
    if kind == "row3t":
        return (number, match[first + 3], match[first + 4])
    if kind == "row1t":
        return (number,)
    if kind == "row3l":
        return [number, match[first + 3], match[first + 4]]
    return [number]


_CLOSER = {"[": "]", "(": ")", "{": "}"}
_NAMES = {"None": None, "True": True, "False": False}
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{1,3})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\n": "",
}


def _unescape(body: str, offset: int) -> str:
    """Decode a Python string literal's body (escapes as repr writes them)."""

    def one(match: re.Match[str]) -> str:
        hexa = match[1] or match[2] or match[3]
        if hexa:
            code = int(hexa, 16)
            if code > 0x10FFFF:
                raise _ReadError(offset + match.start(), "an escape beyond the last Unicode code point")
            return chr(code)
        if match[4]:
            return chr(int(match[4], 8))
        simple = _SIMPLE_ESCAPES.get(match[5])
        if simple is None:
            raise _ReadError(offset + match.start(), f"an unknown escape {match[0]!r} in a string")
        return simple

    return _ESCAPE.sub(one, body)


class _Frame:
    """An open container while reading: its items, and for ``{`` whether it is a dict or a set."""

    __slots__ = ("comma", "key", "kind", "items", "mode", "start")

    def __init__(self, kind: str, start: int) -> None:
        self.kind = kind
        self.start = start
        self.items: list[Any] = []
        self.comma = False  # a '(' saw a comma: a tuple, not a parenthesised value
        self.mode = ""  # for '{': "" undecided, "dict" or "set"
        self.key: Any = _MISSING  # for '{': the element read and not yet placed

    def close(self, offset: int) -> Any:
        if self.kind == "[":
            return self.items
        if self.kind == "(":
            return self.items[0] if len(self.items) == 1 and not self.comma else tuple(self.items)
        self.settle(offset)
        if self.mode == "dict" or not self.items:  # '{}' is an empty dict, as in Python
            return dict(self.items)
        try:
            return set(self.items)
        except TypeError:
            raise _ReadError(self.start, "a set of unhashable values") from None

    def settle(self, offset: int) -> None:
        """A ``{``'s pending element is a set member (a ``,`` or ``}`` followed it, not ``:``)."""
        if self.key is not _MISSING:
            if self.mode == "dict":
                raise _ReadError(offset, "a dict key without a value")
            self.mode = "set"
            self.items.append(self.key)
            self.key = _MISSING


_MISSING = object()


def exact_number(token: str) -> Decimal:
    """The exact value of a number literal with a fraction or exponent (syntax already checked), as a ``Decimal``.

    Never a binary float: ``float("9007199254740993.0")`` is ``…992.0`` and ``float("4710.9999999999999999")``
    is ``4711.0``, so a float would turn a written value into a neighbouring id. Linear in the token's
    length; an exponent ``Decimal`` cannot hold is clamped to :data:`_EXPONENT_CLAMP` (see there).
    """
    try:
        return Decimal(token)
    except ArithmeticError:  # decimal.InvalidOperation: the exponent is beyond Decimal's range
        mantissa, _, exponent = token.lower().partition("e")
        negative = exponent.startswith("-")
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        magnitude = _EXPONENT_CLAMP if len(digits) > 16 else min(int(digits), _EXPONENT_CLAMP)
        return Decimal(f"{mantissa}E{-magnitude if negative else magnitude}")


def _scalar(match: re.Match[str], kind: str, offset: int) -> Any:
    """The value of one scalar token, bounded in cost before it is converted."""
    token = match.group()
    if kind == "int" or kind == "float":
        if len(token) > MAX_NUMBER_CHARS:
            raise _ReadError(offset, f"a number of {len(token)} characters (at most {MAX_NUMBER_CHARS} are read)")
        return int(token) if kind == "int" else exact_number(token)
    if kind == "str":
        body = token[1:-1]
        return _unescape(body, offset + 1) if "\\" in body else body
    if kind == "decimal":
        argument = match["dint"] or match["dq1"] or match["dq2"] or ""
        if len(argument) > MAX_DECIMAL_CHARS or not _DECIMAL_TEXT.fullmatch(argument):
            raise _ReadError(
                offset, f"a Decimal of {_show(argument)}, not a number of at most {MAX_DECIMAL_CHARS} characters"
            )
        return exact_number(argument)  # Decimal('1e99999999999999999999') must not raise past the reader
    if kind == "name":
        word = token
        if word in _NAMES:
            return _NAMES[word]
        if word in ("b", "rb", "br", "B") and match.end() < len(match.string) and match.string[match.end()] in "'\"":
            raise _ReadError(offset, "a bytes literal (ids are numbers or text)")
        if word == "Decimal":
            raise _ReadError(offset, "Decimal(...) of something other than a quoted number or an integer")
        raise _ReadError(offset, f"the name {word!r} (only literals are read: nothing is evaluated)")
    raise _ReadError(offset, "an unexpected character")


def _read_literal(text: str, on_row: Callable[[int, Any], None] | None = None) -> Any:
    """Read one Python literal of the rows grammar, iteratively (no recursion), in one pass over ``text``.

    With ``on_row``, the elements of a top-level list or tuple go to ``on_row`` as they are read
    and ``_Streamed(count)`` is returned. A top-level tuple holds its element back until a comma
    shows it is a tuple: ``(x)`` is ``x`` itself, as in Python.
    """
    stack: list[_Frame] = []
    result: Any = _MISSING
    value: Any
    rows = 0  # elements passed to on_row
    expect_value = True  # else: a separator, a closer or (in a dict) ':'
    may_close = False  # a closer is allowed where a value is expected: '[]', '[1,]'
    tokens: Iterator[re.Match[str]] = _TOKEN.finditer(text)
    for match in tokens:
        kind = match.lastgroup or ""
        if kind == "ws":
            continue
        if result is not _MISSING:
            bare = " (a bare comma list is not read: render a list)" if kind == "comma" else ""
            raise _ReadError(match.start(), f"more text after the value{bare}")
        closing: _Frame | None = None
        if expect_value:
            if kind == "str":
                value = match.group()[1:-1]
                if "\\" in value:
                    value = _unescape(value, match.start() + 1)
            elif kind == "int":
                value = _scalar(match, kind, match.start())
            elif kind == "open" or kind[:3] == "row":
                if len(stack) >= MAX_DEPTH:
                    raise _ReadError(match.start(), f"containers nested more than {MAX_DEPTH} deep")
                if kind == "open":
                    stack.append(_Frame(match.group()[0], match.start()))
                    may_close = True
                    continue
                value = _fast_row(match, kind)
            elif kind == "close" and may_close and _CLOSER[stack[-1].kind] == match.group():
                closing = stack.pop()
            elif kind in ("float", "decimal", "name", "other"):
                value = _scalar(match, kind, match.start())
            else:
                raise _ReadError(match.start(), f"{match.group()!r} where a value was expected")
        else:
            frame = stack[-1]  # a value was placed in it: at the top level, ``result`` is set
            if kind == "comma":
                if frame.kind == "{":
                    frame.settle(match.start())
                elif frame.kind == "(":
                    frame.comma = True
                    if on_row is not None and len(stack) == 1:  # a top-level tuple: the held element is a row
                        on_row(rows, frame.items.pop())
                        rows += 1
                expect_value = may_close = True
                continue
            if kind == "colon" and frame.kind == "{" and frame.key is not _MISSING and frame.mode != "set":
                if not isinstance(frame.key, str):
                    raise _ReadError(match.start(), f"a dict key {_show(frame.key)} that is not a string")
                frame.mode = "dict"
                expect_value, may_close = True, False
                continue
            if kind == "close" and _CLOSER[frame.kind] == match.group():
                closing = stack.pop()
            else:
                raise _ReadError(match.start(), f"{match.group()!r} where ',' or a closing bracket was expected")
        if closing is not None:
            if on_row is not None and not stack and closing.kind != "{":
                if closing.kind == "(" and not closing.comma and closing.items:
                    value = closing.items[0]  # (x) is x
                else:
                    for item in closing.items:  # the tuple's last element (lists hold none back)
                        on_row(rows, item)
                        rows += 1
                    value = _Streamed(rows)
            else:
                value = closing.close(match.start())
        # place the value just read
        if not stack:
            result = value
            continue
        frame = stack[-1]
        if frame.kind != "{":
            if on_row is not None and len(stack) == 1 and frame.kind == "[":
                on_row(rows, value)
                rows += 1
            else:
                frame.items.append(value)
        elif frame.mode == "dict" and frame.key is not _MISSING:
            frame.items.append((frame.key, value))
            frame.key = _MISSING
        else:
            frame.key = value
        expect_value = False
    if stack:
        raise _ReadError(stack[-1].start, f"{stack[-1].kind!r} is never closed")
    if result is _MISSING:
        raise _ReadError(0, "no value")
    return result


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
        number = value
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
        text = str(int(value))
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


def _same(first: Any, second: Any) -> bool:
    """The same raw value: the same type and an equal value, False where comparing raises (a hostile ``__eq__``).

    Stricter than ``==``, which holds for ``True == 1``, ``1 == 1.0`` and ``Decimal('1.0') == Decimal('1')``:
    two keys naming one field with such values are a conflict, whichever order they come in. Decimals
    compare digit for digit (``as_tuple``: never raises, not even for ``sNaN``); floats by ``repr``
    (``-0.0`` is not ``0.0``, a NaN is itself).
    """
    if first is second:
        return True
    if type(first) is not type(second):
        return False
    if isinstance(first, Decimal):
        return first.as_tuple() == second.as_tuple()
    if isinstance(first, float):
        return repr(first) == repr(second)
    try:
        return bool(first == second)
    except Exception:
        return False


def normalised_keys(row: Mapping[Any, Any]) -> tuple[dict[str, Any], str]:
    """Map a dict row's string keys to lower case without ``_`` (``unique_id``, ``uniqueId``, ``UNIQUE_ID`` all match).

    :returns: ``(keys, "")``, or ``({}, reason)`` when two keys mean the same field with different raw
        values (:func:`_same`: ``True`` and ``1``, ``1`` and ``"1"`` differ).
    """
    keys: dict[str, Any] = {}
    for key, item in row.items():
        if isinstance(key, str):
            name = key.replace("_", "").lower()
            if name in keys and not _same(keys[name], item):
                return {}, f"the keys name {name!r} twice, with different values"
            keys[name] = item
    return keys, ""


def _lacks(row: Mapping[Any, Any], fields: set[str]) -> bool:
    """A single dict given for a list names none of the row's fields (a conflict is left to the row check)."""
    keys, conflict = normalised_keys(row)
    return not conflict and not fields & keys.keys()


def _is_row(value: Any) -> bool:
    """A tuple, list, dict, or another mapping or sequence that is not text (concrete types checked first: cheap)."""
    return isinstance(value, (tuple, list, dict)) or (
        isinstance(value, (Mapping, Sequence)) and not isinstance(value, (str, bytes, bytearray))
    )


def parse_unique_ids(
    value: Any, owner: str = "CancelPointsOperator", *, invalid: InputErrors | None = None
) -> tuple[list[PointItem], int, int]:
    """Validate an XCom of unique_ids; return ``(items in first-seen order, rows, duplicates)``.

    Accepts a list of ints or digit strings, of 1-column rows (``[(123,), (456,)]``), of dicts with
    ``unique_id``, and the string a non-native Jinja render makes of any of these. A single id (an
    int, digit string, integral Decimal, or the JSON/repr string of one) or a single dict with
    ``unique_id`` is that one row.

    :param invalid: with ``on_invalid="skip"``, the collector of invalid rows (nothing is raised for
        them; ``duplicates`` then leaves them out).
    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    errors = invalid if invalid is not None else InputErrors("unique_ids", owner)
    ids: dict[int, None] = {}

    def check(position: int, row: Any) -> None:
        raw = row
        if isinstance(row, (tuple, list)) or (_is_row(row) and not isinstance(row, Mapping)):
            if len(row) != 1:
                errors.add(position, row, f"a row of {len(row)} columns; expected 1 (unique_id)")
                return
            raw = row[0]
        elif isinstance(row, Mapping):
            keys, conflict = normalised_keys(row)
            if conflict:
                errors.add(position, row, conflict)
                return
            if "uniqueid" not in keys:
                errors.add(position, row, "a dict without unique_id")
                return
            raw = keys["uniqueid"]
        number, reason = positive_int(raw)
        if number is None:
            errors.add(position, raw, reason)
        else:
            ids[number] = None

    rows = read_rows(value, "unique_ids", owner, check, (int, str, float, Decimal, Integral, dict))
    if isinstance(rows, _Single):
        if isinstance(rows.value, dict) and _lacks(rows.value, {"uniqueid"}):
            raise AirflowFailException(
                f"{owner}: unique_ids must be a list of rows, got a dict without unique_id: {_show(rows.value)}"
            )
        errors.single = True
        check(0, rows.value)
        rows = 1
    errors.raise_if_any()
    return [PointItem(uid) for uid in ids], rows, rows - len(ids) - errors.count


def parse_earns(
    value: Any, owner: str = "RevokeEarnOperator", *, invalid: InputErrors | None = None
) -> tuple[list[EarnItem], int, int]:
    """Validate an XCom of earns; return ``(items in first-seen order, rows, duplicates)``.

    Accepts a list of rows ``(customer_id, promotion_id, earn_id)`` or of dicts with
    ``customer_id``/``promotion_id``/``earn_id`` (camelCase too), and the string a non-native Jinja
    render makes of either. A single dict is that one row. A single row given as a tuple/list (three
    values, none of them a row) is refused: it cannot be told from a list of three bad rows, so the
    message asks for the list.

    :param invalid: with ``on_invalid="skip"``, the collector of invalid rows (nothing is raised for
        them; ``duplicates`` then leaves them out).
    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    errors = invalid if invalid is not None else InputErrors("earns", owner)
    earns: dict[EarnItem, None] = {}
    promotions: dict[str, str] = {}  # one string per promotion: a million earns share a few
    saw_row = False

    def check(position: int, row: Any) -> None:
        nonlocal saw_row
        if isinstance(row, (tuple, list)) and len(row) == 3:
            fields = (row[0], row[1], row[2])
        elif isinstance(row, Mapping):
            keys, conflict = normalised_keys(row)
            if conflict:
                saw_row = True
                errors.add(position, row, conflict)
                return
            fields = (keys.get("customerid"), keys.get("promotionid"), keys.get("earnid"))
        elif _is_row(row) and len(row) == 3:
            fields = (row[0], row[1], row[2])
        else:
            saw_row = saw_row or _is_row(row)
            errors.add(position, row, "expected (customer_id, promotion_id, earn_id) or a dict with those keys")
            return
        saw_row = True
        customer, why_customer = positive_int(fields[0])
        promotion, why_promotion = text_id(fields[1])
        earn, why_earn = text_id(fields[2])
        if customer is None:
            errors.add(position, row, f"customer_id {why_customer}")
        elif promotion is None:
            errors.add(position, row, f"promotion_id {why_promotion}")
        elif "/" in promotion:  # the ledger key is customer/promotion/earn: a '/' would make it ambiguous
            errors.add(position, row, "promotion_id contains '/'")
        elif earn is None:
            errors.add(position, row, f"earn_id {why_earn}")
        elif errors.count == 0 or errors.skip:  # stop building once the input is known to be bad
            earns[EarnItem(customer, promotions.setdefault(promotion, promotion), earn)] = None

    rows = read_rows(value, "earns", owner, check, dict)
    if isinstance(rows, _Single):
        if _lacks(rows.value, {"customerid", "promotionid", "earnid"}):
            raise AirflowFailException(
                f"{owner}: earns must be a list of rows, got a dict without customer_id, promotion_id or earn_id: "
                f"{_show(rows.value)}"
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
