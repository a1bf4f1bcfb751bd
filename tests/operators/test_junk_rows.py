"""Junk input rows (``on_invalid="skip"``) fail the run that first meets them, not every run after.

An invalid row is keyed by its value in the ledger, so the next run knows the same junk: it is
reported apart (like an earlier run's refusals), not failed again, and not recorded twice. The
message names invalid input apart from what the vendor refused. The real operator against the
sandbox over loopback, a real SQLite ledger.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_operators import context

JUNK = ["abc", -5, "abc", "12x"]


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[tuple[sb.Sandbox, sb.Dataset, str]]:
    dataset = sb.generate_dataset(seed=11, points=60, earns=30, big_customer_earns=0, customers=3)
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    with sb.Sandbox(sb.SandboxConfig(), dataset) as sandbox:
        for name, value in sb.connection_env(sandbox.url).items():
            monkeypatch.setenv(name, value)
        yield sandbox, dataset, str(db)


def cancellable(dataset: sb.Dataset) -> list[int]:
    """Ids the vendor cancels at the first attempt (the dataset also holds ids it does not know)."""
    return [
        uid for (uid, _), fate in zip(dataset.point_reversals, dataset.point_outcomes, strict=True) if fate == "cancel"
    ]


def revocable(dataset: sb.Dataset) -> list[tuple[int, str, str]]:
    """Earns the vendor revokes at the first attempt."""
    rows = zip(dataset.earn_reversals, dataset.earn_outcomes, strict=True)
    return [(c, p, e) for (c, p, e, _), code in rows if code == 0]


def cancel(ids: list, run_id: str) -> dict:
    return CancelPointsOperator(
        task_id="cancel", unique_ids=ids, ledger_conn_id="ledger", on_invalid="skip", max_failed_ratio=0.1
    ).execute(context(run_id))


def invalid_rows(db: str) -> list[tuple]:
    return (
        sqlite3.connect(db)
        .execute(
            "SELECT item_key, run_id, message FROM loyalty_reversal_ledger WHERE status = 'invalid' ORDER BY item_key"
        )
        .fetchall()
    )


def test_the_same_junk_on_the_next_day_does_not_fail_it_again(vendor) -> None:
    sandbox, dataset, db = vendor
    ids = cancellable(dataset)
    assert len(ids) >= 30
    day1, day2 = ids[:10], ids[10:20]
    # day 1: 3 distinct junk values in 4 rows of 14: above max_failed_ratio, and it is the input's fault
    with pytest.raises(AirflowFailException) as first:
        cancel([*day1[:5], *JUNK, *day1[5:]], "day1")
    message = str(first.value)
    assert "4 of 14 unique_ids failed this run" in message
    assert "4 are invalid input" in message and "retrying cannot help" in message
    assert "vendor refused" not in message  # not blamed on the vendor
    assert invalid_rows(db) == [
        ("invalid:-5", "day1", "row 7: -5 (must be positive)"),
        ("invalid:12x", "day1", "row 9: '12x' (not an integer)"),
        ("invalid:abc", "day1", "row 6: 'abc' (not an integer)"),
    ]
    # day 2: new valid ids, the same junk: green; the junk reported apart, not recorded again
    summary = cancel([*JUNK, *day2], "day2")
    assert (summary["succeeded"], summary["failed"], summary["failed_earlier"], summary["invalid_earlier"]) == (
        10,
        4,
        4,
        4,
    )
    assert summary["failure_codes"] == {}
    assert [row[:2] for row in invalid_rows(db)] == [
        ("invalid:-5", "day1"),
        ("invalid:12x", "day1"),
        ("invalid:abc", "day1"),
    ]
    assert sandbox.stats()["xoxoday"]["cancelled"] == 20  # every valid id once, no junk sent
    # day 3: one new junk value among the known ones fails the run for that value only
    with pytest.raises(AirflowFailException) as third:
        cancel([*JUNK, "zz9", *ids[20:25]], "day3")
    assert "1 of 6 unique_ids failed this run" in str(third.value) and "'zz9'" in str(third.value)
    assert "1 is invalid input" in str(third.value)
    assert [row[:2] for row in invalid_rows(db)][-1] == ("invalid:zz9", "day3")
    assert len(invalid_rows(db)) == 4


def test_a_retry_of_the_same_run_still_counts_its_junk(vendor) -> None:
    """An earlier *try* of this run recorded the junk: it still counts in this run's decision (not recorded twice)."""
    _, dataset, db = vendor
    ids = cancellable(dataset)[:5]
    for try_number in (1, 2):
        with pytest.raises(AirflowFailException, match="1 of 6 unique_ids failed this run"):
            CancelPointsOperator(
                task_id="cancel", unique_ids=[*ids, "abc"], ledger_conn_id="ledger", on_invalid="skip"
            ).execute(context("day1", try_number))
    assert [row[:2] for row in invalid_rows(db)] == [("invalid:abc", "day1")]


def test_junk_earns_are_known_the_next_day(vendor) -> None:
    sandbox, dataset, db = vendor
    earns = revocable(dataset)[:8]
    assert len(earns) == 8
    junk = [(0, earns[0][1], "E-junk"), (earns[0][0], "P/1", "E-2")]
    with pytest.raises(AirflowFailException, match="2 are invalid input"):
        RevokeEarnOperator(
            task_id="revoke", earns=[*earns[:4], *junk], ledger_conn_id="ledger", on_invalid="skip"
        ).execute(context("day1"))
    summary = RevokeEarnOperator(
        task_id="revoke", earns=[*junk, *earns[4:]], ledger_conn_id="ledger", on_invalid="skip"
    ).execute(context("day2"))
    assert (summary["succeeded"], summary["invalid_earlier"], summary["failure_codes"]) == (4, 2, {})
    keys = [row[0] for row in invalid_rows(db)]
    assert keys == sorted([f"invalid:0/{earns[0][1]}/E-junk", f"invalid:{earns[0][0]}/P/1/E-2"])
    assert sandbox.stats()["capillary"]["revoked"] == 8
