"""What a run says about itself: progress counts what the vendor answered, failure messages group causes.

Over a real refused connection (the vendor down) and requests-mock (refusals, invalid input).
"""

from __future__ import annotations

import logging
import re
import socket

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_loyalty.operators._summary import RunSummary, describe_item
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_operators import API, context, echo_cancel


def no_sleep(monkeypatch) -> None:
    from airflow_provider_loyalty.hooks import _clock

    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda s: None)


def test_with_the_vendor_down_nothing_counts_as_answered_and_identical_causes_are_one_line(
    monkeypatch, caplog, capsys
) -> None:
    no_sleep(monkeypatch)
    with socket.socket() as probe:  # a port nothing listens on: every request is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_connection(
        monkeypatch,
        "xoxoday_default",
        conn_type="xoxoday",
        host=f"http://127.0.0.1:{port}",
        login="id",
        password="secret",
        extra={"access_token": "a", "refresh_token": "r", "allow_http": True},
    )
    op = CancelPointsOperator(
        task_id="c", unique_ids=list(range(1, 17)), batch_size=1, max_concurrency=1, max_failed_ratio=0.5
    )
    caplog.set_level(logging.INFO)
    with pytest.raises(AirflowException) as info:
        op.execute(context())
    message = str(info.value)
    logged = caplog.text + capsys.readouterr().out  # the task logger writes through structlog
    done = [line for line in logged.splitlines() if "xoxoday done: " in line]
    assert done and "0/16 unique_ids answered by the vendor" in done[-1], done
    assert "16/16" not in " ".join(done)
    # one line for the 16 identical causes, not 16 lines
    assert message.count(f"connection refused to 127.0.0.1:{port}") == 1, message
    assert re.search(rf"16 requests: [^\]]*connection refused to 127\.0\.0\.1:{port}", message), message
    assert "16 unique_ids planned: 0 succeeded (0 reconciled), 0 refused, 0 invalid, 16 failed" in message
    assert "0 not sent" in message


def test_invalid_input_is_reported_apart_from_vendor_answers(requests_mock, xoxoday_conn) -> None:
    requests_mock.post(API, json=echo_cancel(fail={2, 3}))
    with pytest.raises(AirflowFailException) as info:
        CancelPointsOperator(task_id="c", unique_ids=[1, 2, "junk", 3, -5], on_invalid="skip").execute(context())
    message = str(info.value)
    vendor, invalid = message.split("Vendor answers: ")[1].split("Invalid input (never sent): ")
    assert "2 items: nope [code refused]: unique_id=2, unique_id=3" in vendor
    assert "junk" not in vendor
    assert invalid.startswith("2 rows: row 3: 'junk' (not an integer); row 5: -5 (must be positive)")
    assert "5 unique_ids planned: 1 succeeded (0 reconciled), 2 refused, 2 invalid, 0 failed" in message


def test_code_and_message_never_run_together() -> None:
    failure = {"unique_id": 4711, "reference": "ORD-1", "code": "refused", "message": "refused earlier: nope"}
    assert describe_item(failure) == "unique_id=4711 (reference ORD-1): refused earlier: nope [code refused]"
    assert "refused refused" not in describe_item(failure)


def test_causes_are_bounded_when_every_message_differs() -> None:
    from airflow_provider_loyalty.items import PointItem
    from airflow_provider_loyalty.operators._summary import MAX_CAUSES
    from airflow_provider_loyalty.outcomes import FailureKind, Outcome

    summary = RunSummary(requested=500)
    for n in range(1, 501):  # one request each, a message naming the id
        summary.add([Outcome.failed(PointItem(n), "refused", f"id {n} unknown", FailureKind.PERMANENT)])
    assert len(summary.causes) == MAX_CAUSES + 1  # and one "other" per code
    other = summary.causes[("refused", "(other messages)")]
    assert (other.items, other.requests) == (500 - MAX_CAUSES, 500 - MAX_CAUSES)
    assert sum(c.items for c in summary.causes.values()) == 500
