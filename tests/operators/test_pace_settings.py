"""``max_requests_per_minute="auto"`` and ``max_requests_per_minute_cap`` on the operators."""

from __future__ import annotations

import pytest

from airflow_provider_loyalty.hooks._auto_rate import MemoryRateStore
from airflow_provider_loyalty.operators import _settings
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator


def test_rate_or_auto() -> None:
    assert _settings.rate_or_auto("auto", "r") == "auto"
    assert _settings.rate_or_auto(" Auto ", "r") == "auto"
    assert _settings.rate_or_auto("600", "r") == 600.0
    assert _settings.rate_or_auto(None, "r") is None
    with pytest.raises(ValueError, match="'auto'"):
        _settings.rate_or_auto("fast", "r")
    with pytest.raises(ValueError):
        _settings.rate_or_auto(0, "r")


def test_operators_pass_auto_and_the_cap_to_their_hooks() -> None:
    store = MemoryRateStore()
    op = RevokeEarnOperator(
        task_id="t",
        earns=[(1, "p", "e")],
        max_requests_per_minute="auto",
        max_requests_per_minute_cap="{{ params.cap }}",  # templated: checked after rendering
        hook_params={"rate_store": store},
    )
    assert "max_requests_per_minute_cap" in op.template_fields
    op.max_requests_per_minute_cap = "250"  # as rendered
    _settings.check(op)
    assert op.max_requests_per_minute == "auto" and op.max_requests_per_minute_cap == 250.0
    pacer = op.hook.pacer
    assert pacer.auto is not None and pacer.auto.cap == 250.0 and pacer.auto.store is store
    assert op.hook.pace_report()["mode"] == "auto"


def test_a_number_keeps_a_fixed_pace() -> None:
    op = CancelPointsOperator(task_id="t", unique_ids=[1], max_requests_per_minute="120")
    _settings.check(op)
    assert op.hook.pacer.auto is None and op.hook.pacer.limiter.per_minute == 120.0
    assert "pace 120/min" in op.hook.pace_text()
    with pytest.raises(ValueError, match="'auto'"):
        CancelPointsOperator(task_id="t2", unique_ids=[1], max_requests_per_minute="quick")
