"""A float id column rendered by Jinja is refused before any call, never read as a neighbouring id.

The warehouse's 12345678901234567 in a DOUBLE column is the float 12345678901234568.0; a Jinja
``xcom_pull`` renders it as ``[1.2345678901234568e+16]``. Read as the number it spells, that is
another transaction. The real operators against the sandbox over loopback: nothing is sent.
"""

from __future__ import annotations

import jinja2
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.operators.test_operators import context

WAREHOUSE_ID = 12345678901234567


@pytest.fixture
def vendor(monkeypatch):
    with sb.Sandbox(sb.SandboxConfig()) as server:
        for name, value in sb.connection_env(server.url).items():
            monkeypatch.setenv(name, value)
        yield server


def rendered(rows: object) -> str:
    """What a non-native Jinja render of an XCom holding ``rows`` gives."""
    return jinja2.Template("{{ rows }}").render(rows=rows)


@pytest.mark.parametrize(
    ("operator", "text"),
    [
        pytest.param(
            lambda ids: CancelPointsOperator(task_id="c", unique_ids=ids),
            rendered([float(WAREHOUSE_ID)]),
            id="xoxoday_float_list",
        ),
        pytest.param(
            lambda ids: CancelPointsOperator(task_id="c", unique_ids=ids),
            rendered([(float(WAREHOUSE_ID),)]),
            id="xoxoday_float_rows",
        ),
        pytest.param(
            lambda rows: RevokeEarnOperator(task_id="r", earns=rows),
            rendered([(float(WAREHOUSE_ID), "P1", "E1")]),
            id="capillary_float_customer",
        ),
    ],
)
def test_a_rendered_float_id_is_refused_and_nothing_sent(vendor, operator, text) -> None:
    assert "1.2345678901234568e+16" in text  # what the render really gives
    with pytest.raises(AirflowFailException) as refused:
        operator(text).execute(context())
    assert "1.2345678901234568e+16" in str(refused.value) and "2**53" in str(refused.value)
    assert vendor.state.request_log() == []  # not a request, not even a token


def test_the_same_id_as_an_integer_goes_through(vendor) -> None:
    summary = CancelPointsOperator(task_id="c", unique_ids=rendered([WAREHOUSE_ID]), max_failed_ratio=1.0).execute(
        context()
    )
    assert summary["requested"] == 1
    sent = vendor.state.request_log(vendor="xoxoday")
    assert [r["items"] for r in sent if r["endpoint"] == "cancel_points"] == [1]
