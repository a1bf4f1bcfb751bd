"""The fan-out example with a shared rate budget: ``dag.test()`` of the real DAG, the budget in a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from tests.conftest import set_connection
from tests.e2e.test_dag_runs import load_dag, xcom

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from airflow_provider_loyalty import sandbox as sb

    dataset = sb.generate_dataset(seed=7, points=60, earns=80, big_customer_earns=0, customers=12)
    with sb.Sandbox(sb.SandboxConfig(), dataset) as server:
        for name, value in sb.connection_env(server.url).items():
            monkeypatch.setenv(name, value)
        server.dataset = dataset  # type: ignore[attr-defined]
        yield server


def test_fanout_tasks_take_their_slots_from_the_keys_budget(vendor, redis_url, monkeypatch, tmp_path) -> None:
    import redis

    from airflow_provider_loyalty.coordination.budget import REDIS_PREFIX
    from airflow_provider_loyalty.sandbox import write_duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    write_duckdb(warehouse, vendor.dataset, datetime.now(timezone.utc).date())
    for conn_id in ("loyalty_warehouse", "loyalty_ledger"):
        set_connection(monkeypatch, conn_id, conn_type="duckdb", host=str(warehouse))
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    db = 5
    set_connection(monkeypatch, "loyalty_rate_budget", conn_type="redis", host=host, port=int(port), extra={"db": db})
    client = redis.Redis(host=host, port=int(port), db=db)
    client.flushdb()
    conf = {"shards": 3, "max_failed_ratio": 0.5}  # the DAG's default: the budget in loyalty_rate_budget
    run = load_dag("loyalty_reversals_fanout").test(run_conf=conf)
    assert run.state == "success"
    expected = vendor.dataset.expected()
    totals = xcom(run, "totals")
    assert totals["points"]["succeeded"] == expected["points"]["cancelled"]
    assert totals["earns"]["succeeded"] == expected["earns"]["revoked"]
    stats = vendor.stats()
    budgets = {key.decode(): client.hgetall(key) for key in client.keys(f"{REDIS_PREFIX}*") if b":learned" not in key}
    by_vendor = {name.removeprefix(REDIS_PREFIX).split(":")[0]: fields for name, fields in budgets.items()}
    assert set(by_vendor) == {"xoxoday", "capillary"}  # one key per vendor, shared by its 3 mapped tasks
    for name in ("xoxoday", "capillary"):
        # every request any of the mapped tasks sent took its slot from the key's budget
        assert int(by_vendor[name][b"reserved"]) == stats[name]["requests"], name
