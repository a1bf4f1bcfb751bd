"""Every Python example in the README and the manual (docs/*.md) runs as written (DAGs are built, helpers called)."""

from __future__ import annotations

import pathlib
import re

import pytest

from tests.conftest import REPO

PAGES = [pathlib.Path(REPO, "README.md"), *sorted(pathlib.Path(REPO, "docs").glob("*.md"))]
BLOCKS = [block for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]
DEVELOPMENT = pathlib.Path(REPO, "docs", "development.md").read_text()
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


def test_readme_development_layout_names_every_module() -> None:
    """docs/development.md's layout lists each module of the package (directories it describes whole aside)."""
    layout = DEVELOPMENT.split("```", 2)[1]
    described_whole = ("ui", "sandbox", "example_dags")
    package = pathlib.Path(REPO, "airflow_provider_loyalty")
    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if path.name == "__init__.py" or relative.parts[0] in described_whole:
            continue
        shown = [str(relative), path.name, path.name.removeprefix("_")]
        if relative.parent.name == "hooks" and path.name.endswith("_answers.py"):
            shown.append("hooks/*_answers.py")
        if not any(re.search(rf"(?<![\w/]){re.escape(name)}\b", layout) for name in shown):
            missing.append(str(relative))
    assert not missing, f"docs/development.md's layout does not name: {missing}"
    for line in layout.splitlines():  # and names nothing that is gone
        if line.lstrip().startswith(("scripts/", "tests/", "benchmarks/", "cluster/")):
            continue
        for name in re.findall(r"\b[\w/]+\.py\b", line):
            candidates = list(package.rglob(name.split("/")[-1]))
            assert candidates, f"docs/development.md's layout names {name}, which does not exist"
