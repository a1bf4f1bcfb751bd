"""Every Python example in the README runs as written (DAGs are built, helpers called)."""

from __future__ import annotations

import pathlib
import re

import pytest

from tests.conftest import REPO

README = pathlib.Path(REPO, "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
RUNNABLE = [b for b in BLOCKS if not b.lstrip().startswith("{")]  # the summary example is a dict literal


def test_readme_has_examples() -> None:
    assert len(RUNNABLE) >= 2


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_python_blocks_run(code: str, tmp_path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "readme_example.py").write_text(code)
    bag = DagBag(dag_folder=str(tmp_path), safe_mode=False)
    assert bag.import_errors == {}
    if "@dag" in code:
        assert len(bag.dags) == 1
        dag = next(iter(bag.dags.values()))
        assert {"cancel_points", "revoke_earns"} <= set(dag.task_dict)


def test_readme_summary_example_matches_the_summary_keys() -> None:
    from airflow_provider_loyalty.operators._summary import RunSummary as Summary

    summary_block = next(b for b in BLOCKS if b.lstrip().startswith("{"))
    for key in Summary().as_xcom():
        assert f'"{key}"' in summary_block
