"""Every fenced block of the README and the manual (docs/*.md) is checked, each kind the honest way.

- Every block names its kind (a block without one fails): ``python``, ``bash``, ``sql``, ``ini``,
  ``json`` or ``text``.
- ``python``: compiles here; ``tests/test_readme.py`` also runs each one in a ``DagBag`` (no import
  errors; DAGs have their reversal tasks) and ``tests/e2e/test_readme_dag.py`` runs the README's DAG.
- ``bash``: each command is one this repository or Airflow has, with options they take: ``make``
  targets exist in the Makefile; ``airflow`` commands parse with Airflow's own CLI parser (the FAB
  auth manager's ``roles`` commands included); ``python -m airflow_provider_loyalty.sandbox`` options
  parse with the sandbox's parser; ``pip install`` extras exist in pyproject.toml; ``curl`` paths
  are routes of the Reversals page or Airflow's token endpoint; ``export AIRFLOW_CONN_*`` values are
  JSON connections (``tests/test_readme_connections.py`` connects with them). Any other command fails
  until this test learns to check it.
- ``sql``: runs against a ledger table made by the package's own DDL, in DuckDB and in SQLite.
- ``ini``: every ``[section] key`` is an option Airflow knows.
- ``json``: parses.
- The site builds with ``mkdocs build --strict`` (as ``make docs`` does in CI).
- ``text`` (sample output, diagrams, layouts): each is claimed by a check that renders or reads it
  from the code (the demo's summary, the operators' messages, progress lines, task ids of the
  example DAG, the package layout); a ``text`` block no check claims fails.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO

ROOT = Path(REPO)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KINDS = {"python", "bash", "sql", "ini", "json", "text"}
FENCE = re.compile(r"^( *)```(\S*)[^\n]*\n(.*?)^\1```[ \t]*$", flags=re.S | re.M)


def blocks(kind: str | None = None) -> list[tuple[str, str, str]]:
    """``(page:line, kind, code)`` of every fenced block (indentation of list items removed)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            indent, lang, code = match.groups()
            code = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in code.splitlines())
            where = f"{page.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}"
            if kind is None or lang == kind:
                found.append((where, lang, code + "\n"))
    return found


def ids(found: list[tuple[str, str, str]]) -> list[str]:
    return [where for where, _, _ in found]


def test_every_block_names_a_kind_this_test_checks() -> None:
    unknown = [f"{where} ({lang or 'no kind'})" for where, lang, _ in blocks() if lang not in KINDS]
    assert not unknown, f"blocks without a checked kind: {unknown}"


# ------------------------------------------------------------------------------------------ python
@pytest.mark.parametrize("where,lang,code", blocks("python"), ids=ids(blocks("python")))
def test_python_block_compiles(where: str, lang: str, code: str) -> None:
    compile(code, where, "exec")


# ------------------------------------------------------------------------------------------ bash
def lift_substitutions(raw: str) -> tuple[str, list[str]]:
    """``raw`` with each ``$(...)`` replaced by a word, and the commands that were inside them.

    Bash starts a new quoting context inside ``$(...)``, which ``shlex`` does not know: the inner
    commands are taken out before splitting and checked on their own.
    """
    out, inner, i = [], [], 0
    while i < len(raw):
        if raw.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(raw) and depth:
                depth += {"(": 1, ")": -1}.get(raw[j], 0)
                j += 1
            inner.append(raw[i + 2 : j - 1])
            out.append("SUBSTITUTION")
            i = j
            continue
        out.append(raw[i])
        i += 1
    return "".join(out), inner


def commands(code: str) -> list[tuple[list[str], list[str]]]:
    """The block's commands as ``(argv, inner commands)`` (continuation lines and multi-line quotes joined)."""
    found, pending, joiner = [], "", "\n"
    for line in code.splitlines():
        pending = f"{pending}{joiner}{line}" if pending else line
        joiner = "\n"  # a quote left open goes on on the next line, newline included
        if pending.rstrip().endswith("\\"):  # a continuation line: one command, no newline
            pending, joiner = pending.rstrip()[:-1], " "
            continue
        lifted, inner = lift_substitutions(pending)
        try:
            argv = shlex.split(lifted, comments=True)
        except ValueError:  # a quote still open: the command goes on on the next line
            continue
        pending = ""
        if argv:
            found.append((argv, inner))
    assert not pending, f"unterminated command: {pending!r}"
    return found


def stages(argv: list[str]) -> list[list[str]]:
    """A pipeline's commands."""
    out: list[list[str]] = [[]]
    for token in argv:
        if token == "|":
            out.append([])
        else:
            out[-1].append(token)
    return [stage for stage in out if stage]


def check_block(code: str, airflow: list[list[str]]) -> None:
    for argv, inner in commands(code):
        for nested in inner:
            check_block(nested, airflow)
        for stage in stages(argv):
            check_command(stage, airflow)


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def extras() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def check_pip(argv: list[str], airflow: list[list[str]]) -> None:
    assert argv[1] == "install", argv
    for token in argv[2:]:
        match = re.fullmatch(r"(?:\.|airflow-provider-loyalty)\[([\w,-]+)\]", token)
        if match:
            missing = set(match.group(1).split(",")) - extras()
            assert not missing, f"pip install names extras that pyproject.toml lacks: {missing}"


def check_sandbox(argv: list[str]) -> None:
    from airflow_provider_loyalty.sandbox import __main__ as cli

    args = argv[3:]
    subcommands = {"env": cli._env_parser, "seed": cli._seed_parser}  # as cli.main dispatches them
    parser = subcommands[args[0]]() if args[:1] and args[0] in subcommands else cli._parser()
    args = args[1:] if args[:1] and args[0] in subcommands else args
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"the sandbox does not take {args}: {stderr.getvalue()}")


def check_curl(argv: list[str]) -> None:
    from urllib.parse import urlsplit

    urls = [token for token in argv if token.startswith("http")]
    assert len(urls) == 1, argv
    path = urlsplit(urls[0]).path
    if path == "/auth/token":  # Airflow's simple auth manager (the one `make ui` runs)
        from airflow.api_fastapi.auth.managers.simple.routes.login import login_router

        assert any(getattr(r, "path", "") == "/token" for r in login_router.routes)
        return
    from airflow_provider_loyalty.ui.app import create_app
    from airflow_provider_loyalty.ui.plugin import URL_PREFIX

    assert path.startswith(URL_PREFIX + "/"), path
    routes = {getattr(route, "path", "") for route in create_app().routes}
    assert path.removeprefix(URL_PREFIX) in routes, f"{path} is no route of the Reversals page: {sorted(routes)}"


def check_export(argv: list[str]) -> None:
    for token in argv[1:]:
        name, _, value = token.partition("=")
        if name.startswith("AIRFLOW_CONN_"):
            assert isinstance(json.loads(value)["conn_type"], str), name


def check_command(argv: list[str], airflow: list[list[str]]) -> None:
    """One command of a pipeline; ``airflow`` collects Airflow commands to parse in one process."""
    head = argv[0]
    if re.fullmatch(r"[A-Z_]+=.*", head):  # VAR=value [command...]
        if len(argv) > 1:
            check_command(argv[1:], airflow)
        return
    if head == "make":
        assert set(argv[1:]) - {"--"} <= makefile_targets() | {a for a in argv[1:] if "=" in a}, argv
    elif head == "airflow":
        airflow.append(argv[1:])
    elif head == "pip":
        check_pip(argv, airflow)
    elif head in ("python", "python3") and argv[1:3] == ["-m", "airflow_provider_loyalty.sandbox"]:
        check_sandbox(argv)
    elif head in ("python", "python3") and argv[1] == "-c":
        compile(argv[2], "<python -c>", "exec")
    elif head == "curl":
        check_curl(argv)
    elif head == "export":
        check_export(argv)
    elif head == "eval":
        assert argv[1:] == ["SUBSTITUTION"], argv  # eval "$(command)": the command is checked on its own
    elif head == "grep":
        pass  # a filter over the output of the command before it
    else:
        pytest.fail(f"no check for the command {head!r}: teach tests/test_docs_blocks.py how to check it")


AIRFLOW_PARSE = """
import json, sys
from airflow.cli.cli_parser import get_parser
parser = get_parser()
bad = []
for argv in json.loads(sys.argv[1]):
    try:
        parser.parse_args(argv)
    except SystemExit:
        bad.append(argv)
print(json.dumps(bad))
"""


@pytest.mark.parametrize("where,lang,code", blocks("bash"), ids=ids(blocks("bash")))
def test_bash_block_commands_exist(where: str, lang: str, code: str, tmp_path: Path) -> None:
    airflow: list[list[str]] = []
    check_block(code, airflow)
    if airflow:  # Airflow's parser, with the FAB auth manager so that its `roles` commands exist
        env = {
            **os.environ,
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
        }
        result = subprocess.run(
            [sys.executable, "-c", AIRFLOW_PARSE, json.dumps(airflow)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == [], f"Airflow's CLI refuses: {result.stdout}"


# ------------------------------------------------------------------------------------------ sql
@pytest.mark.parametrize("where,lang,code", blocks("sql"), ids=ids(blocks("sql")))
@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_sql_block_runs_against_the_ledger_table(where: str, lang: str, code: str, engine: str) -> None:
    from airflow_provider_loyalty.ledger import create_table_sql

    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", code).split(";") if s.strip()]
    assert statements
    if engine == "duckdb":
        import duckdb

        db = duckdb.connect(":memory:")
    else:
        import sqlite3

        db = sqlite3.connect(":memory:")
    db.execute(create_table_sql())
    for statement in statements:
        db.execute(statement).fetchall()


# ------------------------------------------------------------------------------------------ ini
@pytest.mark.parametrize("where,lang,code", blocks("ini"), ids=ids(blocks("ini")))
def test_ini_block_names_airflow_options(where: str, lang: str, code: str) -> None:
    from airflow.configuration import conf

    conf.load_providers_configuration()
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",), interpolation=None)
    parser.read_string(code)
    known = conf.configuration_description  # Airflow's and its providers' documented options
    unknown = [
        f"[{section}] {key}"
        for section in parser.sections()
        for key in parser[section]
        if key not in known.get(section, {}).get("options", {})
    ]
    assert parser.sections() and not unknown, f"options Airflow does not know: {unknown}"


# ------------------------------------------------------------------------------------------ json
@pytest.mark.parametrize("where,lang,code", blocks("json"), ids=ids(blocks("json")))
def test_json_block_parses(where: str, lang: str, code: str) -> None:
    json.loads(code)


# ------------------------------------------------------------------------------------------ text
def flat(text: str) -> str:
    return " ".join(text.split())


def demo_summary(code: str) -> None:
    """The demo's summary lines are what ``scripts/demo.py`` prints for those counts, in the ledger's words."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import demo
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from airflow_provider_loyalty.hooks import xoxoday_answers
    from airflow_provider_loyalty.outcomes import FailureKind

    lines = code.splitlines()
    seconds = int(re.search(r"finished in (\d+) s", lines[0]).group(1))
    report: dict[str, Counter] = {k: Counter() for k in ("pending", "done", "refused", "run")}
    vendor = ""
    for line in lines[1:]:
        head = re.match(
            r"\s+(Xoxoday points|Capillary earns): (\d+) in the warehouse; this run \w+ (\d+), failed (\d+)", line
        )
        if head:
            vendor = "xoxoday" if head.group(1).startswith("Xoxoday") else "capillary"
            report["pending"]["points" if vendor == "xoxoday" else "earns"] = int(head.group(2))
            report["done"][vendor] = int(head.group(3))
            report["refused"][vendor] = int(head.group(4))
            report["run"][(vendor, "succeeded", "", "", "")] = int(head.group(3))
            continue
        failure = re.match(r"\s+(\d+) x (\S+) \((\w+)\): (.*)", line)
        assert failure, f"not a line the demo prints: {line!r}"
        n, code_, kind, message = failure.groups()
        assert kind in {k.value for k in FailureKind}, f"{kind!r} is not a ledger failure_kind"
        codes = {xoxoday_answers.REFUSED} if vendor == "xoxoday" else {"729", "730", "731"}
        assert code_ in codes, f"{code_!r} is not a code the {vendor} hook records for a refusal"
        report["run"][(vendor, "failed", kind, code_, message)] = int(n)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        demo.print_summary(report, seconds)
    printed = [line for line in out.getvalue().splitlines() if line.strip()][: len(lines)]
    assert printed == lines


def daily_dag_diagram(code: str) -> None:
    """Every task named in the approval diagram is a task of the daily example DAG."""
    source = (ROOT / "airflow_provider_loyalty" / "example_dags" / "loyalty_daily_reversals.py").read_text()
    source += (ROOT / "airflow_provider_loyalty" / "operators" / "approval.py").read_text()  # the gate's tasks
    tasks = set(re.findall(r'task_id="(\w+)"', source)) | set(re.findall(r"def (\w+)\(", source))
    named = set(re.findall(r"\b[a-z]+_[a-z_]+\b", code)) - {"dry_run"}
    assert named and named <= tasks, f"not tasks of the daily example DAG: {named - tasks}"


def invalid_input_message(code: str) -> None:
    """The invalid-input example is what CancelPointsOperator raises for such input."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator

    class TI:
        dag_id, run_id, task_id, map_index, try_number = "d", "r", "t", -1, 1

        def xcom_push(self, key: str, value: object) -> None:
            pass

    with pytest.raises(AirflowFailException) as raised:
        CancelPointsOperator(task_id="t", unique_ids=["abc", 2, -5]).execute({"ti": TI()})
    assert flat(str(raised.value)) == flat(code)


def failure_message(code: str) -> None:
    """The failed-run example is what the verdict says for one refusal now and six earlier."""
    from airflow_provider_loyalty.items import EarnItem
    from airflow_provider_loyalty.operators._summary import RunSummary
    from airflow_provider_loyalty.operators._verdict import decide
    from airflow_provider_loyalty.outcomes import FailureKind, Outcome

    summary = RunSummary(requested=7)
    item = EarnItem(5, "6911aaaa", "6911bbbb")
    summary.add([Outcome.failed(item, "729", "Earn already redeemed", FailureKind.PERMANENT)])
    earlier = [("729", 3), ("731", 3)]
    for n, (c, count) in enumerate(earlier):
        for i in range(count):
            other = EarnItem(6 + n, f"p{i}", f"e{i}")
            summary.add_refused([Outcome.failed(other, c, "refused", FailureKind.PERMANENT)], earlier_run=True)
    error = decide(
        summary, owner="RevokeEarnOperator", what="earns", max_failed_ratio=0.0, with_ledger=True, log=_NullLog()
    )
    assert error is not None
    pattern = re.escape(flat(code)).replace("…", r"\w*")
    assert re.fullmatch(pattern, flat(str(error))), f"{flat(str(error))!r} does not match the example"


class _NullLog:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def progress_lines(code: str) -> None:
    """The progress example's lines match the format strings the run logs them with."""
    from airflow_provider_loyalty.operators._summary import Progress, RunSummary

    formats: list[str] = []

    class Log:
        def info(self, fmt: str, *args: object) -> None:
            formats.append(fmt)

    Progress(Log(), "capillary", "earns", 1).line(RunSummary())
    operators = "".join(path.read_text() for path in (ROOT / "airflow_provider_loyalty" / "operators").glob("*.py"))
    formats += re.findall(r'"(%s failures this run by code: %s)"', operators)
    assert len(formats) == 2, "the progress or the failures-by-code format moved: update this check"

    def regex(fmt: str) -> str:
        out = re.escape(fmt)
        for spec, rx in (("%.0f", r"\d+"), ("%d", r"\d+"), ("%s", ".*?")):
            out = out.replace(re.escape(spec), rx)
        return out

    patterns = [re.compile(regex(f)) for f in formats]
    for line in code.splitlines():
        assert any(p.fullmatch(line) for p in patterns), f"not a line the run logs: {line!r}"


def package_layout(code: str) -> None:
    """Checked by tests/test_readme.py::test_readme_development_layout_names_every_module."""
    assert code.startswith("airflow_provider_loyalty/")


TEXT_CHECKS: list[tuple[str, Callable[[str], None]]] = [
    ("Reversal run finished in", demo_summary),
    ("extract_points ─▶ plan_points", daily_dag_diagram),
    ("CancelPointsOperator: 2 invalid unique_ids", invalid_input_message),
    ("RevokeEarnOperator: 1 of 1 earns failed", failure_message),
    ("capillary progress:", progress_lines),
    ("airflow_provider_loyalty/\n", package_layout),
]


@pytest.mark.parametrize("where,lang,code", blocks("text"), ids=ids(blocks("text")))
def test_text_block_is_rendered_or_read_from_the_code(where: str, lang: str, code: str) -> None:
    claimed = [check for start, check in TEXT_CHECKS if code.startswith(start)]
    assert claimed, f"{where}: no check claims this text block; add one to TEXT_CHECKS"
    claimed[0](code.rstrip("\n"))


def test_the_checks_fail_on_broken_blocks() -> None:
    """The checkers are not vacuous: a wrong target, option, column, code or message fails them."""
    broken: list[tuple[Callable[[], object], str]] = [
        (lambda: check_command(["make", "no-such-target"], []), "make"),
        (lambda: check_sandbox(["python", "-m", "airflow_provider_loyalty.sandbox", "--no-such-flag"]), "sandbox"),
        (lambda: check_pip(["pip", "install", ".[no-such-extra]"], []), "pip"),
        (lambda: check_curl(["curl", "http://127.0.0.1:8080/loyalty/api/nope"]), "curl"),
        (lambda: check_command(["rm", "-rf", "/"], []), "unknown command"),
        (
            lambda: demo_summary(
                "Reversal run finished in 2 s\n  Xoxoday points: 2 in the warehouse; this run cancelled 1, failed 1; already done before: 0\n         1 x rejected (permanent): Transaction not found"
            ),
            "demo",
        ),
        (lambda: invalid_input_message("row 1: 'abc' (not a number)"), "message"),
        (lambda: progress_lines("capillary progress: 1 of 2 earns"), "progress"),
        (lambda: daily_dag_diagram("extract_points ─▶ no_such_task"), "diagram"),
    ]
    for call, what in broken:
        try:
            call()
        except (AssertionError, pytest.fail.Exception, ValueError):
            continue
        raise AssertionError(f"the {what} check passed a broken block")
    with pytest.raises(Exception, match="no such column|not found|Binder Error"):
        test_sql_block_runs_against_the_ledger_table(
            "x", "sql", "SELECT no_such_column FROM loyalty_reversal_ledger;", "duckdb"
        )
    with pytest.raises(AssertionError):
        test_ini_block_names_airflow_options("x", "ini", "[core]\nno_such_option = 1\n")


def test_blocks_are_found() -> None:
    kinds = Counter(lang for _, lang, _ in blocks())
    assert kinds["python"] >= 3 and kinds["bash"] >= 4 and kinds["sql"] >= 1 and kinds["text"] >= 5, kinds


def test_the_site_builds_strict(tmp_path: Path) -> None:
    """``make docs`` in the test suite too: a broken link or anchor fails ``mkdocs build --strict``."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()


def test_the_readme_links_to_files_that_exist() -> None:
    """The README is read outside the site (mkdocs never checks it): its relative links must resolve."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert local and all((ROOT / t).exists() for t in local), [t for t in local if not (ROOT / t).exists()]
