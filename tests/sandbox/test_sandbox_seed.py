"""Dataset generation (determinism, mix) and the DuckDB warehouse it writes."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from pathlib import Path

import duckdb
import pytest

from airflow_provider_loyalty.sandbox import Dataset, generate_dataset, write_duckdb
from airflow_provider_loyalty.sandbox.state import SandboxState

HEX24 = re.compile(r"^[0-9a-f]{24}$")


def test_deterministic() -> None:
    """The same seed and sizes give the same data; another seed gives other data."""
    a = generate_dataset(seed=5, points=200, earns=400, big_customer_earns=100, reversal_date="2025-01-01")
    b = generate_dataset(seed=5, points=200, earns=400, big_customer_earns=100, reversal_date="2025-01-01")
    c = generate_dataset(seed=6, points=200, earns=400, big_customer_earns=100, reversal_date="2025-01-01")
    assert a == b
    assert a.point_reversals != c.point_reversals
    assert a.earn_reversals != c.earn_reversals


def test_default_mix() -> None:
    """Defaults: 2000 point rows (2% unknown); 3000 earn rows (5% 729, 1% 730, 2% 731, a big customer)."""
    dataset = generate_dataset()
    assert dataset.reversal_date == date.today()
    expected = dataset.expected()
    assert expected["points"] == {"rows": 2000, "cancelled": 1960, "not_found": 40}
    assert expected["earns"] | {"customers": 0, "min_requests": 0} == {
        "rows": 3000,
        "revoked": 2760,
        "729": 150,
        "730": 30,
        "731": 60,
        "customers": 0,
        "min_requests": 0,
    }
    assert expected["big_customer"]["earns"] == 1500
    assert expected["earns"]["min_requests"] > expected["earns"]["customers"]


def test_shapes_and_consistency(dataset: Dataset) -> None:
    """Ids have the vendors' shapes; outcomes agree with what the vendor side knows."""
    issued = set(dataset.points_issued)
    assert len(issued) == len(dataset.points_issued)
    for (uid, reason), outcome in zip(dataset.point_reversals, dataset.point_outcomes, strict=True):
        assert isinstance(uid, int) and 100_000_000 <= uid < 10_000_000_000
        assert reason
        assert (uid in issued) == (outcome == "cancel")
    assert len({row[0] for row in dataset.point_reversals}) == len(dataset.point_reversals)

    earns = {earn_id: (customer, promo, redeemed) for customer, promo, earn_id, redeemed in dataset.earns}
    assert len(earns) == len(dataset.earns)
    assert all(HEX24.match(promo) for promo in dataset.promotions)
    assert Counter(dataset.promotions.values()) == {"CART": 12, "POS": 2, "CODE": 2}
    rows = zip(dataset.earn_reversals, dataset.earn_outcomes, strict=True)
    for (customer, promo, earn_id, _), outcome in rows:
        assert isinstance(customer, int) and customer > 0
        assert HEX24.match(earn_id) and HEX24.match(promo)
        known = earns.get(earn_id)
        if outcome == 0:
            assert known == (customer, promo, False) and dataset.promotions[promo] == "CART"
        elif outcome == 729:
            assert known == (customer, promo, True)
        elif outcome == 730:
            assert dataset.promotions[promo] in ("POS", "CODE")
        else:
            assert known is None or known[:2] != (customer, promo)
    assert len({row[2] for row in dataset.earn_reversals}) == len(dataset.earn_reversals)
    big = [row for row in dataset.earn_reversals if row[0] == dataset.big_customer_id]
    assert len(big) == 1200
    assert len({row[1] for row in big}) == 3


def test_rejects_impossible_mix() -> None:
    """Shares that cannot fit in the number of earns are an error."""
    with pytest.raises(ValueError):
        generate_dataset(earns=100, big_customer_earns=100, redeemed_share=0.5)


def test_load_into_state(dataset: Dataset) -> None:
    """``load_into`` registers every issued point, promotion and earn."""
    state = SandboxState()
    dataset.load_into(state)
    assert state.counts() == {
        "points": len(dataset.points_issued),
        "points_cancelled": 0,
        "promotions": 16,
        "earns": len(dataset.earns),
        "earns_redeemed": sum(1 for earn in dataset.earns if earn[3]),
        "earns_revoked": 0,
    }
    customer, promo, earn_id, _ = dataset.earn_reversals[dataset.earn_outcomes.index(0)]
    assert state.earn(earn_id) == (customer, promo, "unredeemed")
    assert state.promotion_type(promo) == "CART"


def test_write_duckdb(tmp_path: Path, dataset: Dataset) -> None:
    """Both tables get the documented schema, every row and the reversal date; reruns replace them."""
    path = tmp_path / "wh" / "warehouse.duckdb"
    counts = write_duckdb(path, dataset)
    assert counts == {"loyalty_points_reversals": 300, "loyalty_earn_reversals": 1600}
    assert write_duckdb(path, dataset, reversal_date="2025-02-01") == counts
    con = duckdb.connect(str(path), read_only=True)
    try:
        points_schema = con.execute("DESCRIBE loyalty_points_reversals").fetchall()
        assert [(r[0], r[1], r[2]) for r in points_schema] == [
            ("unique_id", "BIGINT", "NO"),
            ("reason", "VARCHAR", "YES"),
            ("reversal_date", "DATE", "YES"),
            ("order_id", "VARCHAR", "YES"),
        ]
        earns_schema = con.execute("DESCRIBE loyalty_earn_reversals").fetchall()
        assert [(r[0], r[1], r[2]) for r in earns_schema] == [
            ("customer_id", "BIGINT", "NO"),
            ("promotion_id", "VARCHAR", "NO"),
            ("earn_id", "VARCHAR", "NO"),
            ("reason", "VARCHAR", "YES"),
            ("reversal_date", "DATE", "YES"),
            ("order_id", "VARCHAR", "YES"),
        ]
        assert con.execute("SELECT DISTINCT reversal_date FROM loyalty_earn_reversals").fetchall() == [
            (date(2025, 2, 1),)
        ]
        query = "SELECT unique_id, reason FROM loyalty_points_reversals ORDER BY unique_id"
        points = con.execute(query).fetchall()
        assert points == sorted(dataset.point_reversals)
        earns = con.execute(
            "SELECT customer_id, promotion_id, earn_id, reason FROM loyalty_earn_reversals ORDER BY earn_id"
        ).fetchall()
        assert earns == sorted(dataset.earn_reversals, key=lambda row: row[2])
    finally:
        con.close()
