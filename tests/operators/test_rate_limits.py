"""Rate limits through the real operator against the sandbox over loopback: what went over the wire and what was learned."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.hooks._auto_rate import MAX_PER_MINUTE, START_PER_MINUTE, AutoRate, MemoryRateStore
from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.sandbox.helpers import cancel, points_vendor


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[sb.Sandbox, list[int]]]:
    with points_vendor(monkeypatch, seed=7, points=180) as (sandbox, known):
        yield sandbox, known[:150]  # ids the vendor cancels


def test_a_first_request_429_under_auto_learns_no_limit(vendor: tuple[sb.Sandbox, list[int]]) -> None:
    sandbox, ids = vendor
    # 5 requests per 5 s window, a 5 s penalty once exceeded; another client fills the window first,
    # so the operator's very first request is refused before the vendor accepted anything from it.
    sandbox.config.update({"xoxoday_rpm": 60, "rate_window_seconds": 5.0, "xoxoday_penalty_seconds": 5.0})
    with requests.Session() as http:
        for uid in ids[:5]:
            assert cancel(http, sandbox.url, [uid]).status_code == 200
    store = MemoryRateStore()
    mine = ids[5:7]
    summary = CancelPointsOperator(
        task_id="first_429",
        unique_ids=mine,
        batch_size=1,
        max_requests_per_minute="auto",
        hook_params={"rate_store": store, "token_store": MemoryTokenStore()},
    ).execute({})
    stats = sandbox.stats()["xoxoday"]
    assert stats["rate_limited"] == 1 and stats["requests_in_penalty"] == 0  # the one window was waited out
    assert stats["cancelled"] == 5 + len(mine) and summary["succeeded"] == len(mine) and summary["failed"] == 0
    learned = store.load()
    assert learned is not None and learned.limit_hit is None  # nothing learned from nothing accepted
    assert AutoRate(store=store).pace == START_PER_MINUTE  # the next run does not start at 1/min


def test_a_rate_set_too_high_slows_the_run_down_instead_of_failing_it(
    vendor: tuple[sb.Sandbox, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, ids = vendor
    # The vendor allows 600/min (100 per 10 s window, 1 s penalty); the task is set to 6000/min.
    # Before, every request spent its 5 attempts (1 s apart) within the window and the try ended
    # "still rate limited after 5 attempt(s) ... not sent".
    sandbox.config.update({"xoxoday_rpm": 600, "rate_window_seconds": 10.0, "xoxoday_penalty_seconds": 1.0})
    ids = ids[:130]
    caplog.set_level("INFO")
    summary = CancelPointsOperator(
        task_id="too_high",
        unique_ids=ids,
        batch_size=1,
        max_requests_per_minute=6000,
        max_concurrency=1,  # one request at a time: the refusals all fall on the request in flight
        hook_params={"token_store": MemoryTokenStore()},
    ).execute({})
    stats = sandbox.stats()["xoxoday"]
    assert summary["succeeded"] == len(ids) and summary["failed"] == 0
    assert stats["cancelled"] == len(ids) and stats["duplicate_attempts"] == 0
    assert 1 <= stats["rate_limited"] <= 12  # the pace stepped down: a few refusals, not one per request
    assert stats["requests_in_penalty"] == 0  # every window waited out
    assert summary["pace"]["mode"] == "fixed" and summary["pace"]["pace_per_minute"] < 6000
    windows = [r for r in caplog.records if "every request waits" in r.getMessage()]
    assert windows and all(r.levelname == "INFO" for r in windows)
    assert len(windows) == summary["pace"]["rate_limit_windows"] <= stats["rate_limited"]
    assert not [r for r in caplog.records if r.levelno >= 30 and "rate limited" in r.getMessage()]


def test_a_wait_beyond_the_time_budget_stops_the_task_with_its_items_not_sent(
    vendor: tuple[sb.Sandbox, list[int]], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import sqlite3

    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from tests.conftest import set_connection

    sandbox, ids = vendor
    db = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(db))
    sandbox.config.update({"xoxoday_rpm": 10, "rate_window_seconds": 60.0, "xoxoday_penalty_seconds": 3600.0})
    mine = ids[:20]
    op = CancelPointsOperator(
        task_id="budget",
        unique_ids=mine,
        batch_size=1,
        ledger_conn_id="ledger",
        max_requests_per_minute="{{ params.rate }}",
        rate_limit_timeout="{{ params.timeout }}",
        max_concurrency=1,
        hook_params={"token_store": MemoryTokenStore()},
    )
    assert "rate_limit_timeout" in op.template_fields
    op.render_template_fields({"params": {"rate": "60000", "timeout": "120"}})
    with pytest.raises(AirflowException) as info:
        op.execute({})
    assert not isinstance(info.value, AirflowFailException)  # a later try sends the rest
    stats = sandbox.stats()["xoxoday"]
    accepted = stats["cancelled"]
    assert accepted == 10 and stats["rate_limited"] == 1  # 10 per 60 s window; the one refusal stopped it
    message = str(info.value)
    assert "rate_limit_timeout=120 s" in message and f"accepted {accepted} requests over the last minute" in message
    assert "'auto'" in message and "max_requests_per_minute=60000" in message
    recorded = dict(
        sqlite3.connect(db)
        .execute(
            "SELECT COALESCE(code, status), COUNT(DISTINCT item_key) FROM loyalty_reversal_ledger "
            "WHERE status <> 'sending' GROUP BY 1"
        )
        .fetchall()
    )
    assert recorded == {"succeeded": accepted, "not_sent": len(mine) - accepted}  # none failed, none in doubt


@pytest.mark.parametrize(
    ("stored", "started_from", "limit_hit"),
    [
        pytest.param('{"limit_hit": 1' + "0" * 400 + "}", "learned", MAX_PER_MINUTE, id="an_integer_beyond_any_float"),
        pytest.param('{"best_clean": true, "limit_hit": true}', "default", None, id="booleans"),
        pytest.param('{"limit_hit": [600]}', "default", None, id="a_list"),
    ],
)
def test_a_stored_rate_that_is_no_number_starts_the_run_all_the_same(
    vendor: tuple[sb.Sandbox, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    stored: str,
    started_from: str,
    limit_hit: float | None,
) -> None:
    # The Variable "auto" reads at start, edited by hand or by another tool: whatever it holds, the
    # run starts, a huge number is clamped like 1e300 and nothing is learned from what is no rate.
    # A 400-digit integer used to raise OverflowError out of the hook's constructor (the task failed
    # before any request), and ``true`` was read as a limit of 1/min (this run took 3 minutes).
    sandbox, ids = vendor
    monkeypatch.setenv("AIRFLOW_VAR_LOYALTY_RATE__XOXODAY__XOXODAY_DEFAULT", stored)
    monkeypatch.setattr("airflow_provider_loyalty._variables.set_variable", lambda key, value, description: None)
    summary = CancelPointsOperator(
        task_id="stored_rate",
        unique_ids=ids[:3],
        batch_size=1,
        max_requests_per_minute="auto",
        hook_params={"token_store": MemoryTokenStore()},
    ).execute({})
    assert sandbox.stats()["xoxoday"]["cancelled"] == 3 and summary["succeeded"] == 3
    assert summary["pace"]["started_from"] == started_from
    assert summary["pace"]["learned"]["limit_hit"] == limit_hit
    assert summary["pace"]["pace_per_minute"] >= START_PER_MINUTE / 2
