"""A reader of the Python literals a repr of rows is made of: never ``eval``, never ``ast``.

A Jinja ``xcom_pull`` that is not rendered natively arrives as the repr of the rows. ``ast.parse``
of a million tuples costs seconds and gigabytes before a single row is checked; this reader streams
the rows of a top-level list to a callback as it reads them, bounds every number's length before
converting it, bounds nesting, and reads numbers with a fraction or exponent as the exact
:class:`~decimal.Decimal` they spell (never a binary float), marked as a float's text
(:class:`~airflow_provider_loyalty.items.FloatText`): judged by the float rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from airflow_provider_loyalty._show import show
from airflow_provider_loyalty.items import MAX_TEXT_ID_CHARS, FloatText

#: Containers nested deeper than this in a rendered string are refused (a valid input nests 2 deep:
#: the list, a row; a few more levels give a row-level message rather than a reader error).
MAX_DEPTH = 8
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
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:s?NaN|Inf(?:inity)?)")


class Streamed:
    """A top-level list or tuple whose rows were passed to ``on_row`` as they were read."""

    __slots__ = ("is_tuple", "rows")

    def __init__(self, rows: int, is_tuple: bool = False) -> None:
        self.rows = rows
        #: the text was a tuple ``(a, b)``, not a list: a caller may find that ambiguous (one row or rows?)
        self.is_tuple = is_tuple


def same_value(first: Any, second: Any) -> bool:
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


class DuplicateKeys(dict):  # type: ignore[type-arg]
    """A dict read from text that gives one key twice, with different values.

    It holds the last value, as Python and ``json`` do, and says which key in ``conflict``: the row
    check refuses such a row rather than take either value (``{"unique_id": 1, "unique_id": 2}`` is
    neither id 1 nor id 2).
    """

    __slots__ = ("conflict",)

    conflict: str


def dict_of_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """The dict of an object's ``(key, value)`` pairs as read (``json.loads``' ``object_pairs_hook`` too).

    A key given twice with the same raw value (:func:`same_value`) is harmless; with different values
    the result is a :class:`DuplicateKeys`. Constant work over ``dict()`` unless a key repeats.
    """
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    first: dict[Any, Any] = {}
    for key, value in pairs:
        if key in first and not same_value(first[key], value):
            marked = DuplicateKeys(result)
            marked.conflict = (
                f"the key {show(key)} is given twice, with different values ({show(first[key])} and {show(value)})"
            )
            return marked
        first.setdefault(key, value)
    return result


class ReadError(Exception):
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
        return dict_of_pairs(
            [
                (key, int(number) if number else None if none else text)
                for key, number, text, none in _PAIR.findall(match[first])
            ]
        )
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
                raise ReadError(offset + match.start(), "an escape beyond the last Unicode code point")
            return chr(code)
        if match[4]:
            return chr(int(match[4], 8))
        simple = _SIMPLE_ESCAPES.get(match[5])
        if simple is None:
            raise ReadError(offset + match.start(), f"an unknown escape {match[0]!r} in a string")
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
            return dict_of_pairs(self.items)
        try:
            return set(self.items)
        except TypeError:
            raise ReadError(self.start, "a set of unhashable values") from None

    def settle(self, offset: int) -> None:
        """A ``{``'s pending element is a set member (a ``,`` or ``}`` followed it, not ``:``)."""
        if self.key is not _MISSING:
            if self.mode == "dict":
                raise ReadError(offset, "a dict key without a value")
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


def float_text(token: str) -> FloatText:
    """A number literal written with a fraction or exponent (syntax already checked): a float's text.

    Its exact value (:func:`exact_number`), marked as a float's text so that the float rule judges
    it (:func:`~airflow_provider_loyalty.items.float_reason`). A ``Decimal('…')`` literal is not
    one: it is read by :func:`exact_number` alone.
    """
    return FloatText(token, exact_number(token))


def _leading_zero(offset: int, token: str) -> None:
    """Refuse an integer literal written with a leading zero (``007``): Python and JSON refuse it too.

    ``0``, ``00`` and ``-0`` are valid Python (and then refused as ids: not positive); ``007`` is a
    ``SyntaxError`` in Python 3 (an octal in Python 2, a typo or a padded code elsewhere): reading it
    as ``7`` would send an id nobody wrote. Floats may have leading zeros (``007.5`` is Python).
    """
    digits = token.lstrip("+-")
    if digits[:1] == "0" and digits.lstrip("0"):
        raise ReadError(
            offset, f"an integer written with a leading zero ({token}: Python and JSON refuse it; quote it as a string)"
        )


def _scalar(match: re.Match[str], kind: str, offset: int) -> Any:
    """The value of one scalar token, bounded in cost before it is converted."""
    token = match.group()
    if kind == "int" or kind == "float":
        if len(token) > MAX_NUMBER_CHARS:
            raise ReadError(offset, f"a number of {len(token)} characters (at most {MAX_NUMBER_CHARS} are read)")
        if kind == "int":
            _leading_zero(offset, token)
            return int(token)
        return float_text(token)
    if kind == "str":
        body = token[1:-1]
        return _unescape(body, offset + 1) if "\\" in body else body
    if kind == "decimal":
        argument = match["dint"] or match["dq1"] or match["dq2"] or ""
        if match["dint"]:
            _leading_zero(offset, argument)  # Decimal(007) is a SyntaxError; Decimal('007') is 7
        if len(argument) > MAX_DECIMAL_CHARS or not _DECIMAL_TEXT.fullmatch(argument):
            raise ReadError(
                offset, f"a Decimal of {show(argument)}, not a number of at most {MAX_DECIMAL_CHARS} characters"
            )
        return exact_number(argument)  # Decimal('1e99999999999999999999') must not raise past the reader
    if kind == "name":
        word = token
        if word in _NAMES:
            return _NAMES[word]
        if word in ("b", "rb", "br", "B") and match.end() < len(match.string) and match.string[match.end()] in "'\"":
            raise ReadError(offset, "a bytes literal (ids are numbers or text)")
        if word == "Decimal":
            raise ReadError(offset, "Decimal(...) of something other than a quoted number or an integer")
        raise ReadError(offset, f"the name {word!r} (only literals are read: nothing is evaluated)")
    raise ReadError(offset, "an unexpected character")


def read_literal(text: str, on_row: Callable[[int, Any], None] | None = None) -> Any:
    """Read one Python literal of the rows grammar, iteratively (no recursion), in one pass over ``text``.

    With ``on_row``, the elements of a top-level list or tuple go to ``on_row`` as they are read
    and ``Streamed(count, is_tuple)`` is returned. A top-level tuple holds its element back until a
    comma shows it is a tuple: ``(x)`` is ``x`` itself, as in Python. A dict that gives a key twice
    with different values is a :class:`DuplicateKeys` (:func:`dict_of_pairs`); an integer written with
    a leading zero (``007``) is refused, as Python refuses it.
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
            raise ReadError(match.start(), f"more text after the value{bare}")
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
                    raise ReadError(match.start(), f"containers nested more than {MAX_DEPTH} deep")
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
                raise ReadError(match.start(), f"{match.group()!r} where a value was expected")
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
                    raise ReadError(match.start(), f"a dict key {show(frame.key)} that is not a string")
                frame.mode = "dict"
                expect_value, may_close = True, False
                continue
            if kind == "close" and _CLOSER[frame.kind] == match.group():
                closing = stack.pop()
            else:
                raise ReadError(match.start(), f"{match.group()!r} where ',' or a closing bracket was expected")
        if closing is not None:
            if on_row is not None and not stack and closing.kind != "{":
                if closing.kind == "(" and not closing.comma and closing.items:
                    value = closing.items[0]  # (x) is x
                else:
                    for item in closing.items:  # the tuple's last element (lists hold none back)
                        on_row(rows, item)
                        rows += 1
                    value = Streamed(rows, closing.kind == "(")
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
        raise ReadError(stack[-1].start, f"{stack[-1].kind!r} is never closed")
    if result is _MISSING:
        raise ReadError(0, "no value")
    return result
