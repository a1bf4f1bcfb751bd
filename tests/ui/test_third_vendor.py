"""A third vendor, defined in tests/third_vendor only, runs through the engine, a real ledger file and the page.

Nothing in the package names it: it is registered through its spec. The ledger table exists
before the vendor does (written by a built-in vendor), so opening it for the new vendor adds its
identity column — the migration path of an existing table.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.ledger import ReversalLedger, not_done_predicate
from airflow_provider_loyalty.outcomes import Outcome
from airflow_provider_loyalty.ui.summaries import vendor_of
from tests.conftest import set_connection
from tests.third_vendor.vendor import SPEC, VOID_URL, VoidVouchersOperator

TABLE = "loyalty_reversal_ledger"


class FakeTI(SimpleNamespace):
    def __init__(self, run_id: str) -> None:
        super().__init__(dag_id="vouchers", run_id=run_id, task_id="void", map_index=-1, try_number=1, pushed={})

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


@pytest.fixture
def ledger_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[str]:
    """A SQLite ledger written by a built-in vendor before the third one is registered."""
    path = tmp_path / "warehouse.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_CONN_ID", "ledger")
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_TABLE", TABLE)
    assert "vouchery" not in {s.name for s in vendors.all_specs()}
    older = ReversalLedger("ledger", table=TABLE)
    older.record("xoxoday", [Outcome.succeeded(PointItem(4711))], {"dag_id": "points", "run_id": "p1"})
    older.close()
    vendors.register(SPEC)
    yield str(path)
    vendors.unregister(SPEC.name)


def void_answer(refused: dict[str, str]):
    def answer(request, context):
        return {
            "results": [
                {"code": code, "voided": code not in refused, "error": refused.get(code)}
                for code in request.json()["codes"]
            ]
        }

    return answer


def test_a_third_vendor_runs_through_engine_ledger_and_page(ledger_file, requests_mock, make_client, token) -> None:
    requests_mock.post(VOID_URL, json=void_answer({"V-2": "not_found"}))
    op = VoidVouchersOperator(
        task_id="void", vouchers=["V-1", "V-2", "V-3", "V-1"], ledger_conn_id="ledger", max_failed_ratio=1.0
    )
    summary = op.execute({"ti": FakeTI("run-1")})

    # the wire: two batches of at most max_batch codes, each code once
    assert [r.json() for r in requests_mock.request_history] == [{"codes": ["V-1", "V-2"]}, {"codes": ["V-3"]}]
    assert summary["vendor"] == "vouchery"
    assert (summary["requested"], summary["succeeded"], summary["failed"], summary["duplicates_removed"]) == (
        3,
        2,
        1,
        1,
    )
    assert summary["failures"][0]["voucher_code"] == "V-2"

    # the ledger: the table written before the vendor existed got its identity column
    with sqlite3.connect(ledger_file) as conn:
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")]
        rows = conn.execute(
            f"SELECT item_key, voucher_code, status, code, run_id FROM {TABLE} WHERE vendor = 'vouchery' "
            "AND status <> 'sending' ORDER BY item_key"
        ).fetchall()
        intents = conn.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE vendor = 'vouchery' AND status = 'sending'")
        older = conn.execute(f"SELECT voucher_code, unique_id FROM {TABLE} WHERE vendor = 'xoxoday'").fetchall()
        assert intents.fetchone() == (3,)
    assert "voucher_code" in columns
    assert rows == [
        ("V-1", "V-1", "succeeded", None, "run-1"),
        ("V-2", "V-2", "failed", "not_found", "run-1"),
        ("V-3", "V-3", "succeeded", None, "run-1"),
    ]
    assert older == [(None, 4711)]

    # the next run skips what the ledger settled: nothing goes over the wire
    again = VoidVouchersOperator(task_id="void", vouchers=["V-1", "V-2", "V-3"], ledger_conn_id="ledger")
    second = again.execute({"ti": FakeTI("run-2")})
    assert (second["skipped"], second["failed_earlier"], second["requests"]) == (2, 1, 0)
    assert len(requests_mock.request_history) == 2

    # the page: search by the vendor's own id field, filter by the vendor, export its column
    client = make_client(token=token)
    found = client.get("/loyalty/api/items", params={"q": "V-2"}).json()["items"]
    assert [(i["vendor"], i["voucher_code"], i["reversed"], i["last"]["code"]) for i in found] == [
        ("vouchery", "V-2", False, "not_found")
    ]
    listed = client.get("/loyalty/api/items", params={"vendor": "vouchery"}).json()
    assert sorted(i["item_key"] for i in listed["items"]) == ["V-1", "V-2", "V-3"]
    exported = list(csv.DictReader(io.StringIO(client.get("/loyalty/api/items.csv", params={"q": "V-3"}).text)))
    assert [(r["vendor"], r["voucher_code"], r["reversed"]) for r in exported] == [("vouchery", "V-3", "yes")]
    page = client.get("/loyalty/reversals", params={"q": "V-1"})
    assert page.status_code == 200 and "voucher <b>V-1</b>" in page.text
    totals = {t["vendor"]: t for t in client.get("/loyalty/api/summary").json()["totals"]}
    assert totals["vouchery"]["succeeded"] == 2 and totals["xoxoday"]["succeeded"] == 1


def test_an_unregistered_vendor_is_refused_by_the_ledger_and_the_page(ledger_file, make_client, token) -> None:
    vendors.unregister(SPEC.name)
    with pytest.raises(ValueError, match="vendor must be one of 'xoxoday', 'capillary', got 'vouchery'"):
        not_done_predicate("vouchery", "r.code")
    assert make_client(token=token).get("/loyalty/api/items", params={"vendor": "vouchery"}).status_code == 422


@pytest.mark.parametrize(
    ("value", "operator", "vendor"),
    [
        ({"vendor": "xoxoday", "skipped": 3}, "MyNightlyCancel", "xoxoday"),  # a user's subclass
        ({"vendor": "capillary", "skipped": 1}, "RevokeEarnOperator", "capillary"),
        ({"skipped": 3}, "CancelPointsOperator", "xoxoday"),  # written before summaries named their vendor
        ({"skipped": 3}, "MyNightlyCancel", None),
        ({"vendor": "nobody", "skipped": 3}, "CancelPointsOperator", None),
        ([1, 2], "CancelPointsOperator", None),
    ],
)
def test_a_summary_counts_under_the_vendor_it_names(value, operator, vendor) -> None:
    assert vendor_of(value, operator) == vendor
