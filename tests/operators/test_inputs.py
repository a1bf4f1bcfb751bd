"""Parsing tables: every accepted input form, every bad value named before anything is sent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty.operators.capillary import parse_earns, plan_requests
from airflow_provider_loyalty.operators.xoxoday import parse_unique_ids

P1, P2 = "69117663b1cfc114606fd7fb", "69058646b1cfc114606f7bbe"


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        pytest.param([123, 456], [123, 456], id="ints"),
        pytest.param(["123", " 456 "], [123, 456], id="digit_strings"),
        pytest.param([(123,), (456,)], [123, 456], id="sql_rows"),
        pytest.param([[123], [456]], [123, 456], id="json_rows"),
        pytest.param([{"unique_id": 123}, {"UNIQUE_ID": 456}, {"uniqueId": 7}], [123, 456, 7], id="dicts"),
        pytest.param("[(123,), (456,)]", [123, 456], id="jinja_repr_of_rows"),
        pytest.param("[[123], [456]]", [123, 456], id="jinja_json"),
        pytest.param("[123, '456']", [123, 456], id="jinja_repr_of_mixed"),
        pytest.param("[(Decimal('123'),), (Decimal('456'),)]", [123, 456], id="postgres_numeric_repr"),
        pytest.param([Decimal("123"), 456.0], [123, 456], id="integral_decimal_and_float"),
        pytest.param((1, 2), [1, 2], id="tuple"),
        pytest.param([], [], id="empty"),
        pytest.param("[]", [], id="empty_rendered"),
        pytest.param([5, 5, (5,), "5", 6], [5, 6], id="duplicates_removed"),
    ],
)
def test_unique_ids_accepted(value, ids) -> None:
    parsed, rows, duplicates = parse_unique_ids(value)
    assert parsed == ids
    assert rows - duplicates == len(ids)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param(["12a"], ["row 0: '12a' (not an integer)"], id="not_integer"),
        pytest.param([1, -5], ["row 1: -5 (must be positive)"], id="negative"),
        pytest.param([0], ["row 0: 0 (must be positive)"], id="zero"),
        pytest.param([True], ["boolean"], id="boolean"),
        pytest.param([1.5], ["row 0: 1.5 (not an integer)"], id="fraction"),
        pytest.param([None], ["row 0: None (missing)"], id="none"),
        pytest.param([(1, 2)], ["2 columns"], id="two_columns"),
        pytest.param([{"id": 1}], ["without unique_id"], id="dict_without_key"),
        pytest.param({"unique_id": 1}, ["must be a list of rows, got dict"], id="dict_not_list"),
        pytest.param(42, ["must be a list of rows, got int"], id="int_not_list"),
        pytest.param(None, ["upstream task pushed no XCom"], id="none_xcom"),
        pytest.param("LazySelectSequence([3 items])", ["render_template_as_native_obj"], id="unparseable_string"),
        pytest.param("__import__('os').system('true')", ["cannot read"], id="no_eval"),
        pytest.param(
            ["x", 1, "y", "z", "w", "v", "u"],
            ["row 0: 'x'", "row 2: 'y'", "and 1 more", "6 invalid"],
            id="first_offenders_and_count",
        ),
    ],
)
def test_unique_ids_rejected_with_offenders_named(value, named) -> None:
    with pytest.raises(AirflowFailException) as info:
        parse_unique_ids(value)
    for fragment in named:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            [(1, P1, "e1"), (1, P2, "e2"), (2, P1, "e3")], {1: {P1: ["e1"], P2: ["e2"]}, 2: {P1: ["e3"]}}, id="sql_rows"
        ),
        pytest.param(
            [
                {"customer_id": 1, "promotion_id": P1, "earn_id": "e1"},
                {"customerId": "1", "promotionId": P1, "earnId": "e2"},
            ],
            {1: {P1: ["e1", "e2"]}},
            id="dicts",
        ),
        pytest.param(f"[(1, '{P1}', 'e1'), (1, '{P1}', 'e1')]", {1: {P1: ["e1"]}}, id="jinja_repr_deduped"),
        pytest.param(f'[[1, "{P1}", "e1"]]', {1: {P1: ["e1"]}}, id="jinja_json"),
    ],
)
def test_earns_accepted(value, expected) -> None:
    earns, _, _ = parse_earns(value)
    assert {c: {p: list(e) for p, e in ps.items()} for c, ps in earns.items()} == expected


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param([(None, P1, "e1")], ["customer_id missing"], id="missing_customer"),
        pytest.param([(-3, P1, "e1")], ["customer_id must be positive"], id="negative_customer"),
        pytest.param([(1, "", "e1")], ["promotion_id empty"], id="empty_promotion"),
        pytest.param([(1, P1, None)], ["earn_id missing"], id="missing_earn"),
        pytest.param([(1, P1)], ["expected (customer_id, promotion_id, earn_id)"], id="two_columns"),
        pytest.param([{"customer_id": 1, "promotion_id": P1}], ["earn_id missing"], id="dict_missing_earn"),
        pytest.param("not a list", ["cannot read earns"], id="garbage_string"),
    ],
)
def test_earns_rejected_with_offenders_named(value, named) -> None:
    with pytest.raises(AirflowFailException) as info:
        parse_earns(value)
    for fragment in named:
        assert fragment in str(info.value)


def test_plan_one_customer_per_request_all_its_promotions() -> None:
    earns, _, _ = parse_earns([(1, P1, "a"), (2, P1, "b"), (1, P2, "c")])
    plan = list(plan_requests(earns))
    assert [(r.customer_id, r.details) for r in plan] == [(1, ((P1, ("a",)), (P2, ("c",)))), (2, ((P1, ("b",)),))]


@pytest.mark.parametrize(
    ("per_promotion", "sizes"),
    [
        pytest.param([2500], [1000, 1000, 500], id="2500_earns_3_requests"),
        pytest.param([600, 600], [1000, 200], id="cap_counts_across_promotions"),
        pytest.param([1000], [1000], id="exactly_1000"),
        pytest.param([1000, 1], [1000, 1], id="1001_splits"),
        pytest.param([3, 4, 5], [12], id="small_promotions_together"),
    ],
)
def test_plan_caps_1000_earn_ids_per_request(per_promotion, sizes) -> None:
    rows = [(9, f"promo{p}", f"earn{p}_{i}") for p, n in enumerate(per_promotion) for i in range(n)]
    plan = list(plan_requests(parse_earns(rows)[0]))
    assert [r.size for r in plan] == sizes
    assert {r.customer_id for r in plan} == {9}
    sent = [(p, e) for r in plan for p, earns in r.details for e in earns]
    assert sorted(sent) == sorted((p, e) for _, p, e in rows)
