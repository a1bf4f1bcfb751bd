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
    "vendors": 0,
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


IMPORTERS = {"import_module", "__import__"}


def imports_of(source: str, package: str) -> list[str]:
    """Every module ``source`` (a module of ``package``) imports, wherever the import statement is.

    ``from a import b`` yields ``a`` and ``a.b``: ``b`` may be a module (``from
    airflow_provider_loyalty import operators``) or a name in ``a``; :func:`module_of` tells which.
    ``import_module("...")`` and ``__import__("...")`` with a literal name count too.
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *filter(None, [base])])
            found += [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in IMPORTERS and isinstance(node.args[0].value, str):
                found.append(node.args[0].value)
    return found


def module_of(name: str) -> str | None:
    """The package's module a dotted name lands in (``...items.PointItem`` -> ``...items``), or ``None``."""
    parts = name.split(".")
    while parts and parts[0] == NAME:
        path = PACKAGE.joinpath(*parts[1:])
        if path.with_suffix(".py").is_file():
            return ".".join(parts)
        if (path / "__init__.py").is_file():
            return ".".join([*parts, "__init__"])
        parts.pop()
    return None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    unit = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if unit == "__init__":
        return
    assert unit in LAYERS, f"{unit}: give the new module a layer in LAYERS"
    package = ".".join((NAME, *path.relative_to(PACKAGE).parent.parts))
    for module in imports_of(path.read_text(), package):
        resolved = module_of(module)
        other = unit_of(resolved) if resolved is not None else None
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


@pytest.mark.parametrize(
    "line",
    [
        "from airflow_provider_loyalty import operators",
        "from airflow_provider_loyalty import items, operators as ops",
        "from .. import operators",
        "import airflow_provider_loyalty.operators._reversal as engine",
        "import_module('airflow_provider_loyalty.operators.xoxoday')",
        "importlib.import_module('airflow_provider_loyalty.operators')",
        "__import__('airflow_provider_loyalty.operators')",
    ],
)
def test_the_check_sees_every_form_of_importing_a_package_above(line: str) -> None:
    """``from pkg import subpackage`` names the subpackage in ``names``, not in ``module``: it counts."""
    found = {unit_of(module) for module in imports_of(f"def f():\n    {line}\n", f"{NAME}.ledger")}
    assert "operators" in found


def test_module_of_resolves_names_modules_and_packages() -> None:
    assert module_of(f"{NAME}.items.PointItem") == f"{NAME}.items"
    assert module_of(f"{NAME}.operators") == f"{NAME}.operators.__init__"
    assert module_of(f"{NAME}.ledger.ReversalLedger") == f"{NAME}.ledger.__init__"
    assert module_of(f"{NAME}.hooks._pacing") == f"{NAME}.hooks._pacing"
    assert module_of("airflow.sdk.BaseOperator") is None


def module_name(path: Path) -> str:
    return ".".join((NAME, *path.relative_to(PACKAGE).with_suffix("").parts))


def import_graph(paths: list[Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (type-only, function-level and relative included)."""
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = module_name(path)
        package = name.rsplit(".", 1)[0]  # ``a.b.__init__`` -> ``a.b``: relative imports resolve the same
        targets = {module_of(module) for module in imports_of(path.read_text(), package)}
        graph[name] = {target for target in targets if target is not None and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_modules_import_each_other_even_through_others() -> None:
    """The picture of the package's imports has no circle (type-only and function-level imports count)."""
    assert cycles(import_graph(MODULES)) == []


def test_the_cycle_check_finds_a_circle_through_three_modules() -> None:
    a, b, c = (f"{NAME}.{n}" for n in "abc")
    assert cycles({a: {b}, b: {c}, c: {a}}) == [[a, b, c]]
    assert cycles({a: {b}, b: {c}, c: set()}) == []
