"""End-to-end fixtures: the sandbox in-process and connections to it (the migrated DB is in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest


@pytest.fixture
def vendor(monkeypatch) -> Iterator[object]:
    """A fresh sandbox with a small deterministic dataset, and connections pointing at it."""
    from airflow_provider_loyalty import sandbox as sb

    dataset = sb.generate_dataset(seed=7, points=60, earns=80, big_customer_earns=0, customers=12)
    with sb.Sandbox(sb.SandboxConfig(), dataset) as server:
        for name, value in sb.connection_env(server.url).items():
            monkeypatch.setenv(name, value)
        server.dataset = dataset  # type: ignore[attr-defined]
        yield server


def run_conf(dataset: object, points: int | None = None, earns: int | None = None) -> dict:
    unique_ids = [uid for uid, _ in dataset.point_reversals][:points]  # type: ignore[attr-defined]
    earn_rows = [[c, p, e] for c, p, e, _ in dataset.earn_reversals][:earns]  # type: ignore[attr-defined]
    return json.loads(json.dumps({"unique_ids": unique_ids, "earns": earn_rows}))
