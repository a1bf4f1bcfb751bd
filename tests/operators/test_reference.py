"""A business reference (an order id) rides beside each item: parsed, checked, written to the ledger, summarised.

It never names the item: the same unique_id with two references is one reversal.
"""

from __future__ import annotations

import sqlite3

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty.items import PointItem, reference_text
from airflow_provider_loyalty.operators._inputs import InputErrors, parse_earns, parse_unique_ids
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_operators import API, REVOKE, context, echo_cancel, echo_revoke


def test_points_rows_carry_a_reference_as_a_second_column_or_a_dict_key() -> None:
    references: dict[str, str] = {}
    items, rows, duplicates = parse_unique_ids(
        [
            (1, "ORD-1"),
            {"unique_id": 2, "reference": "ORD-2"},
            (3,),
            4,
            (1, "ORD-other"),
            {"uniqueId": 5, "Reference": 77},
        ],
        references=references,
    )
    assert items == [PointItem(1), PointItem(2), PointItem(3), PointItem(4), PointItem(5)]
    assert (rows, duplicates) == (6, 1)  # the reference never makes a second item of unique_id 1
    assert references == {"1": "ORD-1", "2": "ORD-2", "5": "77"}  # the first reference given is kept


def test_earn_rows_carry_a_reference_as_a_fourth_column_or_a_dict_key() -> None:
    references: dict[str, str] = {}
    items, _, _ = parse_earns(
        [(7, "P", "E-1", "ORD-9"), {"customer_id": 7, "promotion_id": "P", "earn_id": "E-2", "reference": None}],
        references=references,
    )
    assert [i.key for i in items] == ["7/P/E-1", "7/P/E-2"]
    assert references == {"7/P/E-1": "ORD-9"}


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([(1, "ORD\r")], "reference holds U+000D"),
        ([(1, "x" * 201)], "reference longer than 200 characters"),
        ([{"unique_id": 1, "reference": "\u202eORD"}], "reference holds U+202E"),
        ([(1, "ORD", "extra")], "a row of 3 columns; expected 1 (unique_id) or 2 (and a reference)"),
        ([(1, 2.5)], "reference a float, not a string id"),
    ],
    ids=["carriage_return", "too_long", "rtl_override", "three_columns", "float"],
)
def test_a_reference_is_checked_like_a_text_id(rows, reason) -> None:
    with pytest.raises(AirflowFailException, match="nothing was sent") as info:
        parse_unique_ids(rows)
    assert reason in str(info.value)
    with pytest.raises(AirflowFailException, match="reference"):
        parse_earns([(7, "P", "E", "\x00")])


def test_an_invalid_reference_skips_its_row_with_on_invalid_skip() -> None:
    errors = InputErrors("unique_ids", "CancelPointsOperator", skip=True)
    references: dict[str, str] = {}
    items, _, _ = parse_unique_ids([(1, "ok"), (2, "bad\t")], invalid=errors, references=references)
    assert items == [PointItem(1)] and references == {"1": "ok"}
    assert [row.reason for row in errors.rows] == ["reference holds U+0009, a control character"]


def test_reference_text_missing_is_no_reference() -> None:
    assert reference_text(None) == (None, "")
    assert reference_text("  ") == (None, "")
    assert reference_text(" ORD-1 ") == ("ORD-1", "")
    assert reference_text(100001) == ("100001", "")


def test_references_reach_the_ledger_and_the_summary(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(API, json=echo_cancel(fail={2}))
    op = CancelPointsOperator(
        task_id="c",
        unique_ids=[(1, "ORD-1"), (2, "ORD-2"), (3,)],
        ledger_conn_id="ledger",
        max_failed_ratio=1.0,
    )
    summary = op.execute(context())
    assert summary["failures"] == [{"unique_id": 2, "reference": "ORD-2", "code": "refused", "message": "nope"}]
    rows = sqlite3.connect(db).execute("SELECT item_key, status, reference FROM loyalty_reversal_ledger").fetchall()
    assert sorted(rows) == [
        ("1", "sending", "ORD-1"),
        ("1", "succeeded", "ORD-1"),
        ("2", "failed", "ORD-2"),
        ("2", "sending", "ORD-2"),
        ("3", "sending", None),
        ("3", "succeeded", None),
    ]
    sent = requests_mock.request_history[-1].json()["variables"]["recipients_data"]["recipients"]
    assert "ORD" not in str(sent)  # a reference is ours: it never goes to the vendor


def test_earn_references_reach_the_ledger(requests_mock, capillary_conn, monkeypatch, tmp_path) -> None:
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(REVOKE, json=echo_revoke({"E-2": 729}))
    op = RevokeEarnOperator(
        task_id="r",
        earns=[(7, "P", "E-1", "ORD-1"), (7, "P", "E-2", "ORD-2")],
        ledger_conn_id="ledger",
        max_failed_ratio=1.0,
    )
    summary = op.execute(context())
    assert [(f["earn_id"], f["reference"], f["code"]) for f in summary["failures"]] == [("E-2", "ORD-2", "729")]
    rows = (
        sqlite3.connect(db)
        .execute("SELECT item_key, reference FROM loyalty_reversal_ledger WHERE status <> 'sending'")
        .fetchall()
    )
    assert sorted(rows) == [("7/P/E-1", "ORD-1"), ("7/P/E-2", "ORD-2")]


def test_an_invalid_row_keeps_its_reference(requests_mock, xoxoday_conn, monkeypatch, tmp_path) -> None:
    """The order of a junk row is found on the page: the ledger's invalid row carries its reference."""
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    requests_mock.post(API, json=echo_cancel())
    summary = CancelPointsOperator(
        task_id="c",
        unique_ids=[(1, "ORD-1"), ("abc", "ORD-9"), {"unique_id": "x", "reference": "ORD-10"}, ("y", "bad\r")],
        ledger_conn_id="ledger",
        on_invalid="skip",
        max_failed_ratio=1.0,
    ).execute(context())
    assert sorted(f.get("reference", "-") for f in summary["failures"]) == ["-", "ORD-10", "ORD-9"]
    rows = (
        sqlite3.connect(db)
        .execute("SELECT item_key, reference FROM loyalty_reversal_ledger WHERE status = 'invalid' ORDER BY item_key")
        .fetchall()
    )
    assert rows == [("invalid:abc", "ORD-9"), ("invalid:x", "ORD-10"), ("invalid:y", None)]
