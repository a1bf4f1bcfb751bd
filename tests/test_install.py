"""Installing the provider into a user's Airflow 3.1 / 3.2 / 3.3 changes none of its packages, and a task runs there.

The README tells users to install the provider beside their Airflow with their Airflow's own
constraints (never this repo's ``constraints.txt``). These tests ask pip what it would do, with
``pip install --dry-run --report`` from a copy of the checkout, and read the report:

- Airflow 3.3 (``INSTALLED``): a fresh venv really gets ``apache-airflow``; then the dry run of
  ``pip install "<checkout>[duckdb,postgres,sqlite]"`` in it must install the provider and new
  packages only: no installed package up- or downgraded, no Airflow package touched.
- Airflow 3.1 (``RESOLVED``): no install, to stay fast; the resolver's answer for
  ``apache-airflow==V`` alone is compared with its answer for ``apache-airflow==V`` plus the
  provider: every package of the first must keep its version in the second.
- Airflow 3.2 (``RUN``): a real venv gets Airflow 3.2.2 as it was installable on the day of its
  release, then the provider (checked to change none of its packages first), and a real
  ``airflow dags test`` there runs a small DAG whose two reversal tasks talk to the sandbox over
  loopback and record in a SQLite ledger: the sandbox's own counts and the ledger are checked.

Airflow's constraints file (``constraints-3.2.2/constraints-3.11.txt``) lives on a host this
machine cannot reach, so the known-good set of that Airflow is taken differently: pip's
``--uploaded-prior-to`` resolves as of the release (``RELEASED``), which is how Airflow's own
constraints were made. Without any pin, pip picks today's releases of Airflow's dependencies and
Airflow 3.2.2 cannot run a task at all (checked on 2026-12-07: ``dags test`` fails in its
in-process execution API with pydantic's "needs a discriminator field" under fastapi 0.165 and
cadwyn 9), whatever the provider.

``LOYALTY_INSTALL_TESTS=1`` runs them (they need PyPI): 298 s with a warm pip cache on a busy
2-core machine (Airflow 3.3.2 install 95 s, 3.1.8 resolve 56 s, Airflow 3.2.2 install 85 s and its
``db migrate`` + ``dags test`` 44 s). ``LOYALTY_INSTALL_TESTS=full`` really installs every version.
Without PyPI they skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import REPO as _REPO

REPO = Path(_REPO)
MODE = os.environ.get("LOYALTY_INSTALL_TESTS", "")
INSTALLED = ["3.3.2"]
RESOLVED = ["3.1.8"]
RUN = "3.2.2"
#: Shortly after the release's files were uploaded to PyPI (05:19-05:21 UTC): what its users could install then.
RELEASED = {"3.2.2": "2026-05-29T06:00:00Z"}
EXTRAS = "duckdb,postgres,sqlite"
OURS = "airflow-provider-loyalty"
AIRFLOW_ITSELF = {"apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"}

needs_opt_in = pytest.mark.skipif(
    MODE not in ("1", "full"),
    reason="install tests need PyPI and about 5 minutes: set LOYALTY_INSTALL_TESTS=1 (or =full for real installs)",
)


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _planned(report: dict[str, Any]) -> dict[str, str]:
    """Return ``{normalised name: version}`` of what a ``pip install --report`` would install."""
    return {_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def changes(planned: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Return what installing ``planned`` would do to ``installed`` beyond adding packages (empty: nothing).

    Both map normalised distribution names to versions; the provider itself may be (re)installed.
    """
    found = [
        f"{name} {installed[name]} -> {version}"
        for name, version in sorted(planned.items())
        if name in installed and name != OURS and version != installed[name]
    ]
    found += [
        f"{name} {planned[name]} (Airflow itself)"
        for name in sorted(AIRFLOW_ITSELF & planned.keys() - installed.keys())
    ]
    return found


def test_changes_reports_up_and_downgrades_and_airflow_itself() -> None:
    """The check itself: additions pass; a changed version, or Airflow pulled in, is reported."""
    installed = {"apache-airflow": "3.2.2", "pydantic": "2.12.0", OURS: "0.0.1"}
    assert changes({OURS: "0.1.0", "duckdb": "1.4.0", "pydantic": "2.12.0"}, installed) == []
    assert changes({"pydantic": "2.11.0", "apache-airflow": "3.3.2"}, installed) == [
        "apache-airflow 3.2.2 -> 3.3.2",
        "pydantic 2.12.0 -> 2.11.0",
    ]
    assert changes({"apache-airflow-core": "3.3.2"}, installed) == ["apache-airflow-core 3.3.2 (Airflow itself)"]


def test_readme_installs_with_the_users_airflow_constraints_not_ours() -> None:
    """The install section names Airflow's constraints URL and the Airflow version; ``constraints.txt`` is dev only."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Install into your Airflow") :]
    section = section[: section.index("\n## ", 1)]
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", section, flags=re.S))
    assert "constraints.txt" not in commands
    assert (
        "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"
        in commands
    )
    assert re.search(r'pip install "apache-airflow==\$\{AIRFLOW_VERSION\}" "\.\[duckdb\]"\n', commands)
    assert "`constraints.txt` is not for your Airflow" in section


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a copy of what the provider is built from (the checkout itself stays untouched)."""
    try:
        requests.head(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/pip/", timeout=10)
    except requests.RequestException as exc:
        pytest.skip(f"the package registry is unreachable ({type(exc).__name__}): cannot ask pip")
    copy = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, copy / name)
    shutil.copytree(
        REPO / "airflow_provider_loyalty",
        copy / "airflow_provider_loyalty",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return copy


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    return path / "bin" / "python"


def _pip(python: Path, *args: str, timeout: float = 300) -> str:
    """Run this venv's pip against the interpreter ``python`` (which needs no pip of its own)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
    )
    if result.returncode != 0:
        pytest.fail(f"pip {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def _dry_run(python: Path, report: Path, *requirements: str) -> dict[str, str]:
    _pip(python, "install", "--quiet", "--dry-run", "--report", str(report), *requirements)
    return _planned(json.loads(report.read_text()))


def _assert_adds_only(planned: dict[str, str], installed: dict[str, str], version: str) -> None:
    assert OURS in planned and {"duckdb", "apache-airflow-providers-postgres"} <= planned.keys() | installed.keys()
    assert installed["apache-airflow"] == version
    assert changes(planned, installed) == [], f"installing the provider into Airflow {version} would change packages"


@needs_opt_in
@pytest.mark.parametrize("version", INSTALLED + (RESOLVED if MODE == "full" else []))
def test_installing_into_an_installed_airflow_changes_none_of_its_packages(
    version: str, source: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    python = _venv(tmp_path / "airflow")
    _pip(python, "install", "--quiet", f"apache-airflow=={version}")
    listed = json.loads(_pip(python, "list", "--format", "json"))
    installed = {_name(item["name"]): item["version"] for item in listed}
    planned = _dry_run(python, tmp_path / "report.json", f"{source}[{EXTRAS}]")
    _assert_adds_only(planned, installed, version)
    print(f"Airflow {version}: installed {len(installed)} packages, the provider adds {sorted(planned)}")
    print(f"Airflow {version}: {time.monotonic() - started:.0f} s")


@needs_opt_in
@pytest.mark.parametrize("version", RESOLVED if MODE != "full" else [])
def test_resolving_with_an_airflow_keeps_every_version_it_pins(version: str, source: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    python = _venv(tmp_path / "empty")
    with ThreadPoolExecutor(2) as pool:  # two resolver runs, mostly waiting on the registry
        alone_run = pool.submit(_dry_run, python, tmp_path / "alone.json", f"apache-airflow=={version}")
        together_run = pool.submit(
            _dry_run, python, tmp_path / "together.json", f"apache-airflow=={version}", f"{source}[{EXTRAS}]"
        )
        alone, together = alone_run.result(), together_run.result()
    _assert_adds_only(together, alone, version)
    assert alone.keys() <= together.keys()
    print(
        f"Airflow {version}: resolved {len(alone)} packages, the provider adds {sorted(together.keys() - alone.keys())}"
    )
    print(f"Airflow {version}: {time.monotonic() - started:.0f} s")


TASK_DAG = """
from datetime import datetime

from airflow.sdk import dag

from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def loyalty_install_check():
    CancelPointsOperator(task_id="cancel_points", unique_ids={unique_ids!r}, ledger_conn_id="ledger")
    RevokeEarnOperator(task_id="revoke_earns", earns={earns!r}, ledger_conn_id="ledger")


loyalty_install_check()
"""


@needs_opt_in
def test_a_dag_runs_with_the_provider_in_airflow_3_2_installed_as_on_its_release_day(
    source: Path, tmp_path: Path
) -> None:
    """Airflow 3.2.2 with its release-day dependencies + the provider: ``airflow dags test`` reverses at the sandbox."""
    import sqlite3

    from airflow_provider_loyalty import sandbox as sb

    started = time.monotonic()
    prior = ("--uploaded-prior-to", RELEASED[RUN])
    python = _venv(tmp_path / "airflow")
    _pip(python, "install", "--quiet", *prior, f"apache-airflow=={RUN}", timeout=600)
    listed = json.loads(_pip(python, "list", "--format", "json"))
    installed = {_name(item["name"]): item["version"] for item in listed}
    planned = _dry_run(python, tmp_path / "report.json", *prior, f"{source}[sqlite]")
    assert OURS in planned and installed["apache-airflow"] == RUN
    assert changes(planned, installed) == [], f"installing the provider into Airflow {RUN} would change packages"
    _pip(python, "install", "--quiet", *prior, f"{source}[sqlite]", timeout=600)
    installed_at = time.monotonic()

    dataset = sb.generate_dataset(seed=3, points=20, earns=20, big_customer_earns=0, customers=5)
    unique_ids = [
        uid
        for (uid, _), outcome in zip(dataset.point_reversals, dataset.point_outcomes, strict=True)
        if outcome == "cancel"
    ][:3]
    earns = [
        (c, p, e) for (c, p, e, _), code in zip(dataset.earn_reversals, dataset.earn_outcomes, strict=True) if code == 0
    ][:2]
    home = tmp_path / "home"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "loyalty_install_check.py").write_text(TASK_DAG.format(unique_ids=unique_ids, earns=earns))
    ledger = tmp_path / "ledger.sqlite"
    airflow = str(python.with_name("airflow"))
    with sb.Sandbox(sb.SandboxConfig(), dataset) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LOYALTY"))},
            **sb.connection_env(server.url),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_LEDGER": json.dumps({"conn_type": "sqlite", "host": str(ledger)}),
        }
        for command in (["db", "migrate"], ["dags", "test", "loyalty_install_check"]):
            result = subprocess.run([airflow, *command], capture_output=True, text=True, env=env, timeout=300)
            assert result.returncode == 0, (
                f"airflow {' '.join(command)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        stats = server.stats()
    assert stats["xoxoday"]["cancelled"] == len(unique_ids) == 3  # what the vendor received, server-side
    assert stats["capillary"]["revoked"] == len(earns) == 2
    with sqlite3.connect(ledger) as db:
        rows = db.execute(
            "SELECT vendor, status, COUNT(*) FROM loyalty_reversal_ledger WHERE status <> 'sending' GROUP BY 1, 2"
        ).fetchall()
    assert sorted(rows) == [("capillary", "succeeded", 2), ("xoxoday", "succeeded", 3)]
    print(
        f"Airflow {RUN} as of {RELEASED[RUN]}: {len(installed)} packages, the provider adds {sorted(planned)}; "
        f"install {installed_at - started:.0f} s, migrate + dags test {time.monotonic() - installed_at:.0f} s"
    )
