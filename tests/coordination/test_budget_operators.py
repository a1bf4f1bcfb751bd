"""Two reversal tasks on one vendor key, each with its own pacer, sharing the key's budget in a real Redis (the sandbox over loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[tuple[sb.Sandbox, list[int]]]:
    dataset = sb.generate_dataset(seed=11, points=220, earns=0, big_customer_earns=0, customers=1)
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    set_connection(monkeypatch, "rate_budget", conn_type="redis", host=host, port=int(port))
    with sb.Sandbox(sb.SandboxConfig(), dataset) as sandbox:
        for name, value in sb.connection_env(sandbox.url).items():
            monkeypatch.setenv(name, value)
        rows = zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
        yield sandbox, [uid for (uid, _), outcome in rows if outcome == "cancel"][:160]


def run_tasks(ids: list[int], *, shared: bool, pace: Any = 2400) -> list[dict[str, Any]]:
    """Two mapped tasks at once, half the ids each, both set to the vendor's whole limit."""
    results: list[Any] = [None, None]

    def task(i: int) -> None:
        try:
            results[i] = CancelPointsOperator(
                task_id=f"shard_{i}",
                unique_ids=ids[i::2],
                batch_size=1,
                max_requests_per_minute=pace,
                max_concurrency=4,
                rate_budget_conn_id="rate_budget" if shared else None,
                hook_params={"token_store": MemoryTokenStore()},
            ).execute({})
        except Exception as exc:  # noqa: BLE001 - reported by the assertions
            results[i] = {"error": repr(exc)}

    threads = [threading.Thread(target=task, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_two_tasks_at_the_vendors_limit_share_it_instead_of_doubling_it(vendor: tuple[sb.Sandbox, list[int]]) -> None:
    sandbox, ids = vendor
    # 2400/min over 2 s windows (80 per window), 5 s penalty once exceeded. Each task is set to the
    # whole limit: alone they would send 4800/min together; sharing the key's budget, 2400/min.
    sandbox.config.update({"xoxoday_rpm": 2400, "rate_window_seconds": 2.0, "xoxoday_penalty_seconds": 5.0})
    results = run_tasks(ids, shared=True)
    stats = sandbox.stats()["xoxoday"]
    assert all(r.get("failed") == 0 and r.get("succeeded") == 80 for r in results), results
    assert stats["cancelled"] == 160
    assert stats["rate_limited"] == 0 and stats["requests_in_penalty"] == 0
    assert stats["max_requests_in_window"] <= 80  # the vendor's window never overfilled, together


def test_without_the_shared_budget_the_same_tasks_overfill_the_window(vendor: tuple[sb.Sandbox, list[int]]) -> None:
    sandbox, ids = vendor
    sandbox.config.update({"xoxoday_rpm": 2400, "rate_window_seconds": 2.0, "xoxoday_penalty_seconds": 1.0})
    run_tasks(ids, shared=False)
    assert sandbox.stats()["xoxoday"]["rate_limited"] >= 1  # the baseline: each task paces alone


def test_a_penalty_met_by_one_task_holds_the_other(vendor: tuple[sb.Sandbox, list[int]], redis_url: str) -> None:
    import redis

    from airflow_provider_loyalty.coordination.budget import REDIS_PREFIX, RedisBudget, budget_key

    sandbox, ids = vendor
    # A window far smaller than the two tasks' demand: the first refusal opens a 3 s penalty that the
    # vendor counts for the key, so a request of either task inside it would be refused again.
    sandbox.config.update({"xoxoday_rpm": 600, "rate_window_seconds": 1.0, "xoxoday_penalty_seconds": 3.0})
    key = budget_key("xoxoday", sandbox.url, sb.XOXODAY_CLIENT_ID)
    client = redis.Redis.from_url(redis_url)
    client.delete(f"{REDIS_PREFIX}{key}")
    results = run_tasks(ids[:16], shared=True, pace=60000)
    stats = sandbox.stats()["xoxoday"]
    assert all(r.get("failed") == 0 for r in results), results
    assert stats["cancelled"] == 16
    assert stats["rate_limited"] >= 1  # the setting is far above the vendor's limit
    # Only requests already on the wire when the window opened may meet it (4 in flight per task).
    assert stats["requests_in_penalty"] <= 2 * 4
    assert RedisBudget(client, key).blocked_for() == 0.0  # the key's window was opened and is over
    assert client.hget(f"{REDIS_PREFIX}{key}", "blocked_until") is not None
