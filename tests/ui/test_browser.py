"""The Airflow UI in a real browser: our connection forms, and the Reversals page after a real reversal run.

A module fixture builds a throw-away Airflow home (``airflow db migrate``), a DuckDB warehouse whose
ledger holds a month of history, runs ``tests/ui/dags/loyalty_ui_reversals.py`` with ``airflow dags
test`` against the vendor sandbox (some ids already done, so they are skipped; some refused by the
vendors), then starts ``airflow api-server`` on a free loopback port with the plugin loaded from a
plugins folder. Headless Debian Chromium (``/usr/bin/chromium``, never a downloaded browser) logs in
through Airflow's login form. Screenshots go to ``tests/ui/artifacts/``.

The api-server's auth manager is :class:`tests.ui.auth_manager.DagLimitedAuthManager` (the simple
auth manager plus per-user DAG limits): ``admin`` reads everything, ``partner`` only the DAG run here.

Skips when Chromium or Playwright is missing, unless ``LOYALTY_REQUIRE_BROWSER`` is set (CI).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest

from airflow_provider_loyalty.ledger.schema import columns
from tests.ui import seed

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
DAG_ID = "loyalty_ui_reversals"
USER = "admin"
#: A viewer allowed to read the DAG run here only (not the seeded history's DAGs).
PARTNER = "partner"
REPO = HERE.parents[1]


def require_browser() -> None:
    missing = None
    if not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} not found (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed"
    if missing:
        if os.environ.get("LOYALTY_REQUIRE_BROWSER"):
            pytest.fail(f"LOYALTY_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(missing)


@dataclass
class Server:
    url: str
    password: str
    partner_password: str
    home: Path
    run_id: str
    run_day: date
    reversed_id: int
    refused_earn: str
    skipped: dict[str, int]
    warehouse: Path
    reversed_order: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def airflow(*args: str, env: dict[str, str], log: Path, timeout: float = 180) -> None:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    with log.open("w") as out:
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
    assert code == 0, f"airflow {' '.join(args)} failed:\n" + log.read_text()[-4000:]


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "api-server exited:\n" + log.read_text()[-4000:]
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise AssertionError("api-server not healthy in time:\n" + log.read_text()[-4000:])


def run_approved(
    args: list[str], env: dict[str, str], log: Path, url: str, password: str, timeout: float = 300
) -> None:
    """Run ``airflow dags test``; when the run waits at the approval, approve it as ``admin`` through the
    api-server's HITL endpoint (what the Required Actions page calls), then wait for the run to end."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    login = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": USER, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=10) as response:
        headers = {"Authorization": f"Bearer {json.loads(response.read())['access_token']}"}
    deadline = time.monotonic() + timeout
    with log.open("w") as out:
        run = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            approved = False
            while not approved and run.poll() is None:
                assert time.monotonic() < deadline, "the run never waited for the approval:\n" + log.read_text()[-4000:]
                time.sleep(1)
                runs = urllib.request.Request(f"{url}/api/v2/dags/{DAG_ID}/dagRuns?limit=1", headers=headers)
                try:
                    with urllib.request.urlopen(runs, timeout=10) as response:
                        found = json.loads(response.read())["dag_runs"]
                except urllib.error.HTTPError as exc:  # the run has not written the DAG yet
                    if exc.code != 404:
                        raise
                    continue
                if not found:
                    continue
                answer = urllib.request.Request(
                    f"{url}/api/v2/dags/{DAG_ID}/dagRuns/{quote(found[0]['dag_run_id'], safe='')}"
                    "/taskInstances/approval.approve/-1/hitlDetails",
                    data=json.dumps({"chosen_options": ["Approve"], "params_input": {}}).encode(),
                    headers={**headers, "Content-Type": "application/json"},
                    method="PATCH",
                )
                try:
                    with urllib.request.urlopen(answer, timeout=10) as response:
                        approved = response.status == 200
                except urllib.error.HTTPError as exc:  # not asked yet (404) or not waiting yet (409)
                    if exc.code not in (404, 409):
                        raise
            code = run.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert approved and code == 0, "airflow dags test failed:\n" + log.read_text()[-4000:]


def seed_ledger(warehouse: Path, done_points: list[int], done_earns: list[tuple[int, str, str]]) -> None:
    """A month of history, plus yesterday's success for the items the run will find already done."""
    import duckdb

    yesterday = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=1)
    rows = seed.history().rows
    earlier = {"task": "cancel_points", "run_id": f"scheduled__{yesterday.date()}T00:00:00+00:00"}
    for uid in done_points:
        rows.append(seed._row("xoxoday", str(uid), {"unique_id": uid}, True, yesterday, **earlier))
    for customer, promotion, earn in done_earns:
        ids = {"customer_id": customer, "promotion_id": promotion, "earn_id": earn}
        key = f"{customer}/{promotion}/{earn}"
        rows.append(seed._row("capillary", key, ids, True, yesterday, **{**earlier, "task": "revoke_earns"}))
    rows += seed.retry_history(retried=False)  # a run a rate limit stopped; its retry comes in a test
    conn = duckdb.connect(str(warehouse))
    seed.write(conn, "loyalty_reversal_ledger", rows, "?")
    conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_browser()
    ARTIFACTS.mkdir(exist_ok=True)
    home = tmp_path_factory.mktemp("airflow-home")
    warehouse = home / "warehouse.duckdb"
    password, partner_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    (home / "simple_auth_manager_passwords.json.generated").write_text(
        json.dumps({USER: password, PARTNER: partner_password})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__LOYALTY__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(HERE / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__AUTH_MANAGER="tests.ui.auth_manager.DagLimitedAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:admin,{PARTNER}:viewer",
        AIRFLOW__LOYALTY_TESTS__DAG_ACCESS=json.dumps({PARTNER: [DAG_ID]}),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(48),
        AIRFLOW__LOYALTY__LEDGER_CONN_ID="loyalty_warehouse",
        AIRFLOW_CONN_LOYALTY_WAREHOUSE=json.dumps({"conn_type": "duckdb", "host": str(warehouse)}),
        PYTHONUNBUFFERED="1",
    )
    airflow("db", "migrate", env=env, log=home / "migrate.log")
    # The api-server starts while the run goes on (it reads the ledger only when asked, after the run).
    url = f"http://127.0.0.1:{free_port()}"
    log = home / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("airflow")),
                "api-server",
                "-H",
                "127.0.0.1",
                "-p",
                url.rsplit(":", 1)[1],
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield from _run_and_serve(env, home, warehouse, (password, partner_password), url, process, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _run_and_serve(
    env: dict[str, str],
    home: Path,
    warehouse: Path,
    passwords: tuple[str, str],
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
) -> Iterator[Server]:
    from airflow_provider_loyalty import sandbox as sb

    dataset = sb.generate_dataset(seed=11, points=120, earns=160, big_customer_earns=0, customers=12)
    point_orders, earn_orders = sb.seed.order_ids(dataset)
    points = [uid for uid, _ in dataset.point_reversals]
    earns = [(c, p, e) for c, p, e, _ in dataset.earn_reversals]
    done_points, done_earns = points[:5], earns[:4]
    seed_ledger(warehouse, done_points, done_earns)
    reversed_id = next(
        uid for uid, outcome in list(zip(points, dataset.point_outcomes, strict=True))[5:] if outcome == "cancel"
    )
    refused_earn = next(e for (c, p, e), code in zip(earns, dataset.earn_outcomes, strict=True) if code == 729)

    with sb.Sandbox(sb.SandboxConfig(), dataset) as vendor:
        run_env = dict(env)
        run_env["AIRFLOW_CONN_XOXODAY_DEFAULT"] = json.dumps(
            {
                "conn_type": "xoxoday",
                "host": vendor.url,
                "login": sb.XOXODAY_CLIENT_ID,
                "password": sb.XOXODAY_CLIENT_SECRET,
                "extra": json.dumps(
                    {"access_token": sb.XOXODAY_ACCESS_TOKEN, "refresh_token": sb.XOXODAY_REFRESH_TOKEN}
                ),
            }
        )
        run_env["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = json.dumps(
            {
                "conn_type": "capillary",
                "host": vendor.url,
                "login": sb.CAPILLARY_TILL,
                "password": sb.CAPILLARY_PASSWORD,
            }
        )
        # each row carries its order id as the item's reference, as the example DAGs select it
        conf = json.dumps(
            {
                "unique_ids": [[uid, order] for uid, order in zip(points, point_orders, strict=True)],
                "earns": [[*e, order] for e, order in zip(earns, earn_orders, strict=True)],
            }
        )
        wait_healthy(url, process, log)
        run_approved(["dags", "test", DAG_ID, "-c", conf], run_env, home / "dags-test.log", url, passwords[0])

    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as db:
        run_id, first = db.execute(
            "SELECT run_id, MIN(recorded_at) FROM loyalty_reversal_ledger WHERE dag_id = ? GROUP BY run_id", [DAG_ID]
        ).fetchone()

    wait_healthy(url, process, log)
    yield Server(
        url=url,
        password=passwords[0],
        partner_password=passwords[1],
        home=home,
        run_id=run_id,
        run_day=first.date(),
        reversed_id=reversed_id,
        refused_earn=refused_earn,
        skipped={"xoxoday": len(set(done_points)), "capillary": len(set(done_earns))},
        warehouse=warehouse,
        reversed_order=point_orders[points.index(reversed_id)],
    )


@pytest.fixture(scope="module")
def browser_context(server: Server) -> Iterator[object]:
    """One logged-in browser context (through Airflow's own login form) for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1400})
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto(f"{server.url}/loyalty/reversals")  # anonymous: the app's own 401 page
        assert "Not authenticated" in page.content()
        page.goto(f"{server.url}/")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(server.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/")
        page.close()
        yield context
        context.close()
        browser.close()


@pytest.fixture
def page(browser_context: object) -> Iterator[object]:
    page = browser_context.new_page()  # type: ignore[attr-defined]
    yield page
    page.close()


def open_add_connection(page, server: Server, type_text: str, type_name: str):
    page.goto(f"{server.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox", name="Connection Type").fill(type_text)
    page.get_by_role("option", name=type_name, exact=True).click()
    return dialog


def label_texts(dialog) -> list[str]:
    return [" ".join(label.inner_text().replace("*", "").split()) for label in dialog.locator("label").all()]


def test_xoxoday_connection_form_shows_relabelled_and_masked_fields(page, server: Server) -> None:
    dialog = open_add_connection(page, server, "xoxo", "Xoxoday Plum")
    labels = label_texts(dialog)
    assert {"Base URL", "Client ID", "Client Secret"} <= set(labels)
    assert not {"Host", "Login", "Password", "Schema", "Port"} & set(labels)
    assert dialog.get_by_label("Client Secret").get_attribute("type") == "password"
    assert dialog.get_by_label("Client ID").get_attribute("type") == "text"
    assert "stagingstores.xoxoday.com" in dialog.get_by_label("Base URL").get_attribute("placeholder")
    dialog.get_by_label("Client Secret").fill("typed-secret")
    assert dialog.get_by_label("Client Secret").get_attribute("type") == "password"  # still masked
    page.screenshot(path=str(ARTIFACTS / "connection-xoxoday.png"))
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    assert {"Access token", "Refresh token", "API path", "Token refresh path"} <= set(label_texts(dialog))
    for name in ("access_token", "refresh_token"):
        field = dialog.locator(f"#element_{name}")
        field.fill(f"typed-{name}")
        assert field.get_attribute("type") == "password", name
    assert dialog.locator("#element_api_path").input_value() == "/chef/v1/oauth/api"
    page.screenshot(path=str(ARTIFACTS / "connection-xoxoday-extra.png"))


def test_form_defaults_are_shown_unredacted(server: Server) -> None:
    """What the Add Connection form pre-fills comes from /ui/connections/hook_meta.

    Airflow redacts values of extra fields whose names look secret (``token`` in ``token_path``
    once showed as ``***`` and would have been saved so): no non-secret field may be named so.
    """
    request = urllib.request.Request(
        f"{server.url}/ui/connections/hook_meta", headers={"Authorization": f"Bearer {api_token(server)}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        meta = {hook["connection_type"]: hook for hook in json.loads(response.read())}
    prefilled = {
        (conn_type, name): field["value"]
        for conn_type in ("xoxoday", "capillary")
        for name, field in meta[conn_type]["extra_fields"].items()
        if field["schema"].get("default") is not None
    }
    assert prefilled == {
        ("xoxoday", "api_path"): "/chef/v1/oauth/api",
        ("xoxoday", "refresh_path"): "/chef/v1/oauth/token/company",
        ("capillary", "auth_type"): "basic",
    }


def test_capillary_connection_form_shows_relabelled_fields_and_auth_type(page, server: Server) -> None:
    dialog = open_add_connection(page, server, "capil", "Capillary")
    labels = label_texts(dialog)
    assert {"Cluster base URL", "Till ID or OAuth client key", "Till password or OAuth client secret"} <= set(labels)
    assert not {"Host", "Login", "Password", "Schema", "Port"} & set(labels)
    assert dialog.get_by_label("Till password or OAuth client secret").get_attribute("type") == "password"
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    assert "Auth type" in label_texts(dialog)
    auth_type = dialog.get_by_role("group").filter(has_text="Auth type")
    assert "basic" in auth_type.inner_text()
    auth_type.get_by_role("combobox").click()
    options = [o.inner_text() for o in page.get_by_role("option").all()]
    assert options == ["basic", "oauth"], options
    page.screenshot(path=str(ARTIFACTS / "connection-capillary.png"))
    page.get_by_role("option", name="oauth", exact=True).click()
    assert "oauth" in auth_type.inner_text()


def search(frame, text: str) -> None:
    """Search from the page's form and wait for the answer page."""
    frame.locator("#q").fill(text)
    frame.locator("#search").click()
    frame.locator("#items h2 q", has_text=text).wait_for()


def test_reversals_page_in_the_ui_shows_the_run_and_finds_an_id(page, server: Server) -> None:
    page.goto(f"{server.url}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Reversals").click()
    frame = page.frame_locator("iframe[title='Reversals']")
    frame.locator("h1").wait_for()
    assert page.url.startswith(f"{server.url}/plugin/reversals")

    day = server.run_day.isoformat()
    for vendor in ("xoxoday", "capillary"):
        row = frame.locator(f"#daily tr[data-day='{day}'][data-vendor='{vendor}']")
        cells = row.locator("td").all_inner_texts()

        def cell(field: str, row=row) -> int:
            return int(row.locator(f"td[data-field='{field}']").inner_text().replace(",", ""))

        succeeded, permanent, skipped = cell("succeeded"), cell("refused"), cell("skipped")
        assert succeeded > 0 and skipped == server.skipped[vendor], (vendor, cells)
        if vendor == "capillary":
            assert permanent > 0
    assert frame.locator("svg.chart g.day").count() == 30
    assert frame.locator("#failures").get_by_text("Earn already redeemed").count() >= 1
    assert frame.locator("#runs a.run-link", has_text=server.run_id).count() == 1
    page.screenshot(path=str(ARTIFACTS / "reversals.png"))

    search(frame, str(server.reversed_id))
    item = frame.locator("#items tr.item").first
    assert frame.locator("#items tr.item").count() == 1
    assert "Yes" in item.locator("td").nth(2).inner_text()
    assert item.get_attribute("data-item-key") == str(server.reversed_id)
    page.screenshot(path=str(ARTIFACTS / "reversals-search.png"))

    search(frame, server.refused_earn)
    refused = frame.locator("#items tr.item").first
    assert "No" in refused.locator("td").nth(2).inner_text() and "729" in refused.inner_text()

    search(frame, str(server.reversed_id))
    frame.locator("#items a.run-link").first.click()  # opens the run in the Airflow UI itself
    run_path = f"/dags/{DAG_ID}/runs/{quote(server.run_id, safe='')}"
    page.wait_for_url(f"{server.url}{run_path}")
    page.get_by_text("cancel_points").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "dag-run.png"))


def api_token(server: Server, user: str = USER) -> str:
    """A JWT from the api-server's token endpoint, as a script would get one."""
    password = server.password if user == USER else server.partner_password
    login = urllib.request.Request(
        f"{server.url}/auth/token",
        data=json.dumps({"username": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=10) as response:
        return str(json.loads(response.read())["access_token"])


def test_reversals_page_shows_who_approved_the_run_and_finds_it_by_approver(page, server: Server) -> None:
    """The run was approved by ``admin`` in the api-server (above the threshold of 10 items)."""
    page.goto(f"{server.url}/loyalty/reversals")
    run = page.locator("#runs tr", has=page.locator("a.run-link", has_text=server.run_id))
    receipts = run.locator(".approval").all_inner_texts()
    assert len(receipts) == 2, receipts
    for text in receipts:
        assert re.fullmatch(
            r"(xoxoday|capillary): approved by admin \(admin\) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d · [\d,]+ planned / [\d,]+ sent",
            " ".join(text.split()),
        ), text
    page.screenshot(path=str(ARTIFACTS / "reversals-approval.png"))
    search(page, "admin")
    assert page.locator("#items tr.item").count() > 0
    # every item this run sent carries the receipt: the search by approver finds them all
    request = urllib.request.Request(
        f"{server.url}/loyalty/api/items?q=admin", headers={"Authorization": f"Bearer {api_token(server)}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        found = json.loads(response.read())
    sent = sum(int(n) for n in re.findall(r"/ ([\d,]+) sent", " ".join(receipts)))
    assert found["total"] == sent > 0


def test_api_of_the_real_server_needs_a_login_and_counts_skips(server: Server) -> None:
    for path in ("/loyalty/api/summary", "/loyalty/reversals", "/loyalty/api/items?q=1"):
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{server.url}{path}", timeout=10)
        assert anonymous.value.code == 401, path
    token = api_token(server)
    request = urllib.request.Request(f"{server.url}/loyalty/api/summary", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        summary = json.loads(response.read())
    days = {(d["day"], d["vendor"]): d for d in summary["daily"]}
    for vendor, skipped in server.skipped.items():
        assert days[(server.run_day.isoformat(), vendor)]["skipped"] == skipped  # from the tasks' summary XComs
    run = next(r for r in summary["runs"] if r["run_id"] == server.run_id)
    assert run["dag_id"] == DAG_ID and run["run_url"] == f"/dags/{DAG_ID}/runs/{quote(server.run_id, safe='')}"
    assert summary["ledger"] == {"conn_id": "loyalty_warehouse", "table": "loyalty_reversal_ledger"}
    assert str(server.home) not in json.dumps(summary)  # the ledger's path is a connection detail


def test_failure_code_filters_items_and_items_export_as_csv(page, server: Server) -> None:
    page.goto(f"{server.url}/loyalty/reversals")
    page.locator("#failures tr[data-vendor='capillary'][data-code='729'] a.code-link").click()
    page.locator("#code-filter", has_text="729").wait_for()
    rows = page.locator("#items tr.item")
    assert rows.count() > 0
    for text in rows.all_inner_texts():
        assert "729" in text and "failed permanent 729" in " ".join(text.split()), text
    with page.expect_download() as download:
        page.locator("#csv-items").click()
    exported = Path(download.value.path()).read_text()
    assert exported.splitlines()[0].startswith("vendor,item_key,")
    assert len(exported.splitlines()) - 1 == rows.count() or rows.count() == 25
    assert all(",729," in line for line in exported.splitlines()[1:])


def test_a_user_allowed_one_dag_sees_only_its_rows(browser_context, server: Server) -> None:
    """``partner`` logs in through the login form and sees the run of ``loyalty_ui_reversals`` only."""
    context = browser_context.browser.new_context(viewport={"width": 1440, "height": 1400})  # its own cookies
    try:
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto(f"{server.url}/")
        page.get_by_label("Username").fill(PARTNER)
        page.get_by_label("Password").fill(server.partner_password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/")
        page.goto(f"{server.url}/loyalty/reversals")
        page.locator("h1").wait_for()
        runs = page.locator("#runs a.run-link").all_inner_texts()
        assert runs == [server.run_id], runs
        assert seed.DAG_ID not in page.content() and seed.OTHER_DAG_ID not in page.content()
        page.screenshot(path=str(ARTIFACTS / "reversals-one-dag.png"))
        search(page, "1001")  # the seeded history's item, another DAG's
        assert page.locator("#no-match").count() == 1
        search(page, str(server.reversed_id))
        assert page.locator("#items tr.item").count() == 1
    finally:
        context.close()

    token = api_token(server, PARTNER)
    request = urllib.request.Request(f"{server.url}/loyalty/api/summary", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        summary = json.loads(response.read())
    assert {r["dag_id"] for r in summary["runs"]} == {DAG_ID}
    for vendor, skipped in server.skipped.items():
        total = next(t for t in summary["totals"] if t["vendor"] == vendor)
        assert total["skipped"] == skipped  # the run's own summaries (the seeded history has none)


def test_an_order_reference_says_whether_when_and_by_which_run(page, server: Server) -> None:
    """The issue's "done when": one search of an order reference answers the question."""
    page.goto(f"{server.url}/loyalty/reversals")
    search(page, server.reversed_order)
    (row,) = page.locator("#items tr.item").all()
    assert row.get_attribute("data-item-key") == str(server.reversed_id)
    answer = " ".join(row.locator("td.answer").inner_text().split())
    assert answer.startswith("Yes") and server.run_id in answer, answer
    assert server.reversed_order in row.locator("td.ids").inner_text()
    search(page, server.reversed_order[:-2])  # by prefix: the order and its neighbours
    assert page.locator("#items tr.item").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "reversals-reference.png"))
    # a long run id stays on one line in the runs table
    link = page.locator("#runs a.run-link", has_text=server.run_id)
    box = link.bounding_box()
    assert box is not None and box["height"] < 24, box


def test_an_invalid_input_value_is_found_and_explained(page, server: Server) -> None:
    page.goto(f"{server.url}/loyalty/reversals")
    search(page, "abc")
    (row,) = page.locator("#items tr.item").all()
    assert row.get_attribute("data-state") == "invalid"
    answer = " ".join(row.locator("td.answer").inner_text().split())
    assert "Invalid input" in answer and "not an integer" in answer and "never sent" in answer, answer
    assert page.locator("#no-match").count() == 0


def _totals(page, vendor: str = "xoxoday") -> dict[str, int]:
    box = page.locator(f"#chart-section .total[data-vendor='{vendor}']")
    fields = ("succeeded", "refused", "invalid", "in_doubt", "not_sent", "failed", "settled_after_retry")
    return {f: int(box.locator(f"[data-field='{f}']").inner_text().replace(",", "")) for f in fields}


def test_still_failing_after_a_429_stopped_try_then_settled_by_its_retry(page, server: Server) -> None:
    import duckdb

    url = f"{server.url}/loyalty/reversals?q={seed.RETRY_RUN}"
    page.goto(url)
    assert _totals(page) == {
        "succeeded": 1, "refused": 0, "invalid": 1, "in_doubt": 0, "not_sent": 2, "failed": 1, "settled_after_retry": 0,
    }  # fmt: skip
    run = page.locator(f"#runs tr[data-run-id='{seed.RETRY_RUN}']")
    assert run.locator("[data-field='failed']").inner_text() == "1"
    assert run.locator("[data-field='not_sent']").inner_text() == "2"
    page.screenshot(path=str(ARTIFACTS / "reversals-stopped-by-429.png"))

    later = [r for r in seed.retry_history(retried=True) if r.try_number == 2]  # the second try's rows
    names = columns()  # the ledger's columns (a row's identity values sit in its ``ids``)
    marks = ", ".join(["?"] * len(names))
    with duckdb.connect(str(server.warehouse)) as db:  # the page opens the file per request, read-only
        db.executemany(
            f"INSERT INTO loyalty_reversal_ledger ({', '.join(names)}) VALUES ({marks})",
            [r.values(names) for r in later],
        )
    page.goto(url)
    assert _totals(page) == {
        "succeeded": 4, "refused": 0, "invalid": 1, "in_doubt": 0, "not_sent": 0, "failed": 0, "settled_after_retry": 3,
    }  # fmt: skip
    page.screenshot(path=str(ARTIFACTS / "reversals-retried.png"))


def test_the_code_filter_narrows_every_section(page, server: Server) -> None:
    page.goto(f"{server.url}/loyalty/reversals")
    page.locator("#failures tr[data-vendor='capillary'][data-code='729'] a.code-link").click()
    page.locator("#code-filter", has_text="729").wait_for()
    assert page.locator("#failures tbody tr").count() == 1  # only 729
    items = page.locator("#items tr.item").count()
    totals = _totals(page, "capillary")
    assert totals["refused"] == items and totals["succeeded"] == 0, (totals, items)
    assert page.locator("#chart-section .total[data-vendor='xoxoday']").count() == 0
    daily = sum(int(c.inner_text()) for c in page.locator("#daily td[data-field='refused']").all())
    runs = sum(int(c.inner_text()) for c in page.locator("#runs td[data-field='refused']").all())
    assert daily == items and runs >= items
    page.screenshot(path=str(ARTIFACTS / "reversals-code-filter.png"))
