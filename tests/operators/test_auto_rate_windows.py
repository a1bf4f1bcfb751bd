"""``"auto"`` against the sandbox over loopback, with short vendor windows: what the vendor saw.

A first run at an untold limit meets one rate-limit answer at most and sends nothing inside a
penalty; the run after it, starting from what the first learned, meets none. Counted server-side
(the sandbox's own counters), never from what the client believes. The windows are 2 s and the
slow start is shortened (its constants, not its rule) so that both runs take seconds. The run is
told the vendor's window (``window_seconds`` in its learned state), not its limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.hooks import _auto_rate
from airflow_provider_loyalty.hooks._auto_rate import LearnedRate, MemoryRateStore
from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.sandbox.helpers import points_vendor

WINDOW = 2.0


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[sb.Sandbox, list[int]]]:
    with points_vendor(monkeypatch, seed=11, points=260) as (sandbox, known):
        yield sandbox, known


def run(ids: list[int], store: MemoryRateStore, task_id: str) -> dict:
    return CancelPointsOperator(
        task_id=task_id,
        unique_ids=ids,
        batch_size=1,
        max_requests_per_minute="auto",
        max_concurrency=4,
        hook_params={"rate_store": store, "token_store": MemoryTokenStore()},
    ).execute({})


def counters(sandbox: sb.Sandbox) -> dict[str, int]:
    stats = sandbox.stats()["xoxoday"]
    return {k: stats[k] for k in ("cancelled", "rate_limited", "requests_in_penalty")}


@pytest.mark.parametrize(
    ("penalty", "rpm", "first_n", "learned_n"),
    [
        pytest.param(1.0, 1200, 130, 100, id="penalty_1s"),  # 40 requests per 2 s
        pytest.param(3.0, 1200, 130, 100, id="penalty_3s"),
        # Untold, what is learned keeps within a minute as well: after the answer nothing more leaves
        # until the first requests are a minute old. That run is simulated (tests/hooks/test_auto_rate.py,
        # test_an_untold_window_keeps_within_every_candidate) rather than waited for here.
    ],
)
def test_one_rate_limit_answer_at_most_then_none(
    vendor: tuple[sb.Sandbox, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    penalty: float,
    rpm: int,
    first_n: int,
    learned_n: int,
) -> None:
    sandbox, ids = vendor
    monkeypatch.setattr(_auto_rate, "START_PER_MINUTE", 600.0)
    monkeypatch.setattr(_auto_rate, "STEP_SECONDS", 1.0)
    # A penalty shorter than the window: when it ends the window is still full (the case where a
    # second, third... refusal used to follow the first).
    sandbox.config.update({"xoxoday_rpm": rpm, "rate_window_seconds": WINDOW, "xoxoday_penalty_seconds": penalty})
    store = MemoryRateStore(LearnedRate(window_seconds=WINDOW))
    first_ids, learned_ids = ids[:first_n], ids[first_n : first_n + learned_n]

    first = run(first_ids, store, "first")
    after_first = counters(sandbox)
    assert first["succeeded"] == len(first_ids) and after_first["cancelled"] == len(first_ids)
    assert after_first["rate_limited"] == 1  # the one answer that found the limit, and no other
    assert after_first["requests_in_penalty"] == 0
    learned = store.learned
    assert learned is not None and learned.window_limits is not None
    full = rpm * WINDOW / 60  # what one window accepts; what we surely saw of it may be one less
    assert full - 1 <= learned.window_limits["2"] <= full

    time.sleep(WINDOW + penalty)  # later: the vendor's window is empty again
    second = run(learned_ids, store, "learned")
    after_second = counters(sandbox)
    assert second["succeeded"] == len(learned_ids)
    assert after_second["cancelled"] - after_first["cancelled"] == len(learned_ids)
    assert after_second["rate_limited"] == after_first["rate_limited"]  # none in the learned run
    assert after_second["requests_in_penalty"] == 0
    assert second["pace"]["started_from"] == "learned"
