"""The Reversals app over a seeded ledger on DuckDB, SQLite and PostgreSQL: numbers, search, pages, injection."""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import datetime, timedelta

import pytest

from tests.ui import seed
from tests.ui.conftest import POSTGRES_URI, fake_skipped


def test_postgres_is_configured_where_required() -> None:
    if os.environ.get("LOYALTY_REQUIRE_POSTGRES") and not POSTGRES_URI:
        pytest.fail("LOYALTY_REQUIRE_POSTGRES is set but LOYALTY_TEST_POSTGRES_URI is not")


def by_day(summary: dict) -> dict[tuple[str, str], dict]:
    return {(d["day"], d["vendor"]): d for d in summary["daily"]}


ZERO = {
    "succeeded": 0,
    "reconciled": 0,
    "refused": 0,
    "invalid": 0,
    "in_doubt": 0,
    "claimed": 0,
    "not_sent": 0,
    "failed": 0,
    "settled_after_retry": 0,
}


def counts(entry: dict, *drop: str) -> dict:
    return {k: v for k, v in entry.items() if k in ZERO and k not in drop}


def test_summary_counts_each_item_once_in_its_state(ledger, make_client, token) -> None:
    client = make_client(skipped=fake_skipped(ledger.today), token=token)
    response = client.get("/loyalty/api/summary")
    assert response.status_code == 200, response.text
    summary = response.json()
    today, yesterday, two_days = (str(ledger.today - timedelta(days=k)) for k in range(3))
    days = by_day(summary)

    assert summary["ledger"] == {"conn_id": "ledger", "table": ledger.table}
    assert summary["days"] == 30 and summary["skipped_available"] is True
    # 1001, 5002 (reconciled); 2001..2005 refused; 5001 and 4002 sent with no answer: in doubt
    assert counts(days[(today, "xoxoday")]) == ZERO | {"succeeded": 2, "reconciled": 1, "refused": 5, "in_doubt": 2}
    assert days[(today, "xoxoday")]["skipped"] == 7
    # E-10, E-11, E-20 refused; E-12: the request refused as a whole, still failing (resent)
    assert counts(days[(today, "capillary")]) == ZERO | {"refused": 3, "failed": 1}
    assert counts(days[(yesterday, "xoxoday")]) == ZERO | {"succeeded": 2}  # 1002, 4001
    # E-1..E-8; E-9 counts once, on the day of its first row (the partner DAG's refusal yesterday)
    assert counts(days[(yesterday, "capillary")]) == ZERO | {"succeeded": 8, "refused": 1}
    assert days[(yesterday, "capillary")]["skipped"] == 3
    # 3001 failed two days ago and succeeded on a retry yesterday: counted once, as settled after a retry
    assert counts(days[(two_days, "xoxoday")]) == ZERO | {"succeeded": 2, "settled_after_retry": 1}
    assert len([d for d in summary["daily"] if d["vendor"] == "xoxoday"]) == 30  # 999 (40 days ago) is outside
    assert [d["day"] for d in summary["daily"]] == sorted((d["day"] for d in summary["daily"]), reverse=True)

    assert [(t["vendor"], counts(t), t["skipped"]) for t in summary["totals"]] == [
        (
            "xoxoday",
            ZERO | {"succeeded": 33, "reconciled": 1, "refused": 5, "in_doubt": 2, "settled_after_retry": 1},
            7,
        ),
        ("capillary", ZERO | {"succeeded": 8, "refused": 4, "failed": 1}, 3),
    ]
    failures = [
        (f["vendor"], f["code"], f["failure_kind"], f["outcomes"], f["items"], f["unsettled"])
        for f in summary["top_failures"]
    ]
    assert failures == [
        ("xoxoday", "rejected", "permanent", 5, 5, 0),
        ("capillary", "729", "permanent", 3, 2, 0),
        ("capillary", "730", "permanent", 1, 1, 0),
        ("capillary", "731", "permanent", 1, 1, 0),
        ("capillary", "http_401", "rejected", 1, 1, 1),  # E-12: still failing
        ("xoxoday", "http_503", "transient", 1, 1, 0),  # 3001: settled since
    ]
    assert summary["top_failures"][0]["example_message"] == "Transaction not found"

    latest = summary["runs"][0]
    assert latest["run_id"] == seed.run_id_for(ledger.today)
    # 1001, 5002; 2001..2005, E-9, E-10, E-11; 5001; E-12
    assert counts(latest, "reconciled", "settled_after_retry") == counts(ZERO, "reconciled", "settled_after_retry") | {
        "succeeded": 2,
        "refused": 8,
        "in_doubt": 1,
        "failed": 1,
    }
    assert latest["vendors"] == ["capillary", "xoxoday"]
    assert latest["run_url"] == (
        f"/dags/{seed.DAG_ID}/runs/scheduled__{ledger.today.isoformat()}T00%3A00%3A00%2B00%3A00"
    )
    retried = next(r for r in summary["runs"] if r["run_id"] == seed.run_id_for(ledger.today - timedelta(days=2)))
    assert (retried["succeeded"], retried["failed"]) == (2, 0)  # 1003, and 3001 once (its retry succeeded)
    other = next(r for r in summary["runs"] if r["run_id"] == seed.other_run_id_for(ledger.today))
    assert (other["dag_id"], other["refused"], other["in_doubt"]) == (seed.OTHER_DAG_ID, 1, 1)


def test_summary_window_and_vendor_filter(ledger, make_client, token) -> None:
    client = make_client(skipped=fake_skipped(ledger.today), token=token)
    summary = client.get("/loyalty/api/summary", params={"days": 2, "vendor": "capillary"}).json()
    assert {(d["day"], d["vendor"]) for d in summary["daily"]} == {
        (str(ledger.today), "capillary"),
        (str(ledger.today - timedelta(days=1)), "capillary"),
    }
    assert [f["code"] for f in summary["top_failures"]] == ["729", "730", "731", "http_401"]
    assert [(t["vendor"], counts(t), t["skipped"]) for t in summary["totals"]] == [
        ("capillary", ZERO | {"succeeded": 8, "refused": 4, "failed": 1}, 3)
    ]


def test_the_code_filter_applies_to_every_section(ledger, make_client, token) -> None:
    client = make_client(skipped=fake_skipped(ledger.today), token=token)
    summary = client.get("/loyalty/api/summary", params={"code": "729"}).json()
    assert [(t["vendor"], counts(t)) for t in summary["totals"]] == [("capillary", ZERO | {"refused": 2})]  # E-9, E-10
    assert [(f["vendor"], f["code"]) for f in summary["top_failures"]] == [("capillary", "729")]
    assert {r["run_id"]: r["refused"] for r in summary["runs"]} == {
        seed.run_id_for(ledger.today): 2,
        seed.other_run_id_for(ledger.today - timedelta(days=1)): 1,
    }
    assert summary["skipped_available"] is False and summary["code"] == "729"
    items = client.get("/loyalty/api/items", params={"code": "729"}).json()
    assert sorted(i["item_key"] for i in items["items"]) == ["501/P-9/E-10", "501/P-9/E-9"]
    page = client.get("/loyalty/reversals", params={"code": "729"}).text
    assert page.count('class="item ') == 2 and 'id="code-filter"' in page
    assert page.count('<tr data-vendor="') == 1  # one failure group: 729
    assert "Transaction not found" not in page  # xoxoday's refusals are not these items


def test_the_state_filter_lists_the_items_in_that_state(ledger, make_client, token) -> None:
    client = make_client(token=token)

    def keys(**params) -> list[str]:
        page = client.get("/loyalty/api/items", params={"limit": 100, **params}).json()
        return sorted(i["item_key"] for i in page["items"])

    assert keys(status="refused") == sorted(
        ["2001", "2002", "2003", "2004", "2005", "501/P-9/E-9", "501/P-9/E-10", "502/P-7/E-11", "503/P-5/E-20"]
    )
    assert keys(status="failed") == ["501/P-9/E-12"]
    assert keys(status="in_doubt") == ["4002", "5001"]
    assert keys(status="in_doubt", days=366) == ["4002", "5001", "504/P-4/E-30"]
    summary = client.get("/loyalty/api/summary", params={"status": "in_doubt"}).json()
    assert [(t["vendor"], counts(t)) for t in summary["totals"]] == [("xoxoday", ZERO | {"in_doubt": 2})]


def test_skipped_is_unknown_without_task_summaries(duckdb_ledger, make_client, token) -> None:
    def broken(since):
        raise RuntimeError("metadata database unreachable")

    for source in (None, broken):
        summary = make_client(skipped=source, token=token).get("/loyalty/api/summary").json()
        assert summary["skipped_available"] is False
        assert {d["skipped"] for d in summary["daily"]} == {None}


@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("1001", ["1001"]),
        ("E-9", ["501/P-9/E-9"]),
        ("501/P-9/E-3", ["501/P-9/E-3"]),
        ("999", ["999"]),  # all time: reversed 40 days ago, outside the window
        ("424242", []),
        ("ORD-100001", ["1001"]),  # a reference, exactly
        ("ORD-5000", ["501/P-9/E-1", "501/P-9/E-2", "501/P-9/E-3", "501/P-9/E-9"]),  # by prefix
        ("OR", []),  # too short for a prefix
    ],
    ids=["unique_id", "earn_id", "item_key", "outside_window", "unknown", "reference", "reference_prefix", "short"],
)
def test_search_finds_an_item_by_any_id(ledger, make_client, token, query, keys) -> None:
    page = make_client(token=token).get("/loyalty/api/items", params={"q": query}).json()
    assert sorted(item["item_key"] for item in page["items"]) == keys
    assert page["total"] == len(keys)


def test_search_answers_was_it_reversed_when_and_by_which_run(ledger, make_client, token) -> None:
    client = make_client(token=token)
    item = client.get("/loyalty/api/items", params={"q": "3001"}).json()["items"][0]
    assert item["reversed"] is True
    assert item["reversed_at"].startswith(str(ledger.today - timedelta(days=1)))
    assert item["reversed_by"]["run_id"] == seed.run_id_for(ledger.today - timedelta(days=2))
    assert item["reversed_by"]["try_number"] == 2
    assert item["reversed_by"]["task_url"].endswith("/tasks/cancel_points")
    assert [a["status"] for a in item["attempts"]] == ["succeeded", "failed"]  # newest first
    assert item["attempts"][1]["failure_kind"] == "transient"

    refused = client.get("/loyalty/api/items", params={"q": "E-9"}).json()["items"][0]
    assert (refused["reversed"], refused["reversed_by"], refused["last"]["code"]) == (False, None, "729")
    assert (refused["customer_id"], refused["promotion_id"], refused["earn_id"]) == (501, "P-9", "E-9")

    mapped = client.get("/loyalty/api/items", params={"q": "E-1"}).json()["items"][0]
    assert mapped["reversed_by"]["task_url"].endswith("/tasks/revoke_earns/mapped/2")


def test_search_by_customer_promotion_and_run_paginates(ledger, make_client, token) -> None:
    client = make_client(token=token)
    seen: list[str] = []
    for offset in (0, 4, 8):
        page = client.get("/loyalty/api/items", params={"q": "501", "limit": 4, "offset": offset}).json()
        assert page["total"] == 11 and page["limit"] == 4 and page["offset"] == offset
        seen += [item["item_key"] for item in page["items"]]
    assert sorted(seen) == sorted(f"501/P-9/E-{n}" for n in range(1, 13) if n != 11)  # every item once, no overlap
    assert client.get("/loyalty/api/items", params={"q": "P-9"}).json()["total"] == 11
    run = client.get("/loyalty/api/items", params={"q": seed.run_id_for(ledger.today)}).json()
    assert run["total"] == 12  # 1001, 2001..2005, E-9, E-10, E-11, 5001, 5002, E-12
    prefix = client.get("/loyalty/api/items", params={"q": f"scheduled__{ledger.today.isoformat()}"}).json()
    assert prefix["total"] == 12  # a run id by its prefix
    partner = client.get("/loyalty/api/items", params={"q": "manual__", "limit": 100}).json()
    assert sorted(i["item_key"] for i in partner["items"]) == ["4001", "4002", "501/P-9/E-9", "503/P-5/E-20"]


def test_listing_without_query_covers_the_window_with_filters(ledger, make_client, token) -> None:
    client = make_client(token=token)
    assert client.get("/loyalty/api/items").json()["total"] == 53  # 47 + 5001, 5002, E-12, 4001, 4002, E-20
    assert client.get("/loyalty/api/items", params={"vendor": "capillary"}).json()["total"] == 13
    reference = client.get("/loyalty/api/items", params={"reference": "ORD-5"}).json()
    assert sorted(i["item_key"] for i in reference["items"]) == [f"501/P-9/E-{n}" for n in (1, 2, 3, 9)]
    assert client.get("/loyalty/api/items", params={"days": 1}).json()["total"] == 14


INJECTIONS = [
    "1 OR 1=1",
    "1001 OR 1=1",
    "1' OR '1'='1",
    "1001') OR ('1'='1",
    "'; DROP TABLE {table}; --",
    "1; DELETE FROM {table}",
    "' UNION SELECT vendor, item_key, recorded_at FROM {table} --",
    "%",
    "E-%",
    "_",
    "501/P-9/%",
    "\\",
    "１００１",  # full-width digits are not digits to the SQL side
    "9223372036854775808",  # past BIGINT: compared as text only
]


def test_sql_injection_attempts_in_search_match_nothing_and_change_nothing(ledger, make_client, token) -> None:
    client = make_client(token=token)
    rows_before = client.get("/loyalty/api/items", params={"days": 366, "limit": 1}).json()["total"]
    for attempt in INJECTIONS:
        q = attempt.format(table=ledger.table)
        for path in ("/loyalty/api/items", "/loyalty/reversals"):
            response = client.get(path, params={"q": q})
            assert response.status_code == 200, (q, response.text)
        assert client.get("/loyalty/api/items", params={"q": q}).json()["total"] == 0, q
    assert client.get("/loyalty/api/items", params={"days": 366, "limit": 1}).json()["total"] == rows_before
    assert client.get("/loyalty/api/items", params={"q": "1001"}).json()["total"] == 1


@pytest.mark.parametrize(
    "params",
    [
        {"vendor": "xoxoday' OR '1'='1"},
        {"status": "failed; DROP TABLE x"},
        {"days": "30 OR 1=1"},
        {"days": 0},
        {"days": 367},
        {"limit": 101, "page": 0},
        {"offset": -1, "page": 10_001},
        {"q": "x" * 251},
        {"q": "1001\x00"},
        {"q": "E-9\n--"},
    ],
    ids=["vendor", "status", "days_text", "days_zero", "days_too_many", "limit", "offset", "long", "nul", "newline"],
)
def test_bad_parameters_are_refused_before_any_query(duckdb_ledger, make_client, token, params) -> None:
    client = make_client(token=token)
    for path in ("/loyalty/api/items", "/loyalty/reversals"):
        assert client.get(path, params=params).status_code == 422, (path, params)


def test_page_shows_the_numbers_and_escapes_ledger_text(ledger, make_client, token) -> None:
    client = make_client(skipped=fake_skipped(ledger.today), token=token)
    page = client.get("/loyalty/reversals")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Reversals</h1>" in html and '<svg class="chart"' in html
    assert f'data-day="{ledger.today}" data-vendor="xoxoday"' in html
    assert "Transaction not found" in html and "<code>rejected</code>" in html
    assert 'href="/loyalty/static/reversals.css?v=' in html
    assert f'href="/dags/{seed.DAG_ID}/runs/scheduled__' in html and "data-airflow-link" in html

    found = client.get("/loyalty/reversals", params={"q": "E-11"}).text
    assert 'data-item-key="502/P-7/E-11"' in found
    assert "<script>alert" not in found
    assert "&lt;script&gt;alert(&#39;ledger&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;" in found

    paged = client.get("/loyalty/reversals", params={"q": "501", "page": 1}).text
    assert paged.count('class="item ') == 11
    nothing = client.get("/loyalty/reversals", params={"q": "424242"}).text
    assert 'id="no-match"' in nothing


def test_intents_are_not_outcomes_and_items_in_doubt_reconciled_or_rejected_say_so(ledger, make_client, token) -> None:
    client = make_client(token=token)

    def item(q: str) -> dict:
        (found,) = client.get("/loyalty/api/items", params={"q": q}).json()["items"]
        return found

    doubt = item("5001")  # sent, no answer recorded
    assert (doubt["in_doubt"], doubt["reversed"], doubt["last"]["status"]) == (True, False, "sending")
    reconciled = item("5002")  # sent, then answered "already reversed"
    assert (reconciled["in_doubt"], reconciled["reversed"]) == (False, True)
    assert reconciled["reversed_by"]["code"] == "already_reversed"
    assert [a["status"] for a in reconciled["attempts"]] == ["succeeded", "sending"]
    rejected = item("E-12")  # the request was refused as a whole: not settled, not in doubt
    assert (rejected["in_doubt"], rejected["reversed"]) == (False, False)
    assert (rejected["last"]["status"], rejected["last"]["failure_kind"], rejected["last"]["code"]) == (
        "failed",
        "rejected",
        "http_401",
    )

    in_doubt = client.get("/loyalty/api/items", params={"status": "in_doubt", "days": 366}).json()
    assert sorted(i["item_key"] for i in in_doubt["items"]) == ["4002", "5001", "504/P-4/E-30"]
    assert all(i["in_doubt"] and i["state"] == "in_doubt" for i in in_doubt["items"])
    assert client.get("/loyalty/api/items", params={"status": "in_doubt"}).json()["total"] == 2  # 30 days
    assert (rejected["state"], doubt["state"], reconciled["state"]) == ("failed", "in_doubt", "succeeded")

    page = client.get("/loyalty/reversals", params={"q": "E-12"}).text
    row = page[page.index('data-item-key="501/P-9/E-12"') :].split("</tr>")[0]
    assert "rejected request (not settled)" in row and "permanent" not in row
    doubtful = client.get("/loyalty/reversals", params={"q": "5001"}).text
    assert "In doubt" in doubtful and "sending (intent)" in doubtful


def test_text_of_an_outcome_does_not_run_together(duckdb_ledger, make_client, token) -> None:
    html = make_client(token=token).get("/loyalty/reversals", params={"q": "E-9"}).text
    cell = html[html.index('data-item-key="501/P-9/E-9"') :].split("</td>")[3]
    text = " ".join(re.sub(r"<[^>]+>", "", cell).split())
    assert "failed permanent 729" in text, text


def test_failure_codes_link_to_the_items_with_that_code(ledger, make_client, token) -> None:
    client = make_client(token=token)
    page = client.get("/loyalty/reversals").text
    assert 'href="/loyalty/reversals?vendor=capillary&amp;code=729&amp;days=30"' in page
    items = client.get("/loyalty/api/items", params={"vendor": "capillary", "code": "729"}).json()
    assert sorted(i["item_key"] for i in items["items"]) == ["501/P-9/E-10", "501/P-9/E-9"]
    assert items["code"] == "729"
    filtered = client.get("/loyalty/reversals", params={"vendor": "capillary", "code": "729"}).text
    assert filtered.count('class="item ') == 2 and 'id="code-filter"' in filtered
    assert client.get("/loyalty/api/items", params={"code": "x" * 65}).status_code == 422


def test_items_export_as_csv_with_the_same_filters(ledger, make_client, token) -> None:
    client = make_client(token=token)
    response = client.get("/loyalty/api/items.csv", params={"status": "refused", "vendor": "capillary"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["item_key"] for r in rows) == [
        "501/P-9/E-10",
        "501/P-9/E-9",
        "502/P-7/E-11",
        "503/P-5/E-20",
    ]
    e11 = next(r for r in rows if r["item_key"] == "502/P-7/E-11")
    assert (e11["last_code"], e11["last_message"], e11["reversed"], e11["state"]) == ("731", seed.XSS, "no", "refused")
    e9 = next(r for r in rows if r["item_key"] == "501/P-9/E-9")
    assert e9["reference"] == "ORD-500003"
    everything = list(csv.DictReader(io.StringIO(client.get("/loyalty/api/items.csv").text)))
    assert len(everything) == client.get("/loyalty/api/items").json()["total"] == 53
    assert client.get("/loyalty/api/items.csv", params={"status": "nope"}).status_code == 422


def test_csv_export_neutralises_formulas() -> None:
    from airflow_provider_loyalty.ui.app import _csv_line

    assert _csv_line(["=HYPERLINK(1)", "-1+2", "ok", 42]) == '"\'=HYPERLINK(1)","\'-1+2",ok,42\r\n'


#: Vendor messages a spreadsheet would run as formulas (OWASP CSV injection), whatever its list separator.
FORMULAS = [
    "Earn refused;=cmd|' /C calc'!A0",
    'Earn refused,=HYPERLINK("http://evil.test","x")',
    "=1+1",
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "refused\n=1+1",
    "refused, -1+1",
    'refused;"=1+1',
    "  =1+1",
    "\uff1d1+1",
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def test_csv_cells_never_become_formulas_through_the_export(duckdb_ledger, make_client, token) -> None:
    """Through the real CSV endpoint: no cell starts a formula, read with ``,``, with ``;``, or split naively."""
    from tests.ui.conftest import _write

    when = datetime.combine(duckdb_ledger.today, datetime.min.time())
    rows = [
        seed._row("xoxoday", str(9100 + n), {"unique_id": 9100 + n}, False, when, code="refused", message=message)
        for n, message in enumerate(FORMULAS)
    ]
    _write("duckdb", duckdb_ledger.path, duckdb_ledger.table, rows)
    response = make_client(token=token).get("/loyalty/api/items.csv", params={"days": 366})
    assert response.status_code == 200, response.text
    text = response.text

    # A reader that honours quotes gets every message whole, neutralised; ids and counts stay numbers.
    parsed = {r["item_key"]: r for r in csv.DictReader(io.StringIO(text, newline=""))}
    assert {str(9100 + n) for n in range(len(FORMULAS))} <= set(parsed)
    for n, message in enumerate(FORMULAS):
        cell = parsed[str(9100 + n)]["last_message"]
        assert cell.replace("'", "") == message.replace("'", ""), (message, cell)
        assert cell[:1] not in TRIGGERS
    assert parsed["9100"]["last_message"] == "Earn refused;'=cmd|' /C calc'!A0"
    line = next(raw for raw in text.split("\r\n") if raw.startswith("xoxoday,9100,"))
    assert line.startswith("xoxoday,9100,,refused,9100,,,,no,")  # the id unquoted: a number stays a number

    # A spreadsheet splitting at another separator, even inside quotes (a ';' locale opening this
    # ',' file), or at a line break inside a cell: no piece starts with a trigger.
    for separator in (",", ";", "\t"):
        for piece in re.split(f"[{separator}\r\n]", text):
            assert piece.lstrip(' "')[:1] not in TRIGGERS, (separator, piece)
