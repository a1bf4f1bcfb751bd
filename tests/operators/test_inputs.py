"""Parsing tables: every accepted input form, every bad value named before anything is sent."""

from __future__ import annotations

import array
from collections import namedtuple
from decimal import Decimal

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty.items import MAX_BIGINT, EarnItem
from airflow_provider_loyalty.operators._inputs import InputErrors, parse_earns, parse_unique_ids
from airflow_provider_loyalty.operators.capillary import plan_requests

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
        # review 6: a tuple of ids is ambiguous unless it has one value or holds rows
        pytest.param((4711,), [4711], id="tuple_of_one_id"),
        pytest.param(((1,), (2,)), [1, 2], id="tuple_of_rows"),
        pytest.param(((1,), 2), [1, 2], id="tuple_holding_a_row"),
        pytest.param(({"unique_id": 1}, {"unique_id": 2}), [1, 2], id="tuple_of_dicts"),
        pytest.param([4711, 500], [4711, 500], id="list_of_two_ids"),
        pytest.param("[4711, 500]", [4711, 500], id="rendered_list_of_two_ids"),
        pytest.param("((4711,))", [4711], id="parenthesised_tuple_of_one"),
        pytest.param([], [], id="empty"),
        pytest.param("[]", [], id="empty_rendered"),
        pytest.param([5, 5, (5,), "5", 6], [5, 6], id="duplicates_removed"),
        # a single id is that one id, however it is rendered (issue 11: never iterated as characters)
        pytest.param('"4711"', [4711], id="json_string_of_one_id"),
        pytest.param("'4711'", [4711], id="repr_string_of_one_id"),
        pytest.param("4711", [4711], id="digit_string"),
        pytest.param(" 4711\n", [4711], id="digit_string_with_blanks"),
        pytest.param(4711, [4711], id="int"),
        pytest.param("[4711]", [4711], id="rendered_list_of_one"),
        pytest.param(Decimal(4711), [4711], id="decimal"),
        pytest.param(b"4711", [4711], id="bytes_of_digits"),
        pytest.param(b"[(4711,)]", [4711], id="bytes_of_rows"),
        pytest.param({"unique_id": 4711}, [4711], id="single_dict"),
        pytest.param("{'unique_id': 4711}", [4711], id="rendered_single_dict"),
        pytest.param("(4711)", [4711], id="parenthesised_id"),
        pytest.param("(4711,)", [4711], id="rendered_tuple_of_one"),
        pytest.param("((1,), (2,))", [1, 2], id="rendered_tuple_of_rows"),
        pytest.param([MAX_BIGINT], [MAX_BIGINT], id="max_bigint"),
        pytest.param(["0004711"], [4711], id="zero_padded"),
        pytest.param("['007']", [7], id="zero_padded_string_in_repr"),
        pytest.param("[Decimal('007')]", [7], id="zero_padded_decimal_string"),
        pytest.param("[007.0, 0010e0]", [7, 10], id="zero_padded_float_literals_as_python_reads_them"),
        pytest.param(["\t4711\r\n", " 4712 "], [4711, 4712], id="ascii_blanks_trimmed"),
        pytest.param("[1e3]", [1000], id="integral_float_literal"),
        pytest.param('[{"unique_id": 1, "other": null}, {"uniqueId": 2}]', [1, 2], id="json_dicts"),
        pytest.param("[{'unique_id': 1, 'unique_id': 1}]", [1], id="repr_repeated_key_same_value"),
        pytest.param('[{"unique_id": 1, "unique_id": 1}]', [1], id="json_repeated_key_same_value"),
        pytest.param('{"unique_id": 5, "unique_id": 5}', [5], id="json_single_dict_repeated_key_same_value"),
        pytest.param('[{"unique_id": 3, "x": {"a": 1, "a": 2}}]', [3], id="repeated_key_in_an_unread_column"),
        pytest.param("[(Decimal('7'),), (Decimal(\"8\"),), (Decimal(9),)]", [7, 8, 9], id="decimal_quoting_styles"),
        pytest.param("[ ( 1 , ) ,\n ( 2 , ) , ]", [1, 2], id="blanks_and_trailing_comma"),
        pytest.param("{1, 2}", [1, 2], id="rendered_set"),
        pytest.param((i for i in [3, 4]), [3, 4], id="generator"),
        pytest.param("", [], id="blank_render"),
        # review 5: a float literal is read as the exact number it spells, never rounded to a neighbour
        pytest.param("[9007199254740991.0]", [2**53 - 1], id="json_float_below_2p53_exact"),
        pytest.param("[(9.007199254740991e15,)]", [2**53 - 1], id="repr_exponent_below_2p53_exact"),
        pytest.param('[{"unique_id": 4711.000}]', [4711], id="json_integral_float_in_dict"),
        pytest.param("[1.5e1, .5e2, 5.e1]", [15, 50], id="float_literal_spellings"),
        pytest.param([9007199254740991.0], [2**53 - 1], id="native_float_below_2p53"),
        pytest.param([{"unique_id": 1, "uniqueId": 1}], [1], id="dict_keys_same_value"),
        pytest.param([{"unique_id": Decimal(5), "uniqueId": Decimal(5)}], [5], id="dict_keys_same_decimal"),
    ],
)
def test_unique_ids_accepted(value, ids) -> None:
    parsed, rows, duplicates = parse_unique_ids(value)
    assert [item.unique_id for item in parsed] == ids
    assert rows - duplicates == len(ids)


BIG = "1" * 5000


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param(["12a"], ["row 1: '12a' (not an integer)", "rows numbered from 1"], id="not_integer"),
        pytest.param([1, -5], ["row 2: -5 (must be positive)"], id="negative"),
        pytest.param([0], ["row 1: 0 (must be positive)"], id="zero"),
        pytest.param([True], ["boolean"], id="boolean"),
        pytest.param([1.5], ["row 1: 1.5 (not an integer)"], id="fraction"),
        pytest.param([None], ["row 1: None (missing)"], id="none"),
        pytest.param([(1, 2, 3)], ["3 columns"], id="three_columns"),
        pytest.param([{"id": 1}], ["without unique_id"], id="dict_without_key"),
        pytest.param(
            {"id": 1}, ["must be a list of rows, got a dict without unique_id: {'id': 1}"], id="single_dict_without_key"
        ),
        pytest.param([{"unique_id": 1, "uniqueId": 2}], ["'uniqueid' twice"], id="dict_keys_in_conflict"),
        pytest.param(None, ["upstream task pushed no XCom"], id="none_xcom"),
        pytest.param("None", ["upstream task pushed no XCom"], id="rendered_none"),
        pytest.param(
            "LazySelectSequence([3 items])",
            ["render_template_as_native_obj", "LazySelectSequence"],
            id="unparseable_string",
        ),
        pytest.param("__import__('os').system('true')", ["cannot read", "nothing is evaluated"], id="no_eval"),
        pytest.param(
            ["x", 1, "y", "z", "w", "v", "u"],
            ["row 1: 'x'", "row 3: 'y'", "and 1 more", "6 invalid"],
            id="first_offenders_and_count",
        ),
        # issue 11: scalars and strings are never iterated
        pytest.param("b'\\x01\\x02'", ["a bytes literal", "b'\\\\x01\\\\x02'"], id="bytes_literal_string"),
        pytest.param("'abc'", ["the value: 'abc' (not an integer)"], id="single_non_digit_string"),
        pytest.param('"[4711]"', ["the value: '[4711]' (not an integer)"], id="json_string_of_a_list_is_not_reparsed"),
        pytest.param(-4711, ["the value: -4711 (must be positive)"], id="single_negative_int"),
        pytest.param(object(), ["must be a list of rows, got object"], id="object"),
        pytest.param("1, 2", ["bare comma list"], id="bare_comma_list"),
        # issue 11: crashes that must be AirflowFailException
        pytest.param("+-5", ["'+-5'"], id="plus_minus"),
        pytest.param("--1", ["'--1'"], id="double_minus"),
        pytest.param(
            ["+-5", "--1"],
            ["row 1: '+-5' (not an integer)", "row 2: '--1' (not an integer)"],
            id="sign_strings_in_rows",
        ),
        pytest.param(Decimal("NaN"), ["Decimal('NaN') (not a finite number)"], id="decimal_nan"),
        pytest.param(Decimal("sNaN"), ["Decimal('sNaN') (not a finite number)"], id="decimal_snan"),
        pytest.param(Decimal("Infinity"), ["Decimal('Infinity') (not a finite number)"], id="decimal_infinity"),
        pytest.param(Decimal("1e-1000000"), ["not an integer"], id="decimal_tiny"),
        pytest.param("[Decimal(1e400)]", ["Decimal(1e400)", "quoted number"], id="decimal_of_float_literal"),
        pytest.param(
            "[Decimal('1e1000000')]",
            ["Decimal('1E+1000000')", "above 9223372036854775807"],
            id="decimal_million_digits",
        ),
        pytest.param("[Decimal('abc')]", ["Decimal of 'abc'"], id="decimal_not_a_number"),
        pytest.param(b"\xff", ["not UTF-8", "b'\\xff'"], id="bytes_not_utf8"),
        pytest.param("[" * 1000 + "1" + "]" * 1000, ["nested more than"], id="nested_1000_rendered"),
        pytest.param(BIG, ["a number of 5000 characters"], id="digits_5000_rendered"),
        pytest.param([BIG], ["not an id (5000 characters)"], id="digits_5000_string_row"),
        pytest.param(
            [int(BIG[:4000])], ["<int of about 4000 digits>", "above 9223372036854775807"], id="int_4000_digits"
        ),
        pytest.param(f"[{BIG}]", ["a number of 5000 characters"], id="digits_5000_json"),
        pytest.param(1e300, ["the value: 1e+300", "above 2**53"], id="float_1e300"),
        pytest.param(float("nan"), ["the value: nan (not a finite number)"], id="float_nan"),
        pytest.param([float("inf")], ["row 1: inf (not a finite number)"], id="float_inf"),
        pytest.param("[NaN]", ["row 1: nan (not a finite number)"], id="json_nan"),
        pytest.param(
            "[1e400]", ["row 1: 1e400 (a float, or a float's text, at or above 2**53"], id="json_float_overflow"
        ),
        # issue 11: values the ledger cannot store are refused before any call
        pytest.param([MAX_BIGINT + 1], ["row 1: 9223372036854775808 (above 9223372036854775807"], id="above_bigint"),
        pytest.param(["9223372036854775808"], ["above 9223372036854775807"], id="above_bigint_string"),
        pytest.param([Decimal("1e19")], ["above 9223372036854775807"], id="above_bigint_decimal"),
        pytest.param(["0x10"], ["not an integer"], id="hex_string"),
        # review 5: never a neighbouring id of what was written
        pytest.param(
            "[4710.9999999999999999]", ["row 1: 4710.9999999999999999 (not an integer)"], id="json_float_below_4711"
        ),
        pytest.param(
            "[4711.00000000000001]", ["row 1: 4711.00000000000001 (not an integer)"], id="json_float_above_4711"
        ),
        pytest.param(
            "[(4710.9999999999999999,)]", ["row 1: 4710.9999999999999999 (not an integer)"], id="repr_float_below_4711"
        ),
        pytest.param(
            '[{"unique_id": 4710.9999999999999999}]',
            ["row 1: 4710.9999999999999999 (not an integer)"],
            id="json_dict_float",
        ),
        pytest.param(
            "4710.9999999999999999", ["the value: 4710.9999999999999999 (not an integer)"], id="single_float_text"
        ),
        pytest.param("[9223372036854775807.5]", ["2**53"], id="float_literal_max_bigint_and_a_half"),
        pytest.param("[9223372036854775808.0]", ["at or above 2**53"], id="float_literal_above_bigint"),
        # issue 22: a float's text at or above 2**53 (a float column rendered by Jinja) is refused like the float
        pytest.param(
            "[1.2345678901234568e+16]", ["row 1: 1.2345678901234568e+16 (", "2**53"], id="json_float_text_1e16"
        ),
        pytest.param("[(1.2345678901234568e+16,)]", ["row 1: 1.2345678901234568e+16 ("], id="repr_float_text_1e16"),
        pytest.param("[9007199254740993.0]", ["row 1: 9007199254740993.0 (", "2**53"], id="json_float_2p53_plus_1"),
        pytest.param("[9.007199254740993e15]", ["2**53"], id="json_exponent_2p53_plus_1"),
        pytest.param("[(9007199254740993.0,)]", ["2**53"], id="repr_float_2p53_plus_1"),
        pytest.param("9007199254740993.0", ["the value: 9007199254740993.0 (", "2**53"], id="single_float_text_2p53"),
        pytest.param("[9223372036854775807.0]", ["2**53"], id="float_literal_max_bigint"),
        pytest.param([9007199254740992.0], ["at or above 2**53"], id="native_float_exactly_2p53"),
        pytest.param([9007199254740994.0], ["at or above 2**53"], id="native_float_above_2p53"),
        pytest.param([-9007199254740992.0], ["at or above 2**53"], id="native_negative_float_2p53"),
        pytest.param("[1e99999999999999999999]", ["at or above 2**53"], id="float_literal_huge_exponent"),
        pytest.param("[1.5e-99999999999999999999]", ["not an integer"], id="float_literal_tiny_exponent"),
        pytest.param("[0e99999999999999999999]", ["must be positive"], id="float_literal_zero_huge_exponent"),
        pytest.param("[Decimal('1e99999999999999999999')]", ["above 9223372036854775807"], id="decimal_huge_exponent"),
        pytest.param(
            '[{"unique_id": 4.7e' + "9" * 5000 + "}]", ["at or above 2**53"], id="json_exponent_of_5000_digits"
        ),
        # review 5: keys naming one field conflict unless their raw values are the same, in either order
        pytest.param([{"uniqueId": True, "unique_id": 1}], ["'uniqueid' twice"], id="dict_keys_bool_then_int"),
        pytest.param([{"unique_id": 1, "uniqueId": True}], ["'uniqueid' twice"], id="dict_keys_int_then_bool"),
        pytest.param([{"unique_id": 1, "UNIQUE_ID": "1"}], ["'uniqueid' twice"], id="dict_keys_int_and_digit_string"),
        pytest.param([{"unique_id": 1, "uniqueId": 1.0}], ["'uniqueid' twice"], id="dict_keys_int_and_float"),
        pytest.param(
            [{"unique_id": Decimal("1"), "uniqueId": Decimal("1.0")}],
            ["'uniqueid' twice"],
            id="dict_keys_decimal_digits",
        ),
        pytest.param('[{"uniqueId": true, "unique_id": 1}]', ["'uniqueid' twice"], id="json_dict_keys_bool_and_int"),
        pytest.param("[{'unique_id': 1, 'uniqueId': True}]", ["'uniqueid' twice"], id="repr_dict_keys_int_and_bool"),
        pytest.param(["١٢"], ["not an integer"], id="non_ascii_digits"),
        # review 6: fetch_one's row of (unique_id, points) is not two ids
        pytest.param(
            (4711, 500),
            [
                "a tuple of 2 values, none of them a row: (4711, 500)",
                "ambiguous",
                "one row of 2 columns",
                "Pass a list",
            ],
            id="fetch_one_row_tuple",
        ),
        pytest.param("(4711, 500)", ["tuple of 2 values", "'(4711, 500)'", "ambiguous"], id="rendered_row_tuple"),
        pytest.param(b"(4711, 500)", ["tuple of 2 values", "ambiguous"], id="bytes_row_tuple"),
        pytest.param("((4711, 500))", ["tuple of 2 values", "ambiguous"], id="parenthesised_row_tuple"),
        pytest.param(("4711", "500", "x"), ["tuple of 3 values", "ambiguous"], id="row_tuple_of_strings"),
        pytest.param(
            namedtuple("Row", "unique_id points")(4711, 500), ["tuple of 2 values", "ambiguous"], id="named_row_tuple"
        ),
        pytest.param((1, 2), ["tuple of 2 values", "ambiguous"], id="tuple_of_two_ids"),
        # review 6: a buffer (psycopg2's BYTEA memoryview, an array) is no row: never iterated byte by byte
        pytest.param([memoryview(b"\x07")], ["row 1: <memory", "(a memoryview, not an integer)"], id="memoryview_row"),
        pytest.param([(memoryview(b"\x07"),)], ["(a memoryview, not an integer)"], id="memoryview_in_row"),
        pytest.param([array.array("b", [7])], ["row 1: array('b', [7])", "not an integer"], id="array_row"),
        pytest.param([array.array("q", [4711])], ["not an integer"], id="array_of_one_id_row"),
        pytest.param(array.array("q", [4711, 500]), ["must be a list of rows, got array"], id="array_top_level"),
        # review 6: Python and JSON refuse 007; the reader does too (0 is valid, and not positive)
        pytest.param("[007]", ["at character 2, '007]'", "leading zero"], id="leading_zero_int"),
        pytest.param("007", ["at character 1", "leading zero"], id="leading_zero_single"),
        pytest.param("[(-007,)]", ["at character 3", "leading zero"], id="leading_zero_negative_in_row"),
        pytest.param("[{'unique_id': 00012}]", ["at character 16", "leading zero"], id="leading_zero_in_dict"),
        pytest.param("[1, 2, 0009]", ["at character 8", "leading zero"], id="leading_zero_after_valid_rows"),
        pytest.param("[Decimal(007)]", ["at character 2", "leading zero"], id="leading_zero_decimal_int"),
        pytest.param("[0]", ["row 1: 0 (must be positive)"], id="zero_literal"),
        pytest.param("[00]", ["row 1: 0 (must be positive)"], id="zeros_literal"),
        # review 6: only ASCII blanks are trimmed around a digit string; other whitespace is refused
        pytest.param(["\x1c4711\x1f"], ["row 1: '\\x1c4711\\x1f' (not an integer)"], id="file_separators"),
        pytest.param(["4711\x85"], ["not an integer"], id="next_line"),
        pytest.param(["\xa04711"], ["not an integer"], id="no_break_space"),
        pytest.param(["4711\u3000"], ["not an integer"], id="ideographic_space"),
        pytest.param(["4711\f"], ["not an integer"], id="form_feed"),
        pytest.param("\x1c4711\x1f", ["cannot read unique_ids", "at character 1"], id="rendered_file_separators"),
        pytest.param("\xa04711", ["cannot read unique_ids", "at character 1"], id="rendered_no_break_space"),
        # review 6: a key given twice with different values is neither value
        pytest.param(
            '[{"unique_id": 1, "unique_id": 2}]',
            ["row 1:", "the key 'unique_id' is given twice, with different values (1 and 2)"],
            id="json_repeated_key",
        ),
        pytest.param(
            "[{'unique_id': 1, 'unique_id': 2}]",
            ["row 1:", "the key 'unique_id' is given twice, with different values (1 and 2)"],
            id="repr_repeated_key",
        ),
        pytest.param(
            "[{'unique_id': 1, 'x': None, 'unique_id': '1'}]",
            ["the key 'unique_id' is given twice, with different values (1 and '1')"],
            id="repr_repeated_key_int_and_string",
        ),
        pytest.param(
            '[{"unique_id": 1.0, "unique_id": 1}]', ["the key 'unique_id' is given twice"], id="json_repeated_key_types"
        ),
        pytest.param(
            '{"unique_id": 1, "unique_id": 2}',
            ["the value:", "the key 'unique_id' is given twice"],
            id="json_single_dict",
        ),
    ],
)
def test_unique_ids_rejected_with_offenders_named(value, named) -> None:
    with pytest.raises(AirflowFailException) as info:
        parse_unique_ids(value)
    for fragment in named:
        assert fragment in str(info.value)
    assert len(str(info.value)) < 1500  # names values, never dumps them


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            [(1, P1, "e1"), (1, P2, "e2"), (2, P1, "e3")], [(1, P1, "e1"), (1, P2, "e2"), (2, P1, "e3")], id="sql_rows"
        ),
        pytest.param(
            [
                {"customer_id": 1, "promotion_id": P1, "earn_id": "e1"},
                {"customerId": "1", "promotionId": P1, "earnId": "e2"},
            ],
            [(1, P1, "e1"), (1, P1, "e2")],
            id="dicts",
        ),
        pytest.param(f"[(1, '{P1}', 'e1'), (1, '{P1}', 'e1')]", [(1, P1, "e1")], id="jinja_repr_deduped"),
        pytest.param(f'[[1, "{P1}", "e1"]]', [(1, P1, "e1")], id="jinja_json"),
        pytest.param(
            {"customer_id": 1, "promotion_id": P1, "earn_id": "e1"}, [(1, P1, "e1")], id="single_dict_is_one_row"
        ),
        pytest.param(f"[(Decimal('5'), '{P1}', 7)]", [(5, P1, "7")], id="numeric_customer_and_int_earn"),
        pytest.param("[(1, 'p\\'q', \"e\\\\1\")]", [(1, "p'q", "e\\1")], id="escaped_strings"),
        pytest.param([(1, "p", "e" * 200)], [(1, "p", "e" * 200)], id="earn_id_200_chars"),
        pytest.param([(1, "p", "e/1")], [(1, "p", "e/1")], id="slash_in_earn_id_is_fine"),
        pytest.param([(1, "pé", "e✓")], [(1, "pé", "e✓")], id="non_ascii_text"),
        pytest.param([EarnItem(1, "p", "e")], [(1, "p", "e")], id="earn_items"),
        pytest.param([(1, " p ", " e ")], [(1, "p", "e")], id="surrounding_spaces_trimmed"),
        pytest.param([(1, "p\xa0q", "e\u3000f")], [(1, "p\xa0q", "e\u3000f")], id="other_spaces_inside_are_kept"),
        pytest.param([(" \t1\r\n", "p", "e")], [(1, "p", "e")], id="customer_digits_with_ascii_blanks"),
        pytest.param("[(1, 'P', 0)]", [(1, "P", "0")], id="zero_earn_id_literal"),
        pytest.param(
            '[{"customer_id": 1, "promotion_id": "P", "earn_id": "e", "earn_id": "e"}]',
            [(1, "P", "e")],
            id="json_repeated_key_same_value",
        ),
        pytest.param('[[9007199254740991.0, "P", "E"]]', [(2**53 - 1, "P", "E")], id="json_float_customer_exact"),
        pytest.param("[(9.007199254740991e15, 'P', 'E')]", [(2**53 - 1, "P", "E")], id="repr_float_customer_exact"),
    ],
)
def test_earns_accepted(value, expected) -> None:
    earns, rows, duplicates = parse_earns(value)
    assert earns == [EarnItem(*e) for e in expected]
    assert rows - duplicates == len(expected)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param([(None, P1, "e1")], ["customer_id missing"], id="missing_customer"),
        pytest.param([(-3, P1, "e1")], ["customer_id must be positive"], id="negative_customer"),
        pytest.param([(1, "", "e1")], ["promotion_id empty"], id="empty_promotion"),
        pytest.param([(1, P1, None)], ["earn_id missing"], id="missing_earn"),
        pytest.param([(1, P1)], ["expected (customer_id, promotion_id, earn_id[, reference])"], id="two_columns"),
        pytest.param([{"customer_id": 1, "promotion_id": P1}], ["earn_id missing"], id="dict_missing_earn"),
        pytest.param("not a list", ["cannot read earns", "'not a list'"], id="garbage_string"),
        pytest.param('"abc"', ["earns must be a list of rows, got str: 'abc'"], id="rendered_single_string"),
        pytest.param(4711, ["earns must be a list of rows, got int: 4711"], id="single_int"),
        pytest.param((1, P1, "e1"), ["got 3 single value(s)", "a list of one row"], id="single_row_tuple"),
        pytest.param(f"(1, '{P1}', 'e1')", ["got 3 single value(s)", "a list of one row"], id="rendered_single_row"),
        pytest.param({"id": 1}, ["a dict without customer_id"], id="single_dict_without_keys"),
        pytest.param(b"\xff", ["not UTF-8"], id="bytes_not_utf8"),
        pytest.param(
            [(MAX_BIGINT + 1, "p", "e")], ["customer_id above 9223372036854775807"], id="customer_above_bigint"
        ),
        pytest.param([(1, "p" * 201, "e")], ["promotion_id longer than 200 characters (201)"], id="promotion_too_long"),
        pytest.param([(1, "p", "e" * 201)], ["earn_id longer than 200 characters"], id="earn_too_long"),
        pytest.param([(1, "p", 10**4500)], ["earn_id longer than 200 characters"], id="earn_int_4500_digits"),
        pytest.param(
            [(1, "p", "e\x00")],
            ["row 1: (1, 'p', 'e\\x00') (earn_id holds U+0000, a control character)"],
            id="nul_in_earn",
        ),
        pytest.param([(1, "p\x1b", "e")], ["promotion_id holds U+001B, a control character"], id="escape_in_promotion"),
        pytest.param([(1, "p", "e\ud800")], ["earn_id holds U+D800, a lone surrogate"], id="lone_surrogate"),
        pytest.param("[(1, 'p', 'e\\x85')]", ["earn_id holds U+0085, a control character"], id="c1_control_rendered"),
        # review 6: invisible, direction-changing, unassigned characters are never part of an id
        pytest.param(
            [(1, "p", "e1\u202e")],
            ["earn_id holds U+202E RIGHT-TO-LEFT OVERRIDE, an invisible format character"],
            id="right_to_left_override",
        ),
        pytest.param([(1, "p", "\u200be1")], ["earn_id holds U+200B ZERO WIDTH SPACE"], id="zero_width_space"),
        pytest.param([(1, "\ufeffP", "e")], ["promotion_id holds U+FEFF"], id="byte_order_mark"),
        pytest.param("[(1, '\\ufeffP', 'e')]", ["promotion_id holds U+FEFF"], id="byte_order_mark_rendered"),
        pytest.param([(1, "p", "e\u2028")], ["earn_id holds U+2028 LINE SEPARATOR, a line separator"], id="line_sep"),
        pytest.param([(1, "p", "e\u2029")], ["earn_id holds U+2029", "a paragraph separator"], id="paragraph_sep"),
        pytest.param(
            [(1, "p", "e\uffff")], ["earn_id holds U+FFFF, an unassigned code point or a noncharacter"], id="ffff"
        ),
        pytest.param([(1, "p", "e\ufdd0")], ["earn_id holds U+FDD0"], id="noncharacter_fdd0"),
        pytest.param([(1, "p", "e\u0378")], ["earn_id holds U+0378, an unassigned"], id="unassigned"),
        pytest.param([(1, "p\ue000", "e")], ["promotion_id holds U+E000, a private-use character"], id="private_use"),
        pytest.param([(1, "p", "e\U000e0001")], ["earn_id holds U+E0001 LANGUAGE TAG"], id="tag_character"),
        pytest.param(
            [(1, "p", "e1\xa0")],
            ["earn_id ends with U+00A0 NO-BREAK SPACE, whitespace other than a space"],
            id="trailing_no_break_space",
        ),
        pytest.param([(1, "\u3000p", "e")], ["promotion_id starts with U+3000"], id="leading_ideographic_space"),
        pytest.param([(1, "p", " \xa0 ")], ["earn_id starts with U+00A0"], id="only_a_no_break_space"),
        pytest.param([(1, "p", "\x1ce1")], ["earn_id holds U+001C, a control character"], id="file_separator"),
        pytest.param([("\x1c1", "p", "e")], ["customer_id not an integer"], id="customer_file_separator"),
        pytest.param([("1\xa0", "p", "e")], ["customer_id not an integer"], id="customer_no_break_space"),
        # review 6: a buffer row is no row; 007 is no number; a key given twice is neither value
        pytest.param([memoryview(b"\x01AB")], ["got 1 single value(s)", "<memory"], id="memoryview_row"),
        pytest.param([array.array("q", [1, 2, 3])], ["got 1 single value(s)", "array('q', [1, 2, 3])"], id="array_row"),
        pytest.param(
            [(1, "p", "e"), memoryview(b"\x01AB")], ["row 2: <memory", "expected (customer_id"], id="memoryview_2nd_row"
        ),
        pytest.param("[(1, 'P', 007)]", ["at character 11, '007)]'", "leading zero"], id="leading_zero_earn_id"),
        pytest.param("[(0001, 'P', 'E')]", ["at character 3", "leading zero"], id="leading_zero_customer"),
        pytest.param(
            '[{"customer_id": 1, "promotion_id": "P", "earn_id": "e", "earn_id": "f"}]',
            ["row 1:", "the key 'earn_id' is given twice, with different values ('e' and 'f')"],
            id="json_repeated_key",
        ),
        pytest.param(
            "[{'customer_id': 1, 'promotion_id': 'P', 'earn_id': 'e', 'earn_id': 'f'}]",
            ["row 1:", "the key 'earn_id' is given twice"],
            id="repr_repeated_key",
        ),
        pytest.param(
            '{"customer_id": 1, "customer_id": 2, "promotion_id": "P", "earn_id": "e"}',
            ["the value:", "the key 'customer_id' is given twice"],
            id="json_single_dict_repeated_key",
        ),
        pytest.param([(1, "a/b", "e")], ["promotion_id contains '/'"], id="slash_in_promotion"),
        pytest.param(
            [(1, "p", "e"), (2, True, "e"), (3, "p", 1.5)], ["row 2:", "row 3:", "2 invalid"], id="rows_numbered_from_1"
        ),
        pytest.param(
            [{"customer_id": 1, "customerId": 2, "promotion_id": "p", "earn_id": "e"}],
            ["'customerid' twice"],
            id="dict_keys_in_conflict",
        ),
        pytest.param("[(1, 'p', 'e\\q')]", ["unknown escape"], id="unknown_escape"),
        pytest.param(
            "[[4710.99999999999999, 'P', 'E']]", ["customer_id not an integer"], id="repr_float_customer_below_4711"
        ),
        pytest.param(
            '[{"customer_id": 4711.00000000000001, "promotion_id": "P", "earn_id": "E"}]',
            ["customer_id not an integer"],
            id="json_float_customer_above_4711",
        ),
        pytest.param([(9007199254740992.0, "P", "E")], ["customer_id a float", "2**53"], id="native_float_2p53"),
        pytest.param(
            '[[9007199254740993.0, "P", "E"]]', ["customer_id a float", "2**53"], id="json_float_customer_2p53"
        ),
        pytest.param("[(9.007199254740993e15, 'P', 'E')]", ["customer_id a float"], id="repr_float_customer_2p53"),
        pytest.param(
            [{"customerId": True, "customer_id": 1, "promotion_id": "p", "earn_id": "e"}],
            ["'customerid' twice"],
            id="dict_keys_bool_then_int",
        ),
        pytest.param(
            [{"customer_id": 1, "promotion_id": "p", "earn_id": 7, "earnId": "7"}],
            ["'earnid' twice"],
            id="dict_keys_int_and_string_earn",
        ),
        pytest.param("[(1, b'p', 'e')]", ["a bytes literal"], id="bytes_literal_field"),
    ],
)
def test_earns_rejected_with_offenders_named(value, named) -> None:
    with pytest.raises(AirflowFailException) as info:
        parse_earns(value)
    for fragment in named:
        assert fragment in str(info.value)
    assert len(str(info.value)) < 1500


@pytest.mark.parametrize(
    ("parse", "row"),
    [
        pytest.param(parse_unique_ids, "(12345,)", id="ids"),
        pytest.param(parse_earns, "(12345, '69117663b1cfc114606fd7fb', 'earn12345')", id="earns"),
    ],
)
def test_a_million_rendered_rows_read_in_linear_time(parse, row) -> None:
    """Issue 11: ast.parse took 14 s and 2 GB for 1M tuples. Reading is one pass; check the slope, not a wall time."""
    import time

    def seconds(n: int) -> float:
        text = "[" + ", ".join([row] * n) + "]"
        started = time.perf_counter()
        items, rows, _ = parse(text)
        assert rows == n and len(items) == 1
        return time.perf_counter() - started

    small, large = seconds(20_000), seconds(200_000)
    assert large < 30 * small + 0.5  # 10x the input, at most ~10x the time (generous for a shared machine)


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


def test_an_ambiguous_tuple_fails_even_when_invalid_rows_are_skipped() -> None:
    """on_invalid="skip" skips bad rows; a tuple that may be one row of two columns has no good row to keep."""
    for value in ((4711, 500), "(4711, 500)"):
        skip = InputErrors("unique_ids", "CancelPointsOperator", skip=True)
        with pytest.raises(AirflowFailException, match="ambiguous"):
            parse_unique_ids(value, invalid=skip)


def test_a_repeated_key_is_skipped_as_an_invalid_row() -> None:
    skip = InputErrors("unique_ids", "CancelPointsOperator", skip=True)
    items, rows, _ = parse_unique_ids('[{"unique_id": 1, "unique_id": 2}, {"unique_id": 3}]', invalid=skip)
    assert [item.unique_id for item in items] == [3] and rows == 2
    assert [row[:3] for row in skip.rows] == [
        (1, "{'unique_id': 2}", "the key 'unique_id' is given twice, with different values (1 and 2)")
    ]
