"""A long vendor window is waited out by the triggerer: ``dag.test()`` (which runs the trigger in line) against the sandbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from tests.conftest import set_connection
from tests.e2e.test_dag_runs import load_dag

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, list[int]]]:
    from airflow_provider_loyalty import sandbox as sb

    dataset = sb.generate_dataset(seed=3, points=12, earns=0, big_customer_earns=0, customers=1)
    with sb.Sandbox(sb.SandboxConfig(), dataset) as server:
        for name, value in sb.connection_env(server.url).items():
            monkeypatch.setenv(name, value)
        rows = zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
        yield server, [uid for (uid, _), outcome in rows if outcome == "cancel"][:6]


def test_windows_longer_than_the_threshold_are_deferred_and_resumed_from_the_ledger(vendor, monkeypatch, tmp_path):
    sandbox, ids = vendor
    ledger = tmp_path / "ledger.sqlite"
    set_connection(monkeypatch, "loyalty_ledger", conn_type="sqlite", host=str(ledger))
    # 2 requests per 2 s window, then a 3 s penalty: every third request meets a window over the 1 s threshold.
    sandbox.config.update({"xoxoday_rpm": 60, "rate_window_seconds": 2.0, "xoxoday_penalty_seconds": 3.0})
    run = load_dag("loyalty_test_rate_defer").test(run_conf={"unique_ids": ids})
    assert run.state == "success"
    stats = sandbox.stats()["xoxoday"]
    assert stats["cancelled"] == len(ids) and stats["duplicate_attempts"] == 0
    assert stats["requests_in_penalty"] == 0  # nothing was sent into a window, before or after a deferral
    deferrals = stats["rate_limited"]
    assert deferrals >= 2  # each window deferred the task once; no request went into it after
    rows = (
        sqlite3.connect(ledger)
        .execute("SELECT item_key, status, code FROM loyalty_reversal_ledger WHERE status <> 'sending'")
        .fetchall()
    )
    assert {key for key, status, _ in rows if status == "succeeded"} == {str(i) for i in ids}
    not_sent = [key for key, status, code in rows if code == "not_sent"]
    assert len(not_sent) >= deferrals  # what a deferral left was recorded not sent, then resent after it
