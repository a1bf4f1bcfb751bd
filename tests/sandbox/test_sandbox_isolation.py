"""The sandbox is written from the vendors' docs only: stdlib (+ duckdb in one function), no provider code."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import airflow_provider_loyalty.sandbox as sandbox_package

SANDBOX_DIR = Path(sandbox_package.__file__).parent
REPO = Path(__file__).resolve().parents[2]


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """Return ``(module, at_top_level)`` for every import in a module."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, id(node) in top_level))
    return found


#: What the one module seeding a warehouse through an Airflow connection may import, inside functions only.
COMMON_SQL = ("airflow.providers.common.sql.hooks.sql", "airflow.sdk")


def test_only_stdlib_and_own_modules() -> None:
    """No hooks, models, operators, airflow or third-party imports; duckdb only inside a function.

    Seeding a warehouse through an Airflow connection (``warehouse.py``) uses Airflow's common-sql
    hook, imported where it is used: never the provider's own hooks, models or operators.
    """
    for path in sorted(SANDBOX_DIR.glob("*.py")):
        for module, top_level in _imports(ast.parse(path.read_text())):
            root = module.split(".")[0]
            if module == "duckdb":
                assert not top_level, f"{path.name}: duckdb must be imported where it is used"
            elif path.name == "warehouse.py" and module in COMMON_SQL:
                assert not top_level, f"{path.name}: {module} must be imported where it is used"
            elif root == "airflow_provider_loyalty":
                assert module.startswith("airflow_provider_loyalty.sandbox"), f"{path.name} imports {module}"
            else:
                assert root in sys.stdlib_module_names, f"{path.name} imports {module}"


def test_import_is_cheap() -> None:
    """Importing the package (and the CLI module) loads neither airflow nor duckdb."""
    forbidden = ("airflow", "duckdb", "pydantic", "requests")
    provider = tuple(f"airflow_provider_loyalty.{name}" for name in ("hooks", "models", "operators"))
    code = (
        "import sys, airflow_provider_loyalty.sandbox, airflow_provider_loyalty.sandbox.__main__\n"
        f"print(sorted(m for m in sys.modules\n"
        f"             if m.split('.')[0] in {forbidden!r} or m.startswith({provider!r})))"
    )
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path}
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == "[]"
