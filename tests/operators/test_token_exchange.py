"""A token exchange's failure decides nothing about a reversal, and its answer is never quoted.

The real operators against the sandbox over loopback, with a DuckDB ledger file. The reversal
request is refused (the token it carried is expired), the hook renews the credential, and the token
endpoint fails: an answer the model cannot read (a live token in it), a refusal, or error pages.
The only reversal request got a definite refusal, so its items were not applied: the ledger says
``not_sent`` (never ``no_answer``), and the next run's "already reversed" answer is a refusal, not
a reconciled success. No token appears in any ledger row, the summary XCom, the error or the logs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import AirflowException

from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.hooks import _clock
from airflow_provider_loyalty.hooks._retry import RetryPolicy
from airflow_provider_loyalty.hooks._token_store import MemoryTokenStore
from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import set_connection
from tests.operators.test_operators import context
from tests.sandbox.helpers import cancel

# What the renewal meets at the token endpoint (the reversal request itself was answered 498/401).
RENEWAL_FAILURES = [
    pytest.param(["unreadable"], id="token_answer_unreadable"),
    # a well-formed answer whose token no header can carry: the reversal would fail inside the HTTP
    # layer after being handed over (items in doubt), its error quoting the header
    pytest.param(["garbled"], id="token_answer_garbled"),
    pytest.param(["refused"], id="token_renewal_refused"),
    pytest.param(["error_page"] * 2, id="token_endpoint_error_pages"),
]


@pytest.fixture
def vendor(monkeypatch, tmp_path, spool_variables) -> Any:
    """A sandbox, connections to it (Capillary with OAuth), and a DuckDB ledger file."""
    monkeypatch.setattr(_clock.SYSTEM_CLOCK, "sleep", lambda seconds: None)  # retry backoffs
    dataset = sb.generate_dataset(seed=7, points=20, earns=40, big_customer_earns=0, customers=6)
    with sb.Sandbox(sb.SandboxConfig(), dataset) as server:
        for name, value in sb.connection_env(server.url).items():
            monkeypatch.setenv(name, value)
        set_connection(
            monkeypatch,
            "capillary_oauth",
            conn_type="capillary",
            host=server.url,
            login=sb.CAPILLARY_OAUTH_KEY,
            password=sb.CAPILLARY_OAUTH_SECRET,
            extra={"auth_type": "oauth"},
        )
        set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(tmp_path / "ledger.duckdb"))
        server.dataset = dataset  # type: ignore[attr-defined]
        server.ledger_path = tmp_path / "ledger.duckdb"  # type: ignore[attr-defined]
        yield server


def ledger_rows(vendor: Any) -> list[dict[str, Any]]:
    import duckdb

    with duckdb.connect(str(vendor.ledger_path), read_only=True) as db:
        cursor = db.execute("SELECT * FROM loyalty_reversal_ledger ORDER BY recorded_at")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def outcomes(rows: list[dict[str, Any]], run_id: str) -> dict[str, tuple[str, str | None, str | None]]:
    """``item_key -> (status, failure_kind, code)`` of one run's outcome rows (intents left out)."""
    return {
        r["item_key"]: (r["status"], r["failure_kind"], r["code"])
        for r in rows
        if r["run_id"] == run_id and r["status"] != "sending"
    }


def run(operator: Any, run_id: str) -> tuple[dict[str, Any] | None, str, dict[str, Any]]:
    """Execute; return ``(summary returned or None, error text, XComs pushed)``."""
    ctx = context(run_id)
    try:
        return operator.execute(ctx), "", ctx["ti"].pushed
    except AirflowException as exc:
        return None, f"{exc!r} {exc.__cause__!r}", ctx["ti"].pushed


def assert_no_token(tokens: list[str], *texts: object) -> None:
    assert tokens, "the sandbox issued no token: the scenario did not happen"
    for text in texts:
        blob = text if isinstance(text, str) else json.dumps(text, default=str)
        leaked = [t for t in tokens if t in blob]
        assert not leaked, f"a live token is quoted: {blob[:300]}"


def one_customer_with_an_invalid_earn(dataset: Any) -> tuple[list[list[Any]], set[str]]:
    """The earn rows of the first customer one of whose earns Capillary answers 731 (invalid earn id),
    and the ledger keys of those invalid earns."""
    rows = list(zip(dataset.earn_reversals, dataset.earn_outcomes, strict=True))
    customer = next(row[0] for row, outcome in rows if outcome == 731)
    mine = [(c, p, e, outcome) for (c, p, e, _), outcome in rows if c == customer]
    return [[c, p, e] for c, p, e, _ in mine], {f"{c}/{p}/{e}" for c, p, e, o in mine if o == 731}


def first_cancellable(dataset: Any) -> int:
    rows = zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
    return next(uid for (uid, _), outcome in rows if outcome == "cancel")


@pytest.mark.parametrize("renewal", RENEWAL_FAILURES)
def test_capillary_token_failure_leaves_earns_not_sent(vendor, renewal, caplog, capsys) -> None:
    earns, invalid = one_customer_with_an_invalid_earn(vendor.dataset)
    keys = {"/".join(map(str, row)) for row in earns}
    # the first generation's token is refused by revokeEarn (498, expired); the renewal then fails
    vendor.config.update({"token_faults": ["expired", *renewal]})

    def operator() -> RevokeEarnOperator:
        return RevokeEarnOperator(
            task_id="revoke",
            earns=earns,
            capillary_conn_id="capillary_oauth",
            ledger_conn_id="ledger",
            max_failed_ratio=0.5,  # day 2: 729 and 731 refusals (2 of 7) are the vendor's answers
            hook_params={"retry_policy": RetryPolicy(max_attempts=2)},
        )

    summary, error, pushed = run(operator(), "day1")
    assert summary is None and error  # nothing reversed (7 of 7 failed): the task fails
    revokes = [r for r in vendor.state.request_log(vendor="capillary") if r["endpoint"] == "revoke_earn"]
    assert [r["status"] for r in revokes] == [498]  # one revoke request, answered "token expired"
    attempts = vendor.state.earn_attempts([row[2] for row in earns])
    assert all(a["revoked"] == 0 for a in attempts.values())
    day1 = outcomes(ledger_rows(vendor), "day1")
    assert set(day1) == keys
    assert set(day1.values()) == {("failed", "transient", "not_sent")}  # not applied; never no_answer

    summary2, _, _ = run(operator(), "day2")  # the token endpoint behaves again
    assert summary2 is not None and summary2["reconciled"] == 0
    day2 = outcomes(ledger_rows(vendor), "day2")
    assert set(day2) == keys
    for key in invalid:  # 731 for an earn we never revoked: a refusal, not "already reversed"
        assert day2[key] == ("failed", "permanent", "731")

    tokens = vendor.state.capillary_tokens()
    assert_no_token(tokens, ledger_rows(vendor), pushed, summary2, error, caplog.text, capsys.readouterr())


@pytest.mark.parametrize("renewal", RENEWAL_FAILURES)
def test_xoxoday_token_failure_leaves_points_not_sent(vendor, renewal, caplog, capsys) -> None:
    uid = first_cancellable(vendor.dataset)
    vendor.state.expire_xoxoday_access_tokens()  # the connection's access token is refused (401)
    vendor.config.update({"token_faults": list(renewal)})
    store = MemoryTokenStore()

    def operator() -> CancelPointsOperator:
        return CancelPointsOperator(
            task_id="cancel",
            unique_ids=[uid],
            ledger_conn_id="ledger",
            hook_params={"token_store": store, "retry_policy": RetryPolicy(max_attempts=2)},
        )

    summary, error, pushed = run(operator(), "day1")
    assert summary is None and error
    cancels = [r for r in vendor.state.request_log(vendor="xoxoday") if r["endpoint"] == "cancel_points"]
    assert [r["status"] for r in cancels] == [401]  # one cancel request, refused
    assert vendor.state.point_attempts([uid])[uid]["cancelled"] == 0
    assert outcomes(ledger_rows(vendor), "day1") == {str(uid): ("failed", "transient", "not_sent")}
    tokens = [t for t in vendor.xoxoday_tokens().values() if isinstance(t, str)]  # the pair now in force

    # Someone else cancels it meanwhile; the next run hears "already cancelled". No attempt of ours
    # may have applied it, so that is the vendor's refusal, not a success reconciled from a doubt.
    vendor.state.reset_tokens()
    store.pair = None
    with requests.Session() as http:
        assert cancel(http, vendor.url, [uid]).json()["data"]["cancelBalance"]["error"] is False
    summary2, error2, _ = run(operator(), "day2")
    assert summary2 is None and "refused" in error2  # the one item was refused: nothing to reconcile
    assert outcomes(ledger_rows(vendor), "day2")[str(uid)][:2] == ("failed", "permanent")

    assert_no_token(tokens, ledger_rows(vendor), pushed, error, caplog.text, capsys.readouterr())


@pytest.mark.parametrize("fault", ["unreadable", "garbled"])
def test_an_unusable_refresh_answer_keeps_the_rotated_refresh_token(vendor, fault, caplog, capsys) -> None:
    """Xoxoday rotates the pair when it answers a refresh, and the old refresh token dies at once
    (vendor docs: "the old one is immediately invalidated"). An answer the hook cannot use (a field
    off the schema, a token no header can carry) still carries the new refresh token: it is kept,
    so the next run refreshes and sends instead of failing until someone pastes a new pair."""
    first, second = [uid for (uid, _), fate in zip(*_points(vendor.dataset), strict=True) if fate == "cancel"][:2]
    vendor.state.expire_xoxoday_access_tokens()  # the connection's access token is refused (401)
    vendor.config.update({"token_faults": [fault]})
    store = MemoryTokenStore()

    def operator(uid: int) -> CancelPointsOperator:
        return CancelPointsOperator(
            task_id="cancel", unique_ids=[uid], ledger_conn_id="ledger", hook_params={"token_store": store}
        )

    summary, error, pushed = run(operator(first), "day1")
    assert summary is None and error
    assert outcomes(ledger_rows(vendor), "day1") == {str(first): ("failed", "transient", "not_sent")}
    summary2, error2, pushed2 = run(operator(second), "day2")  # no new pair pasted
    assert error2 == "" and summary2 is not None and summary2["succeeded"] == 1
    refreshes = [r["status"] for r in vendor.state.request_log(vendor="xoxoday") if r["endpoint"] == "token_refresh"]
    assert refreshes == [200, 200]  # the second refresh used the kept token, and was not refused
    assert vendor.state.point_attempts([second])[second]["cancelled"] == 1
    tokens = [t for t in vendor.xoxoday_tokens().values() if isinstance(t, str)]
    assert_no_token(tokens, ledger_rows(vendor), pushed, pushed2, error, caplog.text, capsys.readouterr())


def _points(dataset: Any) -> tuple[Any, Any]:
    return dataset.point_reversals, dataset.point_outcomes
