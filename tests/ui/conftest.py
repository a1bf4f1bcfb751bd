"""Fixtures of the Reversals page tests: a seeded ledger per backend, the app behind Airflow's auth."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import set_connection
from tests.ui import seed

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
BACKENDS = ["duckdb", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's Chromium against a real api-server (Playwright)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The test Airflow home's generated JWT secret is short, PyJWT says so on every token; Starlette
    # would like a test client on httpx2, which Airflow's pins do not have.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"))


@pytest.fixture(scope="session")
def airflow_metadata(airflow_db: None) -> None:
    """The test AIRFLOW_HOME's metadata DB, migrated (token checks read its revoked-token table)."""


@pytest.fixture(scope="session")
def auth_manager(airflow_metadata: None) -> object:
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()


def jwt_for(username: str, role: str | None) -> str:
    """A JWT of a simple-auth-manager user with ``role`` (``None``: no role, no permission at all)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))  # type: ignore[arg-type]


@pytest.fixture
def token(auth_manager: object) -> str:
    """A JWT of a plain *viewer*: the simple auth manager lets viewers read the page and every DAG."""
    return jwt_for("support", "viewer")


LIMITED_AUTH_MANAGER = "tests.ui.auth_manager.DagLimitedAuthManager"
#: The user of the limited auth manager who may read the other team's DAG only.
ONE_DAG_USER = "partner"


@pytest.fixture
def limited_auth_manager(auth_manager: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Airflow configured with :class:`tests.ui.auth_manager.DagLimitedAuthManager` (``partner``: one DAG).

    The DAGs are made known to the metadata DB (``get_authorized_dag_ids`` lists the DAGs Airflow
    knows), and removed afterwards.
    """
    from airflow.api_fastapi import app as api_app
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", LIMITED_AUTH_MANAGER)
    monkeypatch.setenv("AIRFLOW__LOYALTY_TESTS__DAG_ACCESS", f'{{"{ONE_DAG_USER}": ["{seed.OTHER_DAG_ID}"]}}')
    previous = api_app._AuthManagerState.instance
    api_app._AuthManagerState.instance = None
    limited = api_app.create_auth_manager()
    assert type(limited).__name__ == "DagLimitedAuthManager"
    dag_ids = sorted({seed.DAG_ID, seed.OTHER_DAG_ID})
    with create_session() as session:
        if session.get(DagBundleModel, UI_TEST_BUNDLE) is None:
            session.add(DagBundleModel(name=UI_TEST_BUNDLE))
            session.flush()
        for dag_id in dag_ids:
            if session.get(DagModel, dag_id) is None:
                session.add(DagModel(dag_id=dag_id, bundle_name=UI_TEST_BUNDLE, fileloc=f"/ui-tests/{dag_id}.py"))
    try:
        yield limited
    finally:
        api_app._AuthManagerState.instance = previous
        with create_session() as session:
            session.execute(delete(DagModel).where(DagModel.bundle_name == UI_TEST_BUNDLE))
            session.execute(delete(DagBundleModel).where(DagBundleModel.name == UI_TEST_BUNDLE))


UI_TEST_BUNDLE = "loyalty-ui-tests"


@dataclass
class Ledger:
    backend: str
    conn_id: str
    table: str
    seeded: seed.Seeded
    path: Path | None = None

    @property
    def today(self) -> date:
        return self.seeded.today


def _write(backend: str, path: Path | None, table: str, rows: list) -> None:
    if backend == "duckdb":
        import duckdb

        conn = duckdb.connect(str(path))
        seed.write(conn, table, rows, "?")
        conn.close()
    elif backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(str(path))
        seed.write(conn, table, rows, "?")
        conn.close()
    else:
        from airflow_provider_loyalty.ledger import ReversalLedger

        hook = ReversalLedger("ledger").hook
        conn = hook.get_conn()
        seed.write(conn, table, rows, hook.placeholder)
        conn.close()


def _drop_postgres(table: str) -> None:
    from airflow_provider_loyalty.ledger import ReversalLedger

    conn = ReversalLedger("ledger").hook.get_conn()
    cursor = conn.cursor()
    cursor.execute(f"DROP TABLE IF EXISTS {table}")
    conn.commit()
    conn.close()


@pytest.fixture(params=BACKENDS)
def ledger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Ledger]:
    """The seeded history in a fresh ledger table on the backend, set as the page's ledger."""
    backend = request.param
    table = f"ledger_{uuid.uuid4().hex[:10]}"
    path: Path | None = None
    if backend == "duckdb":
        path = tmp_path / "warehouse.duckdb"
        set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(path))
    elif backend == "sqlite":
        path = tmp_path / "warehouse.sqlite"
        set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(path))
    else:
        if not POSTGRES_URI:
            pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
        monkeypatch.setenv("AIRFLOW_CONN_LEDGER", POSTGRES_URI)
    history = seed.history()
    _write(backend, path, table, history.rows)
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_CONN_ID", "ledger")
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_TABLE", table)
    yield Ledger(backend, "ledger", table, history, path)
    if backend == "postgres":
        _drop_postgres(table)


@pytest.fixture
def duckdb_ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Ledger:
    """The seeded history on DuckDB only (for tests that are not about the backend)."""
    path = tmp_path / "warehouse.duckdb"
    set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(path))
    history = seed.history()
    _write("duckdb", path, "loyalty_reversal_ledger", history.rows)
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_CONN_ID", "ledger")
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_TABLE", "loyalty_reversal_ledger")
    return Ledger("duckdb", "ledger", "loyalty_reversal_ledger", history, path)


@pytest.fixture
def retry_ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[bool], Ledger]:
    """A DuckDB ledger holding :func:`seed.retry_history`: ``write(retried)`` (re)writes it, before or after the retry."""
    path = tmp_path / "retry.duckdb"
    set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(path))
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_CONN_ID", "ledger")
    monkeypatch.setenv("AIRFLOW__LOYALTY__LEDGER_TABLE", "loyalty_reversal_ledger")

    def write(retried: bool) -> Ledger:
        path.unlink(missing_ok=True)
        rows = seed.retry_history(retried=retried)
        _write("duckdb", path, "loyalty_reversal_ledger", rows)
        today = rows[0].recorded_at.date()  # UTC
        return Ledger("duckdb", "ledger", "loyalty_reversal_ledger", seed.Seeded(today=today, rows=rows), path)

    return write


SkippedFake = Callable[[datetime, "frozenset[str] | None"], dict[tuple[date, str], int]]


def fake_skipped(today: date) -> SkippedFake:
    """Skipped counts as the task summaries of ``seed.DAG_ID`` would give them (one outside a 30-day window)."""

    def source(since: datetime, dag_ids: frozenset[str] | None) -> dict[tuple[date, str], int]:
        if dag_ids is not None and seed.DAG_ID not in dag_ids:
            return {}
        return {
            (today, "xoxoday"): 7,
            (today - timedelta(days=1), "capillary"): 3,
            (today - timedelta(days=45), "xoxoday"): 100,
        }

    return source


@pytest.fixture
def make_client(auth_manager: object) -> Callable[..., object]:
    """A test client of an app like the api-server: the plugin's app mounted under /loyalty."""

    def make(*, skipped: SkippedFake | None = None, token: str | None = None):
        from fastapi import FastAPI
        from fastapi.testclient import TestClient

        from airflow_provider_loyalty.ui.app import create_app

        parent = FastAPI()
        parent.mount("/loyalty", create_app(skipped_source=skipped))
        client = TestClient(parent)
        if token:
            client.headers["Authorization"] = f"Bearer {token}"
        return client

    return make
