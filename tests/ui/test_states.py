"""The page over a run a rate limit stopped, before and after its retry: one state per item, counted once."""

from __future__ import annotations

import re

from tests.ui import seed

ZERO = dict.fromkeys(
    (
        "succeeded",
        "reconciled",
        "refused",
        "invalid",
        "in_doubt",
        "claimed",
        "not_sent",
        "failed",
        "settled_after_retry",
    ),
    0,
)


def counts(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k in ZERO}


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_still_failing_after_a_429_stopped_try_and_settled_after_its_retry(retry_ledger, make_client, token) -> None:
    ledger = retry_ledger(False)
    client = make_client(token=token)
    today = str(ledger.today)

    summary = client.get("/loyalty/api/summary").json()
    # 7001 done; 7002 still failing (429); 7003, 7004 never sent; the row 'abc' invalid — each once
    stopped = ZERO | {"succeeded": 1, "failed": 1, "not_sent": 2, "invalid": 1}
    assert [(t["vendor"], counts(t)) for t in summary["totals"]] == [("xoxoday", stopped)]
    assert [(d["day"], counts(d)) for d in summary["daily"]] == [(today, stopped)]
    (run,) = summary["runs"]
    assert run["run_id"] == seed.RETRY_RUN and counts(run) == stopped
    page = client.get("/loyalty/reversals").text
    assert 'data-field="failed">1<' in page and 'data-field="not_sent">2<' in page

    retry_ledger(True)  # the second try sent the three, and the vendor reversed them
    summary = client.get("/loyalty/api/summary").json()
    settled = ZERO | {"succeeded": 4, "settled_after_retry": 3, "invalid": 1}
    assert [(t["vendor"], counts(t)) for t in summary["totals"]] == [("xoxoday", settled)]
    assert [(d["day"], counts(d)) for d in summary["daily"]] == [(today, settled)]  # not "counted in both"
    assert counts(summary["runs"][0]) == settled | {"settled_after_retry": 0}  # runs count states, not retries
    failures = {(f["code"], f["unsettled"]) for f in summary["top_failures"]}
    assert failures == {("http_429", 0), ("not_sent", 0), ("invalid", 0)}  # nothing left to resend


def test_an_invalid_value_is_found_and_explained(retry_ledger, make_client, token) -> None:
    retry_ledger(True)
    client = make_client(token=token)
    (item,) = client.get("/loyalty/api/items", params={"q": "abc"}).json()["items"]
    assert (item["state"], item["reversed"], item["decided_by"]["message"]) == (
        "invalid",
        False,
        "row 5: not an integer",
    )
    page = text(client.get("/loyalty/reversals", params={"q": "abc"}).text)
    assert "No · Invalid input" in page
    assert "the input row was not valid: row 5: not an integer" in page and "it was never sent" in page
    assert "never sent (not extracted" not in page  # the old answer, which was wrong
    assert client.get("/loyalty/api/items", params={"q": "ab"}).json()["total"] == 0  # a value, not a part of one
    (order,) = client.get("/loyalty/api/items", params={"q": "ORD-7005"}).json()["items"]  # by the order it carried
    assert (order["item_key"], order["state"], order["reference"]) == ("invalid:abc", "invalid", "ORD-7005")


def test_a_reference_answers_was_the_order_reversed_when_and_by_which_run(retry_ledger, make_client, token) -> None:
    retry_ledger(False)
    client = make_client(token=token)
    (item,) = client.get("/loyalty/api/items", params={"q": "ORD-7003"}).json()["items"]
    assert (item["item_key"], item["reference"], item["state"]) == ("7003", "ORD-7003", "not_sent")
    page = text(client.get("/loyalty/reversals", params={"q": "ORD-7003"}).text)
    assert "Not sent yet" in page and "its run stopped before sending it" in page

    retry_ledger(True)
    (item,) = client.get("/loyalty/api/items", params={"q": "ORD-7003"}).json()["items"]
    assert (item["state"], item["reversed"], item["reversed_by"]["try_number"]) == ("succeeded", True, 2)
    assert item["reversed_by"]["run_id"] == seed.RETRY_RUN
    (done,) = client.get("/loyalty/api/items", params={"q": "ORD-7001"}).json()["items"]
    # its intent and its answer were recorded at one instant: the answer is the last outcome
    assert [a["status"] for a in done["attempts"]] == ["succeeded", "sending"]
    assert done["last"]["status"] == "succeeded"
    found = client.get("/loyalty/api/items", params={"q": "ORD-700", "limit": 10}).json()
    assert sorted(i["item_key"] for i in found["items"]) == ["7001", "7002", "7003", "7004", "invalid:abc"]  # by prefix
    csv_text = client.get("/loyalty/api/items.csv", params={"q": "ORD-7003"}).text
    assert csv_text.splitlines()[0].startswith("vendor,item_key,reference,state,")
    assert ",ORD-7003,succeeded," in csv_text
