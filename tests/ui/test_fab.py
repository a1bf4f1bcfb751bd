"""The Reversals page under the FAB auth manager, on a real api-server.

A session fixture builds a throw-away Airflow home of its own (SQLite metadata DB, ``[core]
auth_manager = FabAuthManager``; the other UI tests keep the simple auth manager of the test home):
``airflow db migrate`` and ``airflow fab-db migrate``, two DAGs known to Airflow (the seeded ledger's)
with their per-DAG permissions as the DAG processor creates them, roles and users with passwords,
a seeded DuckDB ledger; then ``airflow api-server`` on a free loopback port. Tokens come from FAB's
``POST /auth/token``, as a script would get them.

Users: one per default role (Viewer, User, Op, Admin), ``norole`` (no role at all), ``empty`` (a role
with no permission), ``onedag`` (a role with ``can read`` on ``DAG:<OTHER_DAG_ID>`` and ``DAG
Runs`` only) and ``revoked`` (a Viewer-like role the page is granted, then taken from). The page is granted the documented way: ``airflow roles add-perms <roles> -r "Loyalty
Reversals" -a can_read``, once the api-server has created that resource.

Skips without ``apache-airflow-providers-fab``, unless ``LOYALTY_REQUIRE_FAB`` is set (CI).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ui import seed

pytestmark = pytest.mark.e2e  # a real api-server (about 50 s)

HERE = Path(__file__).parent
REPO = HERE.parents[1]
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
RESOURCE = "Loyalty Reversals"
TABLE = "loyalty_reversal_ledger"
ONE_DAG_ROLE = "OneDag"
#: Like Viewer; the revoking test takes the page away from it.
REVOKED_ROLE = "Revoked"
EMPTY_ROLE = "Empty"
#: username -> roles
USERS = {
    "viewer": ["Viewer"],
    "user": ["User"],
    "op": ["Op"],
    "admin": ["Admin"],
    "norole": [],
    "empty": [EMPTY_ROLE],
    "onedag": [ONE_DAG_ROLE],
    "revoked": [REVOKED_ROLE],
}
DATA_ROUTES = [
    "/loyalty/",
    "/loyalty/reversals",
    "/loyalty/reversals?q=1001",
    "/loyalty/api/summary",
    "/loyalty/api/items",
    "/loyalty/api/items?q=1001",
    "/loyalty/api/items.csv",
]
ONE_DAG_ITEMS = ["4001", "4002", "501/P-9/E-9", "503/P-5/E-20"]
ALL_ITEMS = 53

#: Run in the FAB home before the api-server starts: what the DAG processor and an admin's role
#: set-up would have done (DAGs known to Airflow, their per-DAG permissions, roles, users).
SETUP = r"""
import json, sys

from airflow.models.dag import DagModel
from airflow.models.dagbundle import DagBundleModel
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
from airflow.utils.session import create_session

spec = json.loads(sys.argv[1])
with create_session() as session:
    session.add(DagBundleModel(name="loyalty-fab-tests"))
    session.flush()
    for dag_id in spec["dags"]:
        session.add(DagModel(dag_id=dag_id, bundle_name="loyalty-fab-tests", fileloc=f"/fab-tests/{dag_id}.py"))
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    for dag_id in spec["dags"]:
        sm.sync_perm_for_dag(dag_id, None)  # as FabAuthManager.sync_dag_perms does for a parsed DAG
    for role, perms in spec["roles"].items():
        created = sm.add_role(role)
        for action, resource in perms:
            sm.add_permission_to_role(created, sm.get_permission(action, resource))
    for name, roles in spec["users"].items():
        user = sm.add_user(
            username=name, first_name=name, last_name="Tester", email=f"{name}@example.com",
            role=[sm.find_role(r) for r in roles], password=spec["password"],
        )
        assert user, name
print("ok")
"""


def require_fab() -> None:
    try:
        import airflow.providers.fab.auth_manager.fab_auth_manager  # noqa: F401
    except ImportError as missing:
        if os.environ.get("LOYALTY_REQUIRE_FAB"):
            pytest.fail(f"LOYALTY_REQUIRE_FAB is set but the FAB provider cannot be imported: {missing}")
        pytest.skip("apache-airflow-providers-fab is not installed (extra 'fab')")


@dataclass
class FabServer:
    url: str
    home: Path
    env: dict[str, str]
    password: str
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            status, body = request(
                self,
                "/auth/token",
                method="POST",
                data=json.dumps({"username": user, "password": self.password}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert status == 201, (user, status, body[:500])
            self.tokens[user] = str(json.loads(body)["access_token"])
        return self.tokens[user]

    def get(self, path: str, user: str | None = None, **headers: str) -> tuple[int, str]:
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        return request(self, path, headers=headers)

    def json(self, path: str, user: str) -> dict:
        status, body = self.get(path, user)
        assert status == 200, (path, user, status, body[:500])
        return dict(json.loads(body))

    def resource_holders(self) -> set[str]:
        """Roles holding ``can_read`` on the page's resource (``None`` in the set: the resource exists)."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            exists = db.execute("SELECT 1 FROM ab_view_menu WHERE name = ?", [RESOURCE]).fetchone()
            if not exists:
                return set()
            rows = db.execute(
                "SELECT r.name FROM ab_role r JOIN ab_permission_view_role pvr ON pvr.role_id = r.id "
                "JOIN ab_permission_view pv ON pv.id = pvr.permission_view_id "
                "JOIN ab_permission p ON p.id = pv.permission_id JOIN ab_view_menu v ON v.id = pv.view_menu_id "
                "WHERE v.name = ? AND p.name = 'can_read'",
                [RESOURCE],
            ).fetchall()
        return {"(resource)"} | {name for (name,) in rows}


def request(server: FabServer, path: str, *, method: str = "GET", data: bytes | None = None, headers=None):
    req = urllib.request.Request(f"{server.url}{path}", data=data, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def airflow(*args: str, env: dict[str, str], log: Path, timeout: float = 180) -> str:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    with log.open("w") as out:
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
    output = log.read_text()
    assert code == 0, f"airflow {' '.join(args)} failed:\n" + output[-4000:]
    return output


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


@pytest.fixture(scope="session")
def fab_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """The FAB Airflow home: migrated, with DAGs, roles, users and a seeded ledger (no server yet)."""
    require_fab()
    import duckdb

    home = tmp_path_factory.mktemp("airflow-fab-home")
    warehouse = home / "warehouse.duckdb"
    conn = duckdb.connect(str(warehouse))
    seed.write(conn, TABLE, seed.history().rows, "?")
    conn.close()
    password = secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__AUTH_MANAGER=FAB_AUTH_MANAGER,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(48),
        AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(32),
        # A permission change reaches a logged-in user after [fab] cache_ttl (30 s by default).
        AIRFLOW__FAB__CACHE_TTL="0",
        AIRFLOW__LOYALTY__LEDGER_CONN_ID="loyalty_warehouse",
        AIRFLOW__LOYALTY__LEDGER_TABLE=TABLE,
        AIRFLOW_CONN_LOYALTY_WAREHOUSE=json.dumps({"conn_type": "duckdb", "host": str(warehouse)}),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
    )
    (home / "dags").mkdir()
    airflow("db", "migrate", env=env, log=home / "migrate.log")
    airflow("fab-db", "migrate", env=env, log=home / "fab-migrate.log")
    spec = {
        "dags": [seed.DAG_ID, seed.OTHER_DAG_ID],
        "roles": {
            EMPTY_ROLE: [],
            ONE_DAG_ROLE: [["can_read", f"DAG:{seed.OTHER_DAG_ID}"], ["can_read", "DAG Runs"]],
            REVOKED_ROLE: [["can_read", "DAGs"], ["can_read", "DAG Runs"]],
        },
        "users": USERS,
        "password": password,
    }
    result = subprocess.run(
        [sys.executable, "-c", SETUP, json.dumps(spec)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    return home, env, password


@pytest.fixture(scope="session")
def fab_server(fab_home: tuple[Path, dict[str, str], str]) -> Iterator[FabServer]:
    """``airflow api-server`` of the FAB home, the page not granted to any role yet."""
    home, env, password = fab_home
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
        wait_healthy(url, process, log)
        yield FabServer(url=url, home=home, env=env, password=password)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def granted(fab_server: FabServer) -> FabServer:
    """The documented grant: the page to Viewer, User, Op and the one-DAG role (Admin has it already)."""
    server = fab_server
    # Any request under /loyalty builds the page's app, which creates the resource for FAB (the UI's
    # menu fetches the icon on every page load, so this happens as soon as someone opens Airflow).
    assert server.get("/loyalty/static/reversals-icon.svg", "viewer")[0] == 200
    assert server.resource_holders() == {"(resource)", "Admin"}
    assert server.get("/loyalty/api/summary", "viewer")[0] == 403  # not granted yet
    output = airflow(
        "roles",
        "add-perms",
        "Viewer",
        "User",
        "Op",
        ONE_DAG_ROLE,
        REVOKED_ROLE,
        "-r",
        RESOURCE,
        "-a",
        "can_read",
        env=server.env,
        log=server.home / "add-perms.log",
    )
    assert "Added 5 permission(s)" in output, output
    return server


def test_the_resource_is_created_by_the_api_server_and_admin_has_it(fab_server: FabServer) -> None:
    holders = fab_server.resource_holders()
    if not holders:  # this test ran first: the page's first request creates it
        assert fab_server.get("/loyalty/static/reversals-icon.svg", "admin")[0] == 200
        holders = fab_server.resource_holders()
    assert {"(resource)", "Admin"} <= holders
    # By hand (e.g. with [fab] update_fab_perms off): idempotent.
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_loyalty.ui.fab"],
        env=fab_server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and f"Already there: can_read on '{RESOURCE}'" in done.stdout, done.stderr[-2000:]
    assert fab_server.json("/loyalty/api/items", "admin")["total"] == ALL_ITEMS


def test_the_fab_token_endpoint_refuses_a_wrong_password(fab_server: FabServer) -> None:
    status, _ = request(
        fab_server,
        "/auth/token",
        method="POST",
        data=json.dumps({"username": "admin", "password": "wrong"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 401


@pytest.mark.parametrize("route", DATA_ROUTES)
def test_anonymous_gets_401(granted: FabServer, route: str) -> None:
    status, body = granted.get(route)
    assert status == 401, (route, body[:300])
    assert "1001" not in body and "Transaction not found" not in body


@pytest.mark.parametrize("user", ["norole", "empty"])
def test_no_role_or_a_role_without_permissions_gets_403_everywhere(granted: FabServer, user: str) -> None:
    for route in DATA_ROUTES:
        status, body = granted.get(route, user)
        assert status == 403, (user, route, status, body[:300])
        assert "1001" not in body and "Transaction not found" not in body
    # Airflow's own API refuses them too.
    assert granted.get("/api/v2/dags", user)[0] == 403
    # The assets hold no ledger data: any logged-in user may load them (the menu shows the icon).
    assert granted.get("/loyalty/static/reversals-icon.svg", user)[0] == 200


@pytest.mark.parametrize("user", ["viewer", "user", "op", "admin"])
def test_every_default_role_granted_the_page_sees_every_row(granted: FabServer, user: str) -> None:
    assert granted.json("/loyalty/api/items", user)["total"] == ALL_ITEMS
    summary = granted.json("/loyalty/api/summary", user)
    assert {r["dag_id"] for r in summary["runs"]} == {seed.DAG_ID, seed.OTHER_DAG_ID}
    status, page = granted.get("/loyalty/reversals", user)
    assert status == 200 and seed.DAG_ID in page and seed.OTHER_DAG_ID in page
    assert granted.json("/loyalty/api/items?q=1001", user)["total"] == 1
    status, exported = granted.get("/loyalty/api/items.csv?days=366", user)
    assert status == 200 and len(exported.splitlines()) - 1 >= ALL_ITEMS - 5


def test_a_role_with_one_dag_sees_only_its_rows_everywhere(granted: FabServer) -> None:
    """``onedag``: ``can read`` on ``DAG:<OTHER_DAG_ID>`` and ``DAG Runs`` (FAB lets it list DAGs)."""
    user = "onedag"
    assert granted.get("/api/v2/dags", user)[0] == 200  # Airflow lets the role list (its) DAGs

    summary = granted.json("/loyalty/api/summary", user)
    assert {r["dag_id"] for r in summary["runs"]} == {seed.OTHER_DAG_ID}
    assert all(r["run_url"].startswith(f"/dags/{seed.OTHER_DAG_ID}/") for r in summary["runs"])
    totals = {t["vendor"]: t for t in summary["totals"]}
    assert (totals["xoxoday"]["succeeded"], totals["xoxoday"]["in_doubt"]) == (1, 1)
    assert (totals["capillary"]["refused"], totals["capillary"]["in_doubt"]) == (2, 0)
    assert [(f["code"], f["outcomes"]) for f in summary["top_failures"]] == [("729", 1), ("730", 1)]
    assert "Transaction not found" not in json.dumps(summary)

    listing = granted.json("/loyalty/api/items?days=366&limit=100", user)
    assert sorted(i["item_key"] for i in listing["items"]) == ONE_DAG_ITEMS and listing["total"] == 4
    for q in ("1001", "999", "5001", "E-10", seed.run_id_for(seed.history().today)):
        assert granted.json(f"/loyalty/api/items?q={q}", user)["total"] == 0, q
    (shared,) = granted.json("/loyalty/api/items?q=E-9", user)["items"]  # both DAGs sent it
    assert [a["dag_id"] for a in shared["attempts"]] == [seed.OTHER_DAG_ID] and shared["attempt_count"] == 1
    assert granted.json("/loyalty/api/items?q=501", user)["total"] == 1

    status, exported = granted.get("/loyalty/api/items.csv?days=366", user)
    assert status == 200
    assert sorted(line.split(",")[1] for line in exported.splitlines()[1:]) == ONE_DAG_ITEMS

    status, page = granted.get("/loyalty/reversals", user)
    assert status == 200 and seed.OTHER_DAG_ID in page and seed.DAG_ID not in page
    assert "Transaction not found" not in page
    status, found = granted.get("/loyalty/reversals?q=1001", user)
    assert status == 200 and "Transaction not found" not in found and seed.DAG_ID not in found


def test_revoking_the_page_takes_it_away(granted: FabServer) -> None:
    """``roles del-perms`` undoes the grant: the role keeps its DAG access, the page answers 403."""
    assert granted.json("/loyalty/api/items", "revoked")["total"] == ALL_ITEMS
    airflow(
        "roles",
        "del-perms",
        REVOKED_ROLE,
        "-r",
        RESOURCE,
        "-a",
        "can_read",
        env=granted.env,
        log=granted.home / "del-perms.log",
    )
    for route in DATA_ROUTES:
        assert granted.get(route, "revoked")[0] == 403, route
    assert granted.get("/api/v2/dags", "revoked")[0] == 200
