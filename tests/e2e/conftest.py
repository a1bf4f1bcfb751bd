"""End-to-end fixtures: a migrated Airflow metadata DB, the sandbox in-process, connections to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import set_connection


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


@pytest.fixture
def vendor(monkeypatch) -> Iterator[object]:
    """A fresh sandbox with a small deterministic dataset, and connections pointing at it."""
    from airflow_provider_loyalty import sandbox as sb

    dataset = sb.generate_dataset(seed=7, points=60, earns=80, big_customer_earns=0, customers=12)
    with sb.Sandbox(sb.SandboxConfig(), dataset) as server:
        set_connection(
            monkeypatch,
            "xoxoday_default",
            conn_type="xoxoday",
            host=server.url,
            login=sb.XOXODAY_CLIENT_ID,
            password=sb.XOXODAY_CLIENT_SECRET,
            extra={"access_token": sb.XOXODAY_ACCESS_TOKEN, "refresh_token": sb.XOXODAY_REFRESH_TOKEN},
        )
        set_connection(
            monkeypatch,
            "capillary_default",
            conn_type="capillary",
            host=server.url,
            login=sb.CAPILLARY_TILL,
            password=sb.CAPILLARY_PASSWORD,
        )
        server.dataset = dataset  # type: ignore[attr-defined]
        yield server


def run_conf(dataset: object, points: int | None = None, earns: int | None = None) -> dict:
    unique_ids = [uid for uid, _ in dataset.point_reversals][:points]  # type: ignore[attr-defined]
    earn_rows = [[c, p, e] for c, p, e, _ in dataset.earn_reversals][:earns]  # type: ignore[attr-defined]
    return json.loads(json.dumps({"unique_ids": unique_ids, "earns": earn_rows}))
