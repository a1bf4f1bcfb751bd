"""Who may read the page, what it never shows, and that it only ever reads."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import set_connection
from tests.ui import seed

ROUTES = [
    "/loyalty/",
    "/loyalty/reversals",
    "/loyalty/reversals?q=1001",
    "/loyalty/api/summary",
    "/loyalty/api/items?q=1001",
    "/loyalty/static/reversals.css",
    "/loyalty/static/reversals-icon.svg",
    "/loyalty/static/nothing-here",
]


@pytest.mark.parametrize("route", ROUTES)
def test_anonymous_requests_get_401(duckdb_ledger, make_client, route) -> None:
    response = make_client().get(route, follow_redirects=False)
    assert response.status_code == 401, response.text
    assert "1001" not in response.text and "Transaction not found" not in response.text


@pytest.mark.parametrize("route", ["/loyalty/docs", "/loyalty/redoc", "/loyalty/openapi.json"])
def test_no_unprotected_docs(make_client, token, route) -> None:
    assert make_client().get(route).status_code == 404
    assert make_client(token=token).get(route).status_code == 404


def test_anonymous_browser_gets_a_401_page_with_a_login_link(duckdb_ledger, make_client) -> None:
    response = make_client().get("/loyalty/reversals?q=1001", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert 'id="login"' in response.text and "/auth/login" in response.text
    assert "next=%2Floyalty%2Freversals%3Fq%3D1001" in response.text


def test_invalid_and_expired_tokens_are_refused(duckdb_ledger, make_client, auth_manager) -> None:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    assert make_client(token="not-a-jwt").get("/loyalty/api/summary").status_code == 403
    expired = auth_manager.generate_jwt(  # type: ignore[attr-defined]
        SimpleAuthManagerUser(username="support", role="viewer"), expiration_time_in_seconds=-120
    )
    assert make_client(token=expired).get("/loyalty/api/summary").status_code == 401


def test_the_ui_cookie_authenticates_like_the_airflow_ui(duckdb_ledger, make_client, token) -> None:
    client = make_client()
    client.cookies.set("_token", token)
    assert client.get("/loyalty/reversals").status_code == 200
    assert client.get("/loyalty/api/summary").status_code == 200


def test_root_redirects_to_the_page(duckdb_ledger, make_client, token) -> None:
    response = make_client(token=token).get("/loyalty/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/loyalty/reversals"


def test_security_headers_and_no_caching_of_data(duckdb_ledger, make_client, token) -> None:
    client = make_client(token=token)
    for path in ("/loyalty/reversals", "/loyalty/api/summary", "/loyalty/api/items"):
        headers = client.get(path).headers
        assert "frame-ancestors 'self'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("reversals.css", "text/css"), ("reversals.js", "text/javascript"), ("reversals-icon.svg", "image/svg+xml")],
)
def test_assets_come_from_the_package(make_client, token, name, media_type) -> None:
    response = make_client(token=token).get(f"/loyalty/static/{name}")
    assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
    assert b"http://" not in response.content.replace(b"http://www.w3.org/2000/svg", b"")
    assert b"https://" not in response.content


@pytest.mark.parametrize("name", ["../reader.py", "..%2Freader.py", "reversals.html", "app.py", "%2e%2e"])
def test_static_serves_only_its_allow_list(make_client, token, name) -> None:
    assert make_client(token=token).get(f"/loyalty/static/{name}").status_code == 404


def test_no_connection_detail_is_ever_shown(monkeypatch, tmp_path, make_client, token) -> None:
    secret = "S3cr3t-Pa55w0rd-XYZ"
    # An unreachable PostgreSQL ledger whose URI carries a password.
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER", f"postgresql://ledger_user:{secret}@127.0.0.1:1/ledger_db")
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_CONN_ID", "ledger")
    client = make_client(token=token)
    for path in ("/loyalty/api/summary", "/loyalty/api/items?q=1", "/loyalty/reversals"):
        response = client.get(path)
        assert response.status_code == 503
        for leaked in (secret, "ledger_user", "ledger_db", "127.0.0.1"):
            assert leaked not in response.text
        assert "'ledger'" in response.text or "&#39;ledger&#39;" in response.text  # the connection id only
    # A DuckDB ledger with secret-looking extras: the page names the id and table, nothing else.
    path = tmp_path / "w.duckdb"
    set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(path), extra={"aws_secret": secret})
    for response in (client.get("/loyalty/reversals"), client.get("/loyalty/api/summary")):
        assert secret not in response.text and str(tmp_path) not in response.text


def test_missing_ledger_pieces_answer_503_with_a_hint(monkeypatch, tmp_path, make_client, token) -> None:
    client = make_client(token=token)
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_CONN_ID", "no_such_connection")
    response = client.get("/loyalty/api/summary")
    assert response.status_code == 503 and "no_such_connection" in response.json()["detail"]

    set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(tmp_path / "missing.duckdb"))
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_CONN_ID", "ledger")
    body = client.get("/loyalty/api/summary").json()
    assert body["missing"] is True
    assert not (tmp_path / "missing.duckdb").exists()  # read-only: nothing created

    import duckdb

    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(tmp_path / "empty.duckdb"))
    page = client.get("/loyalty/reversals")
    assert page.status_code == 503 and "No ledger yet" in page.text and "loyalty_reversal_ledger" in page.text

    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_TABLE", "ledger; DROP TABLE x")
    response = client.get("/loyalty/api/summary")
    assert response.status_code == 503 and "ledger_table setting" in response.json()["detail"]


def test_duckdb_ledger_being_written_answers_busy(duckdb_ledger, make_client, token) -> None:
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(60)",
            str(duckdb_ledger.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        client = make_client(token=token)
        response = client.get("/loyalty/api/summary")
        assert response.status_code == 503 and response.json()["busy"] is True
        assert response.headers["retry-after"] == "5"
        page = client.get("/loyalty/reversals")
        assert page.status_code == 503 and "The ledger is busy" in page.text
    finally:
        writer.kill()
        writer.wait()


def test_the_page_leaves_no_lock_behind(duckdb_ledger, make_client, token) -> None:
    """A reversal task can open the DuckDB ledger read-write right after a page load."""
    import duckdb

    client = make_client(token=token)
    assert client.get("/loyalty/reversals").status_code == 200
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('SELECT 1'); print('ok')",
            str(duckdb_ledger.path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "ok", probe.stderr
    writer = duckdb.connect(str(duckdb_ledger.path))  # and in-process too
    writer.close()


def test_read_only_session_refuses_writes(ledger) -> None:
    from airflow_provider_loyalty.ui.connections import read_only_session

    with read_only_session("ledger") as session:
        with pytest.raises(Exception) as refused:
            session.fetch(f"DELETE FROM {ledger.table}")
        assert any(word in str(refused.value).lower() for word in ("read-only", "read only", "readonly")), refused.value
    with read_only_session("ledger") as session:
        assert session.fetch(f"SELECT COUNT(*) FROM {ledger.table}")[0][0] == len(ledger.seeded.rows)


def test_skipped_counts_read_from_real_task_summaries(airflow_metadata) -> None:
    """The metadata query runs on Airflow's own schema (the browser test checks real numbers)."""
    from datetime import datetime, timedelta, timezone

    from airflow_provider_loyalty.ui.summaries import skipped_from_task_summaries

    started = time.monotonic()
    totals = skipped_from_task_summaries(datetime.now(timezone.utc) - timedelta(days=30))
    assert isinstance(totals, dict) and all(isinstance(v, int) for v in totals.values())
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("value", "added"),
    [
        ({"requested": 5, "succeeded": 2, "failed": 0, "skipped": 3, "dry_run": False}, 3),
        ({"requested": 5, "skipped": 3, "dry_run": True}, 0),
        ({"skipped": True}, 0),
        ({"skipped": -1}, 0),
        ({"skipped": "3"}, 0),
        ([1, 2, 3], 0),
        (json.dumps({"skipped": 3}), 0),
    ],
    ids=["summary", "dry_run", "bool", "negative", "text", "list", "json_text"],
)
def test_only_real_summaries_count_as_skipped(value, added) -> None:
    from datetime import date

    from airflow_provider_loyalty.ui.summaries import add_summary

    totals = {(date(2026, 1, 1), "xoxoday"): 1}
    add_summary(totals, date(2026, 1, 1), "xoxoday", value)
    assert totals[(date(2026, 1, 1), "xoxoday")] == 1 + added


DATA_ROUTES = [
    "/loyalty/",
    "/loyalty/reversals",
    "/loyalty/reversals?q=1001",
    "/loyalty/api/summary",
    "/loyalty/api/items?q=1001",
    "/loyalty/api/items",
    "/loyalty/api/items.csv",
]


@pytest.mark.parametrize("route", DATA_ROUTES)
def test_a_user_without_permissions_gets_403(duckdb_ledger, make_client, auth_manager, route) -> None:
    """A valid login whose role grants nothing (``simple_auth_manager_users = "nobody:"``)."""
    from tests.ui.conftest import jwt_for

    client = make_client(token=jwt_for("nobody", None))
    response = client.get(route, follow_redirects=False)
    assert response.status_code == 403, response.text
    assert "1001" not in response.text and "Transaction not found" not in response.text
    assert make_client().get(route, follow_redirects=False).status_code == 401  # anonymous stays 401
    # The assets hold no ledger data: any logged-in user may load them (the menu shows the icon).
    assert client.get("/loyalty/static/reversals-icon.svg").status_code == 200


@pytest.mark.parametrize("role", ["viewer", "user", "op", "admin"])
def test_every_simple_auth_manager_role_sees_every_row(duckdb_ledger, make_client, auth_manager, role) -> None:
    from tests.ui.conftest import jwt_for

    client = make_client(token=jwt_for(f"someone-{role}", role))
    assert client.get("/loyalty/api/items").json()["total"] == 53
    assert client.get("/loyalty/reversals").status_code == 200
    dags = {r["dag_id"] for r in client.get("/loyalty/api/summary").json()["runs"]}
    assert dags == {seed.DAG_ID, seed.OTHER_DAG_ID}


def test_a_user_allowed_one_dag_sees_only_its_rows_everywhere(duckdb_ledger, make_client, limited_auth_manager) -> None:
    """``partner`` may read ``OTHER_DAG_ID`` only (the auth manager's ``get_authorized_dag_ids``)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from tests.ui.conftest import ONE_DAG_USER, fake_skipped, jwt_for

    user = SimpleAuthManagerUser(username=ONE_DAG_USER, role="viewer")
    assert limited_auth_manager.get_authorized_dag_ids(user=user) == {seed.OTHER_DAG_ID}  # type: ignore[attr-defined]
    client = make_client(skipped=fake_skipped(duckdb_ledger.today), token=jwt_for(ONE_DAG_USER, "viewer"))

    summary = client.get("/loyalty/api/summary").json()
    assert {r["dag_id"] for r in summary["runs"]} == {seed.OTHER_DAG_ID}
    assert all(r["run_url"].startswith(f"/dags/{seed.OTHER_DAG_ID}/") for r in summary["runs"])
    totals = {t["vendor"]: t for t in summary["totals"]}
    assert (totals["xoxoday"]["succeeded"], totals["xoxoday"]["in_doubt"], totals["xoxoday"]["skipped"]) == (1, 1, 0)
    assert (totals["capillary"]["refused"], totals["capillary"]["in_doubt"]) == (2, 0)
    assert sum(d["succeeded"] for d in summary["daily"]) == 1
    assert [(f["code"], f["outcomes"]) for f in summary["top_failures"]] == [("729", 1), ("730", 1)]
    assert "Transaction not found" not in str(summary)

    listing = client.get("/loyalty/api/items", params={"days": 366, "limit": 100}).json()
    assert sorted(i["item_key"] for i in listing["items"]) == ["4001", "4002", "501/P-9/E-9", "503/P-5/E-20"]
    assert listing["total"] == 4
    for q in ("1001", "999", "5001", "E-10", seed.run_id_for(duckdb_ledger.today)):
        assert client.get("/loyalty/api/items", params={"q": q}).json()["total"] == 0, q
    (shared,) = client.get("/loyalty/api/items", params={"q": "E-9"}).json()["items"]  # both DAGs sent it
    assert [a["dag_id"] for a in shared["attempts"]] == [seed.OTHER_DAG_ID] and shared["attempt_count"] == 1
    assert client.get("/loyalty/api/items", params={"q": "501"}).json()["total"] == 1
    assert client.get("/loyalty/api/items", params={"status": "in_doubt", "days": 366}).json()["total"] == 1

    exported = client.get("/loyalty/api/items.csv", params={"days": 366}).text
    assert sorted(line.split(",")[1] for line in exported.splitlines()[1:]) == [
        "4001",
        "4002",
        "501/P-9/E-9",
        "503/P-5/E-20",
    ]
    page = client.get("/loyalty/reversals").text
    assert seed.OTHER_DAG_ID in page and seed.DAG_ID not in page and "Transaction not found" not in page

    # Under the same auth manager, a viewer without a limit still reads every DAG.
    viewer = make_client(token=jwt_for("support", "viewer"))
    assert viewer.get("/loyalty/api/items").json()["total"] == 53


def test_a_user_allowed_no_dag_sees_no_row_and_the_file_is_not_opened(
    duckdb_ledger, make_client, limited_auth_manager, monkeypatch
) -> None:
    from tests.ui.conftest import jwt_for

    monkeypatch.setenv("AIRFLOW__LOYALTY_TESTS__DAG_ACCESS", '{"nobody-dags": []}')
    client = make_client(token=jwt_for("nobody-dags", "viewer"))
    summary = client.get("/loyalty/api/summary").json()
    assert summary["totals"] == [] and summary["runs"] == [] and summary["top_failures"] == []
    assert client.get("/loyalty/api/items", params={"q": "1001"}).json()["total"] == 0
    assert client.get("/loyalty/reversals").status_code == 200


TASK = r"""
import json, os, sys
from airflow_provider_loyalty import sandbox as sb
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

path, table, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
dataset = sb.generate_dataset(seed=3, points=n, earns=0, big_customer_earns=0, customers=1)
with sb.Sandbox(sb.SandboxConfig(latency_ms=20), dataset) as vendor:
    os.environ.update(sb.connection_env(vendor.url))
    os.environ["AIRFLOW_CONN_POLLED_LEDGER"] = json.dumps({"conn_type": "duckdb", "host": path})
    ids = [uid for uid, _ in dataset.point_reversals]
    summary = CancelPointsOperator(
        task_id="writer", unique_ids=ids, batch_size=4, max_concurrency=2, max_failed_ratio=1.0,
        ledger_conn_id="polled_ledger", ledger_table=table,
    ).execute({})
    print("done", summary["requested"], summary["succeeded"] + summary["failed"], flush=True)
"""


def test_polling_the_page_never_breaks_a_ledger_writing_task(duckdb_ledger, make_client, token) -> None:
    """Two loops poll the API as fast as they can while a real CancelPointsOperator (its own process,
    the sandbox over loopback) opens the same DuckDB ledger and records every intent and outcome."""
    import threading

    import duckdb

    items = 60
    stop = threading.Event()
    answers: list[int] = []

    def poll() -> None:
        client = make_client(token=token)
        while not stop.is_set():
            answers.append(client.get("/loyalty/api/summary").status_code)

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    try:
        time.sleep(0.3)  # the pollers are at it before the task opens the ledger
        task = subprocess.run(
            [sys.executable, "-c", TASK, str(duckdb_ledger.path), duckdb_ledger.table, str(items)],
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        stop.set()
        for poller in pollers:
            poller.join(timeout=30)
    assert task.returncode == 0, task.stderr[-3000:]
    assert f"done {items} {items}" in task.stdout
    with duckdb.connect(str(duckdb_ledger.path), read_only=True) as db:
        written = db.execute(
            f"SELECT status = 'sending', COUNT(DISTINCT item_key) FROM {duckdb_ledger.table} "
            "WHERE task_id IS NULL AND vendor = 'xoxoday' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert written == [(False, items), (True, items)]  # every outcome, and every intent, recorded
    assert answers.count(200) >= 5, answers  # the page answered before and after the task held the file
    assert set(answers) <= {200, 503}, set(answers)
