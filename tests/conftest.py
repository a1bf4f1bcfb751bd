"""Shared fixtures: connections as AIRFLOW_CONN_* JSON, a fake clock, a sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An Airflow home of the test suite's own (Makefile sets the same), before anything imports airflow.
os.environ.setdefault("AIRFLOW_HOME", os.path.join(REPO, ".airflow", "test"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# End-to-end DAG runs use test DAGs plus links to the example DAGs (dag.test() needs them in the bundle).
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(REPO, "tests", "e2e", "dags"))

XOXODAY_URL = "https://xoxo.test"
CAPILLARY_URL = "https://cap.test"


class FakeClock:
    """Advances only when slept on; records every sleep."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_750_000_000.0) -> None:
        self.now = start
        self.wall_offset = wall - start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self.wall_offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    extra = fields.pop("extra", None)
    payload = dict(fields)
    if extra is not None:
        payload["extra"] = json.dumps(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(payload))


@pytest.fixture
def xoxoday_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(
        monkeypatch,
        "xoxoday_default",
        conn_type="xoxoday",
        host=XOXODAY_URL,
        login="client-id-1",
        password="client-secret-XYZ",
        extra={"access_token": "access-AAA", "refresh_token": "refresh-RRR"},
    )
    return "xoxoday_default"


@pytest.fixture
def capillary_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(
        monkeypatch,
        "capillary_default",
        conn_type="capillary",
        host=CAPILLARY_URL,
        login="till.one",
        password="till-password-PWD",
    )
    return "capillary_default"


@pytest.fixture
def capillary_oauth_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(
        monkeypatch,
        "capillary_oauth",
        conn_type="capillary",
        host=CAPILLARY_URL,
        login="oauth-key",
        password="oauth-secret-SSS",
        extra={"auth_type": "oauth"},
    )
    return "capillary_oauth"


@pytest.fixture
def sandbox() -> Iterator[object]:
    from airflow_provider_loyalty.sandbox import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig()) as sb:
        yield sb


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the test AIRFLOW_HOME's metadata DB once (idempotent, ~5 s the first time)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="session", autouse=True)
def _no_stored_xoxoday_pairs() -> None:
    """Start from the connection's tokens: forget pairs a previous test session stored in the metadata DB."""
    try:
        from airflow.models.variable import Variable

        for conn_id in ("xoxoday_default",):
            Variable.delete(f"loyalty_xoxoday_token__{conn_id}")
    except Exception:  # noqa: BLE001, S110 - no metadata DB yet: nothing stored
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``LOYALTY_TEST_SHARD=k/n`` keep the files of shard k (``scripts/run_tests.py`` runs the n at once)."""
    from tests import _shards

    shard = _shards.current()
    if shard is None:
        return
    k, n = shard

    def file_of(item: pytest.Item) -> str:
        return os.path.relpath(str(item.path), REPO)

    placed = _shards.assign(
        _shards.file_weights(
            [
                (
                    file_of(item),
                    item.get_closest_marker("e2e") is not None or item.get_closest_marker("browser") is not None,
                )
                for item in items
            ]
        ),
        n,
    )
    keep = [item for item in items if placed[file_of(item)] == k]
    dropped = [item for item in items if placed[file_of(item)] != k]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
