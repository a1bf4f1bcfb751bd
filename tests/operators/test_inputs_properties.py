"""Property tests of the input parsers (issue 11): any input either yields exactly the rows it denotes,
or raises AirflowFailException — never another exception, never characters or bytes iterated.

Small and fast by default; ``LOYALTY_HYPOTHESIS_EXAMPLES=2000`` runs them harder. No example
database is written (``database=None``): nothing appears in the work tree.
"""

from __future__ import annotations

import array
import ast
import json
import math
import os
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_loyalty.items import MAX_BIGINT, MAX_TEXT_ID_CHARS, EarnItem, PointItem, positive_int
from airflow_provider_loyalty.operators import _literal
from airflow_provider_loyalty.operators._inputs import InputErrors, parse_earns, parse_unique_ids
from airflow_provider_loyalty.operators._literal import read_literal

EXAMPLES = int(os.environ.get("LOYALTY_HYPOTHESIS_EXAMPLES", "60"))
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- valid rows, every accepted shape

ids = st.one_of(st.integers(1, 30), st.integers(1, MAX_BIGINT))  # small ones repeat: duplicates


@st.composite
def id_value(draw: st.DrawFn, uid: int, json_able: bool) -> Any:
    """One way of writing the id ``uid`` in a row."""
    shapes = ["int", "digits", "padded", "float"] + ([] if json_able else ["decimal", "decimal_exp"])
    shape = draw(st.sampled_from(shapes))
    if shape == "float" and uid >= 2**53:  # a native float is an id only below 2**53
        shape = "int"
    return {
        "int": uid,
        "digits": str(uid),
        "padded": f" 00{uid} ",
        "float": float(uid),
        "decimal": Decimal(uid),
        "decimal_exp": Decimal(uid).scaleb(-2).scaleb(2),  # Decimal('4.711E+3'): the same number
    }[shape]


@st.composite
def unique_id_rows(draw: st.DrawFn, json_able: bool) -> tuple[list[Any], list[int]]:
    """``(rows, expected ids in first-seen order)``."""
    uids = draw(st.lists(ids, max_size=25))
    rows = []
    for uid in uids:
        value = draw(id_value(uid, json_able))
        shape = draw(st.sampled_from(["bare", "tuple", "list", "dict", "camel_dict"]))
        rows.append(
            {
                "bare": value,
                "tuple": (value,),
                "list": [value],
                "dict": {"unique_id": value, "loaded_at": "2025-01-01"},
                "camel_dict": {"uniqueId": value},
            }[shape]
        )
    return rows, list(dict.fromkeys(uids))


#: Unicode categories a text id never holds (items._REFUSED): controls, invisible format characters,
#: surrogates, private use, unassigned and noncharacters, line and paragraph separators.
REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
# text ids: any character of the other categories (repr escapes the unprintable spaces), '/' only
# in earn ids; spaces other than U+0020 (Zs) only inside an id, never at its ends
text_chars = st.characters(exclude_categories=(*REFUSED_CATEGORIES, "Zs"))
inner_chars = st.characters(exclude_categories=REFUSED_CATEGORIES)


def spaced(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text ids with any space (U+00A0, U+3000...) inside, none at the ends."""
    return st.tuples(chars, st.text(inner_chars, max_size=10), chars).map("".join)


promotion_ids = st.one_of(
    st.sampled_from(["69117663b1cfc114606fd7fb", "p'q", 'p"q', "p\\q", "p\xa0q", "p q"]),
    st.text(text_chars.filter(lambda c: c != "/"), min_size=1, max_size=30),
    spaced(text_chars.filter(lambda c: c != "/")).filter(lambda t: "/" not in t),
)
earn_ids = st.one_of(
    st.text(text_chars, min_size=1, max_size=30),
    spaced(text_chars),
    st.integers(0, 10**30).map(str),
    st.text(text_chars, min_size=MAX_TEXT_ID_CHARS, max_size=MAX_TEXT_ID_CHARS),
)


@st.composite
def earn_rows(draw: st.DrawFn, json_able: bool) -> tuple[list[Any], list[EarnItem]]:
    """``(rows, expected items in first-seen order)``."""
    pool = draw(st.lists(st.tuples(ids, promotion_ids, earn_ids), min_size=1, max_size=6))
    chosen = draw(st.lists(st.sampled_from(pool), max_size=25))
    rows = []
    for customer, promotion, earn in chosen:
        value = draw(id_value(customer, json_able))
        shape = draw(st.sampled_from(["tuple", "list", "dict", "camel_dict"]))
        rows.append(
            {
                "tuple": (value, promotion, earn),
                "list": [value, promotion, earn],
                "dict": {"customer_id": value, "promotion_id": promotion, "earn_id": earn},
                "camel_dict": {"customerId": value, "promotionId": promotion, "earnId": earn, "points": 5},
            }[shape]
        )
    return rows, list(dict.fromkeys(EarnItem(c, p, e) for c, p, e in chosen))


def renderings(rows: list[Any], json_able: bool) -> list[Any]:
    """The input as an XComArg, a non-native Jinja render (repr), JSON, and bytes of each."""
    out: list[Any] = [rows, tuple(rows), repr(rows), repr(tuple(rows)), repr(rows).encode()]
    if json_able:
        out += [json.dumps(rows), json.dumps(rows, indent=2).encode()]
    return out


@FAST
@given(st.booleans().flatmap(lambda j: st.tuples(st.just(j), unique_id_rows(j))))
def test_valid_unique_ids_in_every_shape_and_rendering(case: tuple[bool, tuple[list[Any], list[int]]]) -> None:
    json_able, (rows, expected) = case
    # review 6: a tuple of two or more ids, none a row, may be one row of that many columns: refused
    ambiguous = len(rows) >= 2 and not any(isinstance(row, (tuple, list, dict)) for row in rows)
    for value in renderings(rows, json_able):
        if ambiguous and (isinstance(value, tuple) or (isinstance(value, str) and value.startswith("("))):
            with pytest.raises(AirflowFailException, match="ambiguous"):
                parse_unique_ids(value)
            continue
        items, count, duplicates = parse_unique_ids(value)
        assert items == [PointItem(uid) for uid in expected], value
        assert (count, duplicates) == (len(rows), len(rows) - len(expected))


@FAST
@given(ids, st.booleans())
def test_a_single_id_is_that_one_id(uid: int, with_blanks: bool) -> None:
    pad = " \n" if with_blanks else ""
    for value in (
        uid,
        str(uid),
        f"{pad}{uid}{pad}",
        json.dumps(str(uid)),
        repr(str(uid)),
        f"[{uid}]",
        Decimal(uid),
        str(uid).encode(),
        {"unique_id": uid},
    ):
        assert parse_unique_ids(value) == ([PointItem(uid)], 1, 0), value


@FAST
@given(st.booleans().flatmap(lambda j: st.tuples(st.just(j), earn_rows(j))))
def test_valid_earns_in_every_shape_and_rendering(case: tuple[bool, tuple[list[Any], list[EarnItem]]]) -> None:
    json_able, (rows, expected) = case
    for value in renderings(rows, json_able):
        items, count, duplicates = parse_earns(value)
        assert items == expected, value
        assert (count, duplicates) == (len(rows), len(rows) - len(expected))


@FAST
@given(unique_id_rows(json_able=False), earn_rows(json_able=False))
def test_fast_path_rows_read_as_the_general_grammar_reads_them(
    id_case: tuple[list[Any], list[int]], earn_case: tuple[list[Any], list[EarnItem]]
) -> None:
    """The one-token fast paths for common rows denote exactly what the general tokens read."""
    for parse, rows in ((parse_unique_ids, id_case[0]), (parse_earns, earn_case[0])):
        for text in (repr(rows), repr(tuple(rows))):
            fast = outcome(parse, text)
            with mock.patch.object(_literal, "_TOKEN", _literal._GENERAL_TOKEN):
                general = outcome(parse, text)
            assert fast == general, text


# ---------------------------------------------------------------- hostile input

scalars = st.one_of(
    st.binary(max_size=6).map(memoryview),
    st.binary(max_size=6).map(lambda raw: array.array("B", raw)),
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.decimals(),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.text(max_size=20),
    st.text(alphabet="0123456789+- .eE_x", max_size=25),
    st.binary(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner),
        st.tuples(inner, inner, inner),
        st.dictionaries(
            st.sampled_from(["unique_id", "uniqueId", "customer_id", "promotionId", "earn_id", "x"]), inner, max_size=4
        ),
        st.dictionaries(st.one_of(st.integers(), st.text(max_size=5)), inner, max_size=3),
    ),
    max_leaves=20,
)
grammar_text = st.text(alphabet="[](){},:'\"\\0123456789+-.eEjxDecimalNoneTrusb \n", max_size=60)


def outcome(parse: Any, value: Any) -> Any:
    """The parse result, or the AirflowFailException type; any other exception fails the test."""
    try:
        return parse(value)
    except AirflowFailException as exc:
        assert str(exc) and len(str(exc)) < 2000  # names the value, never dumps it
        return AirflowFailException


def has_float_from_2p53(value: Any) -> bool:
    """``value`` holds, at any depth, a float at or above 2**53 in magnitude."""
    if isinstance(value, float):
        return abs(value) >= 2**53
    if isinstance(value, dict):
        return any(has_float_from_2p53(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_float_from_2p53(item) for item in value)
    return False


def check_items(parse: Any, result: Any) -> None:
    if result is AirflowFailException:
        return
    items, count, duplicates = result
    assert len(items) == count - duplicates and len(set(items)) == len(items)
    for item in items:
        if parse is parse_unique_ids:
            assert type(item.unique_id) is int and 0 < item.unique_id <= MAX_BIGINT
        else:
            assert type(item.customer_id) is int and 0 < item.customer_id <= MAX_BIGINT
            for text in (item.promotion_id, item.earn_id):
                assert isinstance(text, str) and 0 < len(text) <= MAX_TEXT_ID_CHARS and "\x00" not in text
                assert not any(unicodedata.category(char) in REFUSED_CATEGORIES for char in text), text
                assert not (text[0].isspace() or text[-1].isspace()), text
            assert "/" not in item.promotion_id


@pytest.mark.parametrize("parse", [parse_unique_ids, parse_earns], ids=["unique_ids", "earns"])
@FAST
@given(value=values)
def test_hostile_values_and_their_renderings_agree_or_fail_cleanly(parse: Any, value: Any) -> None:
    native = outcome(parse, value)
    check_items(parse, native)
    for text in (repr(value), repr([value])):
        rendered = outcome(parse, text)
        check_items(parse, rendered)
        if rendered is not AirflowFailException and text == repr(value) and not has_float_from_2p53(value):
            # what the reader accepts, it reads as exactly what repr() was made of (a native integral
            # float from 2**53 on is refused, while its repr spells an exact integer the reader accepts)
            assert native == rendered, (value, text)
        with mock.patch.object(_literal, "_TOKEN", _literal._GENERAL_TOKEN):
            assert outcome(parse, text) == rendered, text
    try:
        as_json = json.dumps(value)
    except (TypeError, ValueError):
        return
    check_items(parse, outcome(parse, as_json))


@pytest.mark.parametrize("parse", [parse_unique_ids, parse_earns], ids=["unique_ids", "earns"])
@FAST
@given(text=st.one_of(st.text(max_size=80), grammar_text, st.binary(max_size=40)))
def test_arbitrary_text_and_bytes_fail_cleanly_or_parse(parse: Any, text: str | bytes) -> None:
    check_items(parse, outcome(parse, text))


@FAST
@given(st.lists(ids, min_size=1, max_size=10))
def test_a_rendered_string_is_never_read_character_by_character(uids: list[int]) -> None:
    """Issue 11: '"4711"' once sent ids 4, 7, 1, 1. A string is a rendering of rows or one id, never a sequence."""
    joined = "".join(str(u) for u in uids)
    result = outcome(parse_unique_ids, json.dumps(joined))
    if len(joined.lstrip("0")) <= 19 and int(joined) <= MAX_BIGINT:
        assert result == ([PointItem(int(joined))], 1, 0)
    else:
        assert result is AirflowFailException


# ---------------------------------------------------------------- number literals (review 5)


@st.composite
def number_texts(draw: st.DrawFn) -> str:
    """A number literal as JSON or repr spells it: often exactly an integer, often a hair off one."""
    kind = draw(st.sampled_from(["float_repr", "fraction", "shifted", "scientific", "near_above", "near_below"]))
    if kind == "float_repr":
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False)))
    n = draw(st.one_of(st.integers(-5, 30), st.integers(2**53 - 3, 2**53 + 3), st.integers(-(10**20), 10**20)))
    zeros = draw(st.integers(0, 25))
    return {
        "fraction": f"{n}.{'0' * zeros}",  # '5.' is Python, not JSON: the literal reader reads it
        "shifted": f"{n * 10**zeros}e-{zeros}",
        "scientific": f"{Decimal(n):E}",  # '4.711E+3'
        "near_above": f"{n}.{'0' * zeros}1",
        "near_below": f"{n - 1}.{'9' * (zeros + 16)}",
    }[kind]


@FAST
@given(number_texts())
def test_a_number_literal_is_exactly_the_integer_it_spells_or_refused(text: str) -> None:
    """'[9007199254740993.0]' once sent ...992 and '[4710.9999999999999999]' sent 4711: never a neighbour.

    Every text here has a fraction or an exponent: a float's text, an id only when it is exactly an
    integer below 2**53 (the float rule; issue 22).
    """
    exact = Fraction(text)  # the oracle: exact rational arithmetic, no float anywhere
    valid = exact.denominator == 1 and 0 < exact < 2**53
    for rendered in (f"[{text}]", f"[({text},)]", f'[{{"unique_id": {text}}}]', text):
        result = outcome(parse_unique_ids, rendered)
        assert result == (([PointItem(int(exact))], 1, 0) if valid else AirflowFailException), rendered
    for rendered in (f'[[{text}, "P", "E"]]', f"[({text}, 'P', 'E')]"):
        result = outcome(parse_earns, rendered)
        assert result == (([EarnItem(int(exact), "P", "E")], 1, 0) if valid else AirflowFailException), rendered


@FAST
@given(st.one_of(st.floats(), st.integers(-(2**54), 2**54).map(float), st.sampled_from([2.0**53, 2.0**53 - 1])))
def test_a_native_float_is_an_id_only_if_integral_and_below_2p53(value: float) -> None:
    valid = math.isfinite(value) and value.is_integer() and 0 < value < 2**53
    assert outcome(parse_unique_ids, [value]) == (([PointItem(int(value))], 1, 0) if valid else AirflowFailException)


@FAST
@given(st.integers(2**53, 2 * MAX_BIGINT), st.sampled_from([repr, json.dumps]))
def test_a_float_text_at_or_above_2p53_is_refused_by_every_reader(n: int, spell: Callable[[float], str]) -> None:
    """Issue 22: a float column rendered by Jinja (``[1.2345678901234568e+16]``) is not the id it rounds to."""
    text = spell(float(n))
    assert "." in text or "e" in text  # what a float prints: a fraction or an exponent
    for rendered in (f"[{text}]", f"[({text},)]", f'[{{"unique_id": {text}}}]', text):  # JSON, repr reader, both
        assert outcome(parse_unique_ids, rendered) is AirflowFailException, rendered
    assert outcome(parse_earns, f"[({text}, 'P', 'E')]") is AirflowFailException
    assert outcome(parse_earns, f'[[{text}, "P", "E"]]') is AirflowFailException
    read = read_literal(f"[{text}]")[0]  # the repr reader on its own, and the one rule
    assert positive_int(read)[0] is None and "2**53" in positive_int(read)[1]
    assert outcome(parse_unique_ids, [float(n)]) is AirflowFailException  # the native float, by the same rule
    if n <= MAX_BIGINT:  # the same id written as an integer is that id, in every form
        for rendered in (f"[{n}]", f"[({n},)]", str(n), [n]):
            assert outcome(parse_unique_ids, rendered) == ([PointItem(n)], 1, 0), rendered


@FAST
@given(st.integers(1, 2**53 - 1), st.sampled_from([repr, json.dumps]))
def test_a_float_text_below_2p53_is_the_id_as_before(n: int, spell: Callable[[float], str]) -> None:
    """``123.0`` stays 123, as the native float 123.0 does."""
    text = spell(float(n))
    for rendered in (f"[{text}]", f"[({text},)]", text, [float(n)]):
        assert outcome(parse_unique_ids, rendered) == ([PointItem(n)], 1, 0), rendered


_key_values = st.one_of(
    st.booleans(),
    st.integers(0, 3),
    st.sampled_from(["1", "0", "2"]),
    st.sampled_from([0.0, -0.0, 1.0, 2.0]),
    st.sampled_from([Decimal("1"), Decimal("1.0"), Decimal("2")]),
)


@FAST
@given(_key_values, _key_values, st.sampled_from(["uniqueId", "UNIQUE_ID", "uniqueid"]))
def test_keys_naming_one_field_agree_only_on_the_same_raw_value(first: Any, second: Any, other_key: str) -> None:
    """Review 5: {'uniqueId': True, 'unique_id': 1} was id 1. Same type and value, or refused, in either order."""
    same = type(first) is type(second) and repr(first) == repr(second)
    for row in ({"unique_id": first, other_key: second}, {other_key: second, "unique_id": first}):
        result = outcome(parse_unique_ids, [row])
        if not same:
            assert result is AirflowFailException, row
        else:
            assert result == outcome(parse_unique_ids, [first]), row


# ---------------------------------------------------------------- review 6


scalar_ids = st.one_of(ids, ids.map(str), ids.map(Decimal))


@FAST
@given(st.lists(scalar_ids, max_size=6))
def test_a_tuple_of_ids_is_one_id_or_refused_as_ambiguous(values: list[Any]) -> None:
    """(4711, 500), fetch_one's row of SELECT unique_id, points, once cancelled issuance 500."""
    expected = list(dict.fromkeys(int(value) for value in values))
    for value in (tuple(values), repr(tuple(values)), repr(tuple(values)).encode()):
        result = outcome(parse_unique_ids, value)
        if len(values) >= 2:
            assert result is AirflowFailException, value
            with pytest.raises(AirflowFailException, match=f"a tuple of {len(values)} values, none of them a row"):
                parse_unique_ids(value, invalid=InputErrors("unique_ids", "CancelPointsOperator", skip=True))
        else:
            assert result == ([PointItem(uid) for uid in expected], len(values), 0), value
    for value in (values, repr(values), tuple((value,) for value in values), repr(tuple((v,) for v in values))):
        assert outcome(parse_unique_ids, value) == (
            [PointItem(uid) for uid in expected],
            len(values),
            len(values) - len(expected),
        ), value


buffers = st.one_of(
    st.binary(min_size=1, max_size=8).map(memoryview),
    st.binary(min_size=1, max_size=8).map(lambda raw: array.array("B", raw)),
    st.lists(st.integers(1, 2**62), min_size=1, max_size=3).map(lambda numbers: array.array("q", numbers)),
    st.binary(min_size=1, max_size=8).map(lambda raw: memoryview(raw).cast("c")),
)


@FAST
@given(buffers, st.lists(ids, max_size=3))
def test_a_buffer_row_is_never_read_byte_by_byte(buffer: Any, valid: list[int]) -> None:
    """psycopg2 returns BYTEA as a memoryview: [memoryview(b"\\x07")] once sent id 7."""
    for rows in ([buffer], [*valid, buffer], [(buffer,)], [{"unique_id": buffer}]):
        assert outcome(parse_unique_ids, rows) is AirflowFailException, rows
    earn_rows_given = [(uid, "P", "E") for uid in valid]
    for rows in ([buffer], [*earn_rows_given, buffer], [(buffer, "P", "E")], [(1, buffer, "E")]):
        assert outcome(parse_earns, rows) is AirflowFailException, rows


@st.composite
def integer_literals(draw: st.DrawFn) -> str:
    """An integer literal, often with leading zeros (which Python refuses unless the number is 0)."""
    sign = draw(st.sampled_from(["", "", "-", "+"]))
    zeros = draw(st.sampled_from([0, 0, 1, 2, 5]))
    number = draw(st.one_of(st.integers(0, 30), st.integers(0, MAX_BIGINT)))
    return f"{sign}{'0' * zeros}{number}"


def python_reads(literal: str) -> Any:
    """What Python reads the literal as, or SyntaxError (the oracle: 007 is not Python 3)."""
    try:
        return ast.literal_eval(literal)
    except SyntaxError:
        return SyntaxError


@FAST
@given(integer_literals())
def test_an_integer_literal_is_read_as_python_reads_it_or_refused_like_python(literal: str) -> None:
    """'[007]' once sent id 7 and "[(1, 'P', 007)]" earn id '7': Python refuses 007, so does the reader."""
    python = python_reads(literal)
    for text in (f"[{literal}]", f"[({literal},)]", f"[{{'unique_id': {literal}}}]", f"({literal})", literal):
        result = outcome(parse_unique_ids, text)
        with mock.patch.object(_literal, "_TOKEN", _literal._GENERAL_TOKEN):
            assert outcome(parse_unique_ids, text) == result, text
        if python is SyntaxError:
            assert result is AirflowFailException, text
            with pytest.raises(AirflowFailException, match="leading zero"):
                parse_unique_ids(text)
        else:
            assert result == outcome(parse_unique_ids, [python]), text
    for text in (f"[(1, 'P', {literal})]", f"[({literal}, 'P', 'E')]"):
        result = outcome(parse_earns, text)
        if python is SyntaxError:
            assert result is AirflowFailException, text
        else:
            assert result == outcome(parse_earns, [ast.literal_eval(text[1:-1])]), text


pair_values = st.one_of(st.integers(1, 3), st.sampled_from(["1", "2", "a"]), st.none(), st.booleans())


@FAST
@given(
    st.lists(st.lists(st.tuples(st.sampled_from(["unique_id", "x"]), pair_values), min_size=1, max_size=5), max_size=4)
)
def test_a_key_given_twice_with_different_values_is_neither_value(rows: list[list[tuple[str, Any]]]) -> None:
    """'[{"unique_id": 1, "unique_id": 2}]' once sent id 2: in JSON and in a repr, a repeated key must agree."""

    def conflict(pairs: list[tuple[str, Any]]) -> bool:
        first: dict[str, Any] = {}
        for key, value in pairs:
            if key in first and (type(first[key]) is not type(value) or first[key] != value):
                return True
            first.setdefault(key, value)
        return False

    expected: Any
    if any(conflict(pairs) for pairs in rows):
        expected = AirflowFailException
    else:
        expected = outcome(parse_unique_ids, [dict(pairs) for pairs in rows])
    as_repr = "[" + ", ".join("{" + ", ".join(f"{k!r}: {v!r}" for k, v in pairs) + "}" for pairs in rows) + "]"
    as_json = (
        "[" + ", ".join("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in p) + "}" for p in rows) + "]"
    )
    for text in (as_repr, as_json):
        assert outcome(parse_unique_ids, text) == expected, text
        with mock.patch.object(_literal, "_TOKEN", _literal._GENERAL_TOKEN):
            assert outcome(parse_unique_ids, text) == expected, text
