"""Xoxoday's rotated pair survives the task: stored in the Airflow Variable, used by the next run."""

from __future__ import annotations

import json

import pytest

from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
from tests.e2e.conftest import run_conf
from tests.e2e.test_dag_runs import load_dag, xcom

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]
KEY = "loyalty_xoxoday_token__xoxoday_default"


@pytest.fixture
def variable():
    from airflow.models.variable import Variable

    Variable.delete(KEY)
    yield lambda: json.loads(Variable.get(KEY, default_var="null") or "null")
    Variable.delete(KEY)


def test_rotation_inside_a_task_is_stored_and_reused(vendor, variable) -> None:
    vendor.expire_xoxoday_access_tokens()  # the dashboard pair's access token has expired
    conf = run_conf(vendor.dataset, points=5, earns=0)
    first = load_dag("loyalty_test_xcomarg_and_jinja").test(run_conf=conf)
    assert first.state == "success" and xcom(first, "cancel")["succeeded"] > 0
    stored = variable()
    current = vendor.xoxoday_tokens()
    assert stored["refresh_token"] == current["refresh_token"] != "sandbox-refresh-token-0"
    assert vendor.stats()["xoxoday"]["token_refreshes"] == 1

    # The next run starts from the stored pair (the connection's refresh token is dead by now).
    second = load_dag("loyalty_test_xcomarg_and_jinja").test(run_conf=run_conf(vendor.dataset, points=10, earns=0))
    assert second.state == "success"
    assert vendor.stats()["xoxoday"]["token_refreshes"] == 1


def test_rotation_outside_a_task_goes_to_the_metadata_db(vendor, variable) -> None:
    vendor.expire_xoxoday_access_tokens()
    ids = [uid for uid, _ in vendor.dataset.point_reversals][:3]
    XoxodayHook().cancel_points(ids)
    assert variable()["refresh_token"] == vendor.xoxoday_tokens()["refresh_token"]
    XoxodayHook().cancel_points([uid for uid, _ in vendor.dataset.point_reversals][3:6])
    assert vendor.stats()["xoxoday"]["token_refreshes"] == 1
