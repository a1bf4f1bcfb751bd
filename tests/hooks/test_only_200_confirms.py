"""Only a 200 confirms a reversal: a 202 ("accepted, not processed yet") or another 2xx claiming
success leaves the items in doubt (``no_answer``), never succeeded."""

from __future__ import annotations

import pytest

from tests.operators.test_operators import API, P1, REVOKE, context


@pytest.mark.parametrize("status", [201, 202, 203, 206, 207])
def test_xoxoday_success_body_with_another_2xx_is_no_answer(requests_mock, xoxoday_conn, status) -> None:
    body = {"data": {"cancelBalance": {"error": False, "recipients": [{"unique_id": 5, "success": True}]}}}
    requests_mock.post(API, json=body, status_code=status)
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    s = CancelPointsOperator(task_id="c", unique_ids=[5], max_failed_ratio=1.0).execute(context())
    assert (s["succeeded"], s["failed"], s["failure_codes"]) == (0, 1, {"no_answer": 1})


@pytest.mark.parametrize("status", [201, 202, 207])
def test_capillary_success_body_with_another_2xx_is_no_answer(requests_mock, capillary_conn, status) -> None:
    body = {
        "data": {
            "customerId": 1,
            "revokedDetails": [{"promotionId": P1, "revokedEarnIds": ["e1"], "status": "SUCCESS"}],
        },
        "errors": [],
    }
    requests_mock.post(REVOKE, json=body, status_code=status)
    from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator

    s = RevokeEarnOperator(task_id="r", earns=[(1, P1, "e1")], max_failed_ratio=1.0).execute(context())
    assert (s["succeeded"], s["failed"], s["failure_codes"]) == (0, 1, {"no_answer": 1})


def test_a_200_still_confirms(requests_mock, xoxoday_conn) -> None:
    body = {"data": {"cancelBalance": {"error": False, "recipients": [{"unique_id": 5, "success": True}]}}}
    requests_mock.post(API, json=body, status_code=200)
    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    assert CancelPointsOperator(task_id="c", unique_ids=[5]).execute(context())["succeeded"] == 1
