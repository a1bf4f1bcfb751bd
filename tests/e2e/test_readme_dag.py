"""The README's daily DAG runs as written: its code block, unchanged, against the sandbox and a DuckDB warehouse.

The block is taken from the README's "A daily DAG" section and written into a DAG folder of its
own, which ``airflow dags test`` (a real process, as a user runs it) reads as its bundle. The
sandbox's dataset is below the approval threshold, so the first test's runs take the gate's
``within_threshold`` branch; the second triggers with a lower ``approval_threshold``, and a person
(a thread answering through the Core API handler the Required Actions page calls) approves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, set_connection

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "my_daily_reversals"


def readme_dag() -> str:
    """The one Python block of the README's "A daily DAG" section."""
    readme = Path(REPO, "README.md").read_text()
    section = readme.split("\n## A daily DAG\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's daily DAG section should hold exactly one Python block"
    return blocks[0]


def test_the_readme_names_its_tables_and_dag() -> None:
    code = readme_dag()
    assert "loyalty_points_reversals" in code and "loyalty_earn_reversals" in code
    assert "not_done_predicate" in code  # the anti-join against the ledger
    assert "GATE.tasks(" in code and code.count("approval=GATE.receipt(") == 4  # plans and sends under the gate
    assert "@dag(" in code and "my_daily_reversals()" in code


def dags_test(conf: dict | None = None) -> tuple[str, dict[str, str], dict[str, object]]:
    """Run ``airflow dags test`` of the README's DAG; return its run id, task states and return values."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    result = subprocess.run(
        [AIRFLOW, "dags", "test", DAG_ID, *(["-c", json.dumps(conf)] if conf else [])],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).first()
        assert run is not None and run.state == "success", result.stdout[-3000:]
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
        values = {
            row.task_id: XComModel.deserialize_value(row)
            for row in session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=run.run_id, key="return_value")
        }
        return run.run_id, states, values


def readme_dag_folder(vendor, monkeypatch, tmp_path: Path) -> Path:
    """The README's DAG alone in a DAG folder, and a DuckDB warehouse seeded from the sandbox's dataset."""
    from airflow_provider_loyalty.sandbox import write_duckdb

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "my_daily_reversals.py").write_text(readme_dag())
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    warehouse = tmp_path / "warehouse.duckdb"
    write_duckdb(warehouse, vendor.dataset, datetime.now(timezone.utc).date())
    set_connection(monkeypatch, "loyalty_warehouse", conn_type="duckdb", host=str(warehouse))
    return warehouse


def test_readme_daily_dag_runs_as_written_and_a_rerun_sends_nothing(vendor, monkeypatch, tmp_path) -> None:
    warehouse = readme_dag_folder(vendor, monkeypatch, tmp_path)
    expected = vendor.dataset.expected()

    _, states, values = dags_test()
    assert states["approval.within_threshold"] == "success" and states["approval.approve"] == "skipped"
    points, earns = values["cancel_points"], values["revoke_earns"]
    assert (points["requested"], points["succeeded"], points["failed"]) == (
        expected["points"]["rows"],
        expected["points"]["cancelled"],
        expected["points"]["not_found"],
    )
    assert (earns["requested"], earns["succeeded"]) == (expected["earns"]["rows"], expected["earns"]["revoked"])
    assert values["plan_points"]["planned"] == expected["points"]["rows"]  # the dry run counted them
    stats = vendor.stats()  # what reached the vendors, server-side
    assert stats["xoxoday"]["cancelled"] == expected["points"]["cancelled"]
    assert stats["capillary"]["revoked"] == expected["earns"]["revoked"]
    with duckdb.connect(str(warehouse), read_only=True) as db:
        outcomes = dict(
            db.execute(
                "SELECT vendor || ':' || status, COUNT(DISTINCT item_key) FROM loyalty_reversal_ledger "
                "WHERE status <> 'sending' GROUP BY 1"
            ).fetchall()
        )
    assert outcomes == {
        "xoxoday:succeeded": expected["points"]["cancelled"],
        "xoxoday:failed": expected["points"]["not_found"],
        "capillary:succeeded": expected["earns"]["revoked"],
        "capillary:failed": expected["earns"]["rows"] - expected["earns"]["revoked"],
    }

    # The next day's run: the anti-join extracts nothing (done, or refused for good), nothing is sent.
    _, _, again = dags_test()
    assert again["extract_points"] == [] and again["extract_earns"] == []
    assert again["cancel_points"]["requested"] == 0 and again["revoke_earns"]["requested"] == 0
    after = vendor.stats()
    assert after["xoxoday"]["api_requests"] == stats["xoxoday"]["api_requests"]
    assert after["capillary"]["api_requests"] == stats["capillary"]["api_requests"]


def test_readme_daily_dag_above_the_threshold_sends_once_a_person_approved(vendor, monkeypatch, tmp_path) -> None:
    from tests.e2e.test_daily_approval import Approver

    warehouse = readme_dag_folder(vendor, monkeypatch, tmp_path)
    expected = vendor.dataset.expected()
    approver = Approver(vendor, "Approve", dag_id=DAG_ID, user="dana")
    approver.start()
    try:
        _, states, values = dags_test({"approval_threshold": 1})
    finally:
        approver.join(timeout=5)
    if approver.error is not None:
        raise approver.error
    seen = approver.seen  # while the run waited for the answer: nothing had reached the vendors
    assert seen["states"]["approval.within_threshold"] == "skipped"
    assert seen["vendor_stats"]["xoxoday"]["requests"] == 0 and seen["vendor_stats"]["capillary"]["requests"] == 0
    assert states["approval.approve"] == "success"
    assert values["cancel_points"]["approval"]["approved_by_name"] == "dana"
    assert values["cancel_points"]["succeeded"] == expected["points"]["cancelled"]
    assert values["revoke_earns"]["succeeded"] == expected["earns"]["revoked"]
    assert vendor.stats()["xoxoday"]["cancelled"] == expected["points"]["cancelled"]
    with duckdb.connect(str(warehouse), read_only=True) as db:
        approvers = db.execute("SELECT DISTINCT approved_by_name FROM loyalty_reversal_ledger").fetchall()
    assert approvers == [("dana",)]  # every row sent under the approval names the approver
