"""Rate limits through the real operator against the sandbox over loopback: what went over the wire and what was learned."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.hooks._auto_rate import START_PER_MINUTE, AutoRate, MemoryRateStore
from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.sandbox.helpers import cancel


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[sb.Sandbox, list[int]]]:
    dataset = sb.generate_dataset(seed=7, points=40, earns=0, big_customer_earns=0, customers=1)
    with sb.Sandbox(sb.SandboxConfig(), dataset) as sandbox:
        for name, value in sb.connection_env(sandbox.url).items():
            monkeypatch.setenv(name, value)
        yield sandbox, [uid for uid, _ in dataset.point_reversals]


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
