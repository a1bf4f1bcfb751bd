"""The example DAGs parse cleanly, cheaply, and use the public operators as documented."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from tests.conftest import REPO

EXAMPLES = pathlib.Path(REPO) / "example_dags"


def test_example_dags_import_without_errors(monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"loyalty_daily_reversals", "loyalty_reversals_fanout"}
    daily = bag.dags["loyalty_daily_reversals"]
    assert {t.task_id for t in daily.tasks} >= {"extract_points", "extract_earns", "cancel_points", "revoke_earns"}
    assert daily.get_task("cancel_points").ledger_conn_id == "loyalty_warehouse"
    fanout = bag.dags["loyalty_reversals_fanout"]
    assert fanout.get_task("revoke_earns").pool == "loyalty_capillary"


def test_a_fanout_run_without_a_logical_date_extracts_up_to_the_day_it_runs(monkeypatch) -> None:
    """Airflow 3's manual runs may have no logical date (no ``ds``): the shards still name a day."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    shard_queries = DagBag(dag_folder=str(EXAMPLES)).dags["loyalty_reversals_fanout"].get_task("points_shards")
    run = SimpleNamespace(run_after=datetime(2026, 12, 8, 0, 30, tzinfo=timezone.utc))
    template = "date <= '{ds}' AND id % {shards} = {shard}"
    undated = shard_queries.python_callable(template, params={"shards": 2}, ds=None, dag_run=run)
    assert undated == ["date <= '2026-12-08' AND id % 2 = 0", "date <= '2026-12-08' AND id % 2 = 1"]
    dated = shard_queries.python_callable(template, params={"shards": 1}, ds="2026-12-01", dag_run=run)
    assert dated == ["date <= '2026-12-01' AND id % 1 = 0"]  # a logical date's day wins


def test_example_folder_is_the_packaged_one() -> None:
    """The repo's example_dags/ is the package's folder Airflow loads as the provider's example bundle."""
    import airflow_provider_loyalty

    packaged = pathlib.Path(airflow_provider_loyalty.__file__).parent / "example_dags"
    assert EXAMPLES.resolve() == packaged.resolve()


def test_dag_files_do_no_io_and_import_nothing_heavy_at_parse_time() -> None:
    """Parsing an example DAG must not import requests, pydantic models, duckdb or open sockets."""
    code = (
        "import sys, runpy, socket\n"
        "socket.socket.connect = lambda *a, **k: (_ for _ in ()).throw(AssertionError('network at parse time'))\n"
        f"runpy.run_path({str(EXAMPLES / 'loyalty_daily_reversals.py')!r})\n"
        f"runpy.run_path({str(EXAMPLES / 'loyalty_reversals_fanout.py')!r})\n"
        "heavy = [m for m in ('duckdb', 'airflow_provider_loyalty.models', 'airflow_provider_loyalty.hooks.xoxoday',"
        " 'airflow_provider_loyalty.hooks.capillary') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_airflow_loads_the_packaged_examples_as_the_providers_example_bundle(tmp_path) -> None:
    """With [core] load_examples on, Airflow finds airflow_provider_loyalty/example_dags as a bundle."""
    code = (
        "from airflow.dag_processing.bundles.manager import DagBundlesManager\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bundle = DagBundlesManager().get_bundle('airflow-provider-loyalty-example-dags')\n"
        "bag = DagBag(dag_folder=str(bundle.path))\n"
        "assert bag.import_errors == {}, bag.import_errors\n"
        "print(sorted(bag.dag_ids))\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "True", "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['loyalty_daily_reversals', 'loyalty_reversals_fanout']" in result.stdout
