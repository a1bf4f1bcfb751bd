"""Generic code names no vendor and no vendor's id field: it reads them from the vendor specs.

A vendor's facts live in :mod:`airflow_provider_loyalty.vendors` and in its own modules (items,
hook, operator, answers, models). The engine, the hooks' shared HTTP layer, the ledger, the page, lineage and summaries take
them from a :class:`~airflow_provider_loyalty.vendors.VendorSpec`, so that a third vendor is its
own modules plus one ``register`` (tests/third_vendor proves it).

What is searched: the code, not its documentation. Docstrings and comments may give an example
(``unique_id=4711``) — they change no behaviour —, while a string literal, a name or an attribute
in code does: it is what made a subclass of a vendor operator invisible to the page once. The page's
templates are searched whole but for their comments.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import airflow_provider_loyalty

PACKAGE = Path(airflow_provider_loyalty.__file__).parent

#: Words that name a vendor or one of its id fields (case-insensitive, anywhere in a token).
VENDOR_WORDS = ("xoxoday", "capillary", "unique_id", "earn_id", "customer_id", "promotion_id", "pointitem", "earnitem")

#: Generic modules: everything a new vendor must not have to edit.
GENERIC = [
    *sorted((PACKAGE / "ledger").rglob("*.py")),
    *sorted((PACKAGE / "ui").rglob("*.py")),
    *sorted((PACKAGE / "ui" / "templates").glob("*.html")),
    *sorted((PACKAGE / "coordination").rglob("*.py")),
    *sorted(p for p in (PACKAGE / "operators").glob("_*.py") if p.name != "__init__.py"),
    PACKAGE / "operators" / "approval.py",
    *sorted(p for p in (PACKAGE / "hooks").glob("_*.py") if p.name != "__init__.py"),
    PACKAGE / "hooks" / "errors.py",
    PACKAGE / "outcomes.py",
    PACKAGE / "_metrics.py",
    PACKAGE / "_variables.py",
    PACKAGE / "_batches.py",
    PACKAGE / "_flags.py",
    PACKAGE / "_show.py",
]
#: Modules that look generic but hold the two vendors' own code, each with the reason.
VENDOR_OWNED = {
    # the two vendors' input parsers (parse_unique_ids, parse_earns) and their row shapes; a third
    # vendor's operator brings its own parser (tests/third_vendor/operator.py)
    PACKAGE / "operators" / "_inputs.py",
    # where Xoxoday's rotating token pair is kept (the Variable's name says whose pair it is)
    PACKAGE / "hooks" / "_token_store.py",
}


def code_text(path: Path) -> str:
    """The code of ``path`` without docstrings and comments (a template without its comments)."""
    source = path.read_text()
    if path.suffix == ".html":
        return re.sub(r"\{#.*?#\}|<!--.*?-->", "", source, flags=re.S)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[0] = ast.Pass()
    return ast.unparse(tree)  # comments are not in the tree


def vendor_words(text: str) -> list[str]:
    lowered = text.lower()
    return [word for word in VENDOR_WORDS if word in lowered]


@pytest.mark.parametrize(
    "path", [p for p in GENERIC if p not in VENDOR_OWNED], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_generic_code_names_no_vendor_and_no_id_field(path: Path) -> None:
    found = vendor_words(code_text(path))
    assert not found, f"{path.relative_to(PACKAGE)} names {found}: read it from airflow_provider_loyalty.vendors"


def test_the_check_sees_code_and_skips_documentation() -> None:
    """It cannot pass by missing a name: literals, names and attributes count; docstrings and comments do not."""
    source = (
        '"""Cancels Xoxoday points (unique_id=4711)."""\n'
        "def f(row):\n"
        '    """The row\'s earn_id."""\n'
        "    # a capillary comment\n"
        "    return row.customer_id\n"
    )
    path = Path(__file__).with_name("_neutral_probe.py")
    path.write_text(source)
    try:
        assert vendor_words(code_text(path)) == ["customer_id"]
        path.write_text('OPERATORS = {"CancelPointsOperator": "xoxoday"}\n')
        assert vendor_words(code_text(path)) == ["xoxoday"]
    finally:
        path.unlink()


def test_every_generic_module_is_listed_or_owned() -> None:
    """A new module under ledger/, ui/ or operators/_ is searched without anyone adding it here."""
    assert VENDOR_OWNED <= set(GENERIC)
    assert all(path.is_file() for path in GENERIC)
