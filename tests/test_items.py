"""One rule for what names an item: the operators' parsers and the hooks judge every value alike."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_loyalty.items import MAX_BIGINT, EarnItem, PointItem, earn_items, point_items
from airflow_provider_loyalty.operators._inputs import parse_earns, parse_unique_ids

ids = st.one_of(
    st.integers(min_value=-5, max_value=MAX_BIGINT + 5),
    st.sampled_from([0, 1, MAX_BIGINT, MAX_BIGINT + 1, 2**53 + 1, -(2**63)]),
    st.text(alphabet="0123456789 +-x\r", max_size=22),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.floats(),
    st.booleans(),
    st.none(),
)
texts = st.one_of(
    st.text(max_size=12),
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
