"""One rule for what names an item: the operators' parsers and the hooks judge every value alike."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_loyalty.items import (
    MAX_BIGINT,
    MAX_TEXT_ID_CHARS,
    EarnItem,
    PointItem,
    earn_items,
    point_items,
    positive_int,
    text_id,
)
from airflow_provider_loyalty.operators._inputs import parse_earns, parse_unique_ids

ids = st.one_of(
    st.integers(min_value=-5, max_value=MAX_BIGINT + 5),
    st.sampled_from([0, 1, MAX_BIGINT, MAX_BIGINT + 1, 2**53 + 1, -(2**63)]),
    st.text(alphabet="0123456789 +-x\r", max_size=22),
    st.text(alphabet="0123456789 \t\r\n\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000\ufeff", max_size=12),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.floats(),
    st.booleans(),
    st.none(),
)
#: Unicode categories a text id never holds (review 6): controls, invisible format characters (U+200B,
#: U+202E, U+FEFF), surrogates, private use, unassigned and noncharacters, line/paragraph separators.
REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
#: Characters that came, or could come, from a broken extraction: each of a refused category or a space.
NASTY = (
    "\x00\t\r\n\x1c\x1f\x7f\x85\xa0\xad\u1680\u200b\u200e\u202e\u2028\u2029\u3000\ufeff\ufdd0\uffff\ue000\u0378\ud800"
)
unicode_texts = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec=None), max_size=12),
    st.text(st.characters(categories=["Cs", "Co", "Cn", "Cf", "Zs", "Zl", "Zp"]), max_size=4),
    st.text(alphabet=st.sampled_from(["a", "é", " ", "/", *NASTY]), max_size=6),
)
texts = st.one_of(
    unicode_texts,
    st.text(alphabet="ab/ \r\x00", max_size=5),
    st.text(min_size=199, max_size=202, alphabet="e"),
    st.integers(min_value=-3, max_value=10**5),
    st.none(),
    st.booleans(),
    st.floats(),
)


def by_operator_ids(values: list[Any]) -> list[PointItem] | None:
    try:
        return parse_unique_ids(values)[0]
    except AirflowFailException:
        return None


def by_hook_ids(values: list[Any]) -> list[PointItem] | None:
    try:
        return point_items(values)
    except ValueError:
        return None


@given(st.lists(ids, min_size=1, max_size=4, unique_by=repr))
def test_the_hook_takes_exactly_the_ids_the_operator_takes(values: list[Any]) -> None:
    by_operator = by_operator_ids(values)
    if by_operator is not None and len(by_operator) < len(values):
        return  # the operator drops duplicate rows; one request refuses an id given twice
    assert by_hook_ids(values) == by_operator, values


@given(st.integers(min_value=-2, max_value=MAX_BIGINT + 2), texts, texts)
def test_the_hook_takes_exactly_the_earns_the_operator_takes(customer: int, promotion: Any, earn: Any) -> None:
    try:
        by_operator: list[EarnItem] | None = parse_earns([(customer, promotion, earn)])[0]
    except AirflowFailException:
        by_operator = None
    try:
        by_hook: list[EarnItem] | None = earn_items(customer, {promotion: [earn]})
    except (ValueError, TypeError):
        by_hook = None
    assert by_hook == by_operator, (customer, promotion, earn)
    for item in by_operator or ():
        for text in (item.promotion_id, item.earn_id):
            assert not any(unicodedata.category(char) in REFUSED_CATEGORIES for char in text), text
            assert not (text[0].isspace() or text[-1].isspace()), text


def text_id_oracle(value: str) -> str | None:
    """What a text id written as ``value`` is, by the rules spelled out one by one (None: refused)."""
    text = value.strip(" ")
    if not text or len(text) > MAX_TEXT_ID_CHARS:
        return None
    if any(unicodedata.category(char) in REFUSED_CATEGORIES for char in text):
        return None
    if text[0].isspace() or text[-1].isspace():  # only U+0020 is trimmed; other blanks at the ends refused
        return None
    return text


@given(st.one_of(unicode_texts, st.text(min_size=195, max_size=205), st.text(alphabet=f"ab {NASTY}", max_size=250)))
def test_a_text_id_holds_no_invisible_control_or_unassigned_character(value: str) -> None:
    """Review 6: 'e1\u202e', '\u200be1', '\ufeffP', 'e\uffff', 'e1\xa0' were all sent as ids."""
    expected = text_id_oracle(value)
    accepted, why = text_id(value)
    assert accepted == expected, (value, why)
    if accepted is None:
        refused = next((c for c in value.strip(" ") if unicodedata.category(c) in REFUSED_CATEGORIES), None)
        if refused is not None and 0 < len(value.strip(" ")) <= MAX_TEXT_ID_CHARS:
            assert why.startswith(f"holds U+{ord(refused):04X}"), (value, why)  # the first one, by code point
    else:
        assert why == "" and accepted == value.strip(" ")


@given(st.one_of(st.text(alphabet="0123456789+- \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u3000", max_size=25), st.text()))
def test_a_digit_string_is_trimmed_of_ascii_blanks_only(value: str) -> None:
    """Review 6: '\x1c4711\x1f' was 4711 (str.strip() drops file separators, U+0085, U+00A0...)."""
    stripped = value.strip(" \t\r\n")
    valid = (
        len(stripped) <= 39
        and re.fullmatch(r"\+?[0-9]+", stripped, flags=re.ASCII) is not None
        and 0 < int(stripped) <= MAX_BIGINT
    )
    number, why = positive_int(value)
    assert number == (int(stripped) if valid else None), (value, why)


def test_a_typed_item_is_judged_again() -> None:
    """A NamedTuple can be built around any value: the hook does not trust the type alone."""
    with pytest.raises(ValueError, match=r"-1 \(must be positive\)"):
        point_items([PointItem(-1)])
    with pytest.raises(ValueError, match="promotion_id contains '/'"):
        earn_items(5, [EarnItem(5, "a/b", "e1")])
    assert point_items([PointItem(7), "8", Decimal("9")]) == [PointItem(7), PointItem(8), PointItem(9)]


def test_hook_refusals_name_the_values() -> None:
    with pytest.raises(ValueError, match=r"3 invalid unique_ids: 'x' \(not an integer\); None \(missing\); True"):
        point_items(["x", None, True, 4])
    with pytest.raises(ValueError, match="unique_ids: 4 is given twice"):
        point_items([4, "4"])
    with pytest.raises(ValueError, match="non-empty list"):
        point_items("123")


@pytest.mark.parametrize(
    ("promotion", "earn", "why"),
    [
        pytest.param("P", "e1\u202e", "earn_id holds U+202E RIGHT-TO-LEFT OVERRIDE", id="rtl_override"),
        pytest.param("\ufeffP", "e1", "promotion_id holds U+FEFF", id="bom"),
        pytest.param("P", "e1\xa0", "earn_id ends with U+00A0", id="no_break_space"),
        pytest.param("P", "\x1ce1", "earn_id holds U+001C, a control character", id="file_separator"),
    ],
)
def test_the_hook_refuses_what_the_operator_refuses_naming_the_code_point(promotion: str, earn: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        earn_items(5, {promotion: [earn]})
    with pytest.raises(AirflowFailException, match=re.escape(why)):
        parse_earns([(5, promotion, earn)])
    with pytest.raises(ValueError, match="not an integer"):
        point_items(["\x1c4711\x1f"])
