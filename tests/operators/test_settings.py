"""Templated settings: a safety setting that renders to nothing fails closed, and nothing is sent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty.operators import _settings
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.operators.test_operators import context


def rendered(op, conf: dict) -> None:
    """Render the operator's templated fields as a task run would (the DAG's Jinja environment)."""
    op.render_template_fields({"dag_run": SimpleNamespace(conf=conf), "params": {}})


@pytest.mark.parametrize("template", ["{{ dag_run.conf.get('dry_run') }}", "{{ dag_run.conf.get('dry_run', '') }}"])
def test_dry_run_rendered_empty_fails_without_a_request(requests_mock, xoxoday_conn, template) -> None:
    with DAG("d", schedule=None):
        op = CancelPointsOperator(task_id="c", unique_ids=[4711], dry_run=template)
    rendered(op, conf={})
    with pytest.raises(AirflowFailException, match=r"dry_run must be true or false.*rendered nothing"):
        op.execute(context())
    assert requests_mock.call_count == 0


def test_dry_run_rendered_from_conf_is_read() -> None:
    with DAG("d", schedule=None):
        op = RevokeEarnOperator(task_id="r", earns=[(1, "p", "e")], dry_run="{{ dag_run.conf.get('dry_run') }}")
    rendered(op, conf={"dry_run": "false"})
    _settings.check(op)
    assert op.plan_only is False


@pytest.mark.parametrize("value", [None, "", " none ", "NULL"])
def test_dry_run_nothing_is_refused(value) -> None:
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        _settings.as_bool(value, "dry_run")


@pytest.mark.parametrize("value", ["", "None", "null"])
def test_max_items_rendered_empty_fails_without_a_request(requests_mock, xoxoday_conn, value) -> None:
    op = CancelPointsOperator(task_id="c", unique_ids=[4711], max_items="{{ params.limit }}")
    op.max_items = value  # as rendered
    with pytest.raises(AirflowFailException, match=r"max_items must be a number"):
        op.execute(context())
    assert requests_mock.call_count == 0


def test_max_items_python_none_is_off() -> None:
    op = CancelPointsOperator(task_id="c", unique_ids=[4711], max_items=None)
    assert op.max_items is None


@pytest.mark.parametrize("value", [10**400, "1" + "0" * 400])
def test_huge_numbers_are_named_not_a_crash(value) -> None:
    with pytest.raises(ValueError, match="max_items"):
        CancelPointsOperator(task_id="c", unique_ids=[4711], max_items=value)


@pytest.mark.parametrize("value", ["1e-6", 0.5, 1e-9])
def test_rates_below_one_per_minute_are_refused(value) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CancelPointsOperator(task_id="c", unique_ids=[4711], max_requests_per_minute=value)
    with pytest.raises(ValueError, match="at least 1"):
        RevokeEarnOperator(
            task_id="r", earns=[(1, "p", "e")], max_requests_per_minute="auto", max_requests_per_minute_cap=value
        )
    assert _settings.rate_or_auto(1, "r") == 1.0


def test_dry_run_setting_leaves_base_operators_dry_run_method_alone() -> None:
    """``dry_run=`` is kept as ``plan_only``: ``BaseOperator.dry_run()`` (render and log the templates) still works."""
    with DAG("d", schedule=None):
        op = RevokeEarnOperator(task_id="r", earns=[(1, "p", "e")], dry_run=True)
    assert op.plan_only is True
    assert "dry_run" not in vars(op) and callable(op.dry_run)
    op.dry_run()  # the instance attribute of old made this "'bool' object is not callable"
