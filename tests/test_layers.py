"""The import graph has layers: nothing imports a layer above it, type-only and function-level imports included.

From the bottom: the item and outcome vocabulary; the vendors' models and limits; the hooks and the
ledger (neither knows the other); the operators; the UI and example DAGs. The sandbox is apart
(tests/sandbox/test_sandbox_isolation.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import airflow_provider_loyalty

PACKAGE = Path(airflow_provider_loyalty.__file__).parent
NAME = "airflow_provider_loyalty"

#: module (or package) -> the layer it belongs to; a module may import its own layer and those below.
LAYERS: dict[str, int] = {
    "_show": 0,
    "_flags": 0,
    "_batches": 0,
    "items": 0,
    "outcomes": 0,
    "vendor_limits": 0,
    "_metrics": 1,
    "_variables": 1,
    "models": 1,
    "hooks": 2,
    "ledger": 2,
    "coordination": 2,
    "operators": 3,
    "get_provider_info": 3,
    "ui": 4,
    "example_dags": 4,
}
#: Layers that must not see each other although they sit side by side.
#: Coordination (claims, the shared rate budget) is given its database or Redis connection by its
#: callers: the hooks and the ledger may use it, it uses neither.
APART = {
    ("hooks", "ledger"),
    ("ledger", "hooks"),
    ("coordination", "hooks"),
    ("coordination", "ledger"),
}


def unit_of(module: str) -> str | None:
    """``airflow_provider_loyalty.hooks.errors`` -> ``hooks``; ``None`` outside the package or the sandbox."""
    parts = module.split(".")
    if parts[0] != NAME or len(parts) < 2 or parts[1] == "sandbox":
        return None
    return parts[1]


def imports_of(source: str, package: str) -> list[str]:
    """Every module ``source`` (a module of ``package``) imports, wherever the import statement is."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *filter(None, [base])])
            found += [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    unit = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if unit == "__init__":
        return
    assert unit in LAYERS, f"{unit}: give the new module a layer in LAYERS"
    package = ".".join((NAME, *path.relative_to(PACKAGE).parent.parts))
    for module in imports_of(path.read_text(), package):
        other = unit_of(module)
        if other is None or other == unit or other == "__init__":
            continue
        assert other in LAYERS, f"{path.name} imports {module}, which has no layer"
        assert LAYERS[other] <= LAYERS[unit], f"{path.relative_to(PACKAGE)} ({unit}) imports {module} from above"
        assert (unit, other) not in APART, (
            f"{path.relative_to(PACKAGE)} imports {module}: {unit} and {other} stay apart"
        )


def test_the_check_sees_type_only_relative_and_function_level_imports() -> None:
    """The layer rule cannot pass by missing imports: hidden kinds are found and resolved."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..operators import _reversal\n"
        "def f():\n"
        "    from airflow_provider_loyalty.hooks import errors\n"
        "    from . import schema\n"
    )
    found = {unit_of(module) for module in imports_of(source, f"{NAME}.ledger")}
    assert found == {None, "operators", "hooks", "ledger"}
