"""`make test`: the suite in as many processes as the machine has cores (at most 2), then one coverage report.

Most of the suite's time is Airflow parsing, running and tearing down DAGs in one process, one core
at a time. Each shard (``LOYALTY_TEST_SHARD=k/n``, see ``tests/_shards.py``) runs whole test files
with an Airflow home, a coverage file and, when ``LOYALTY_TEST_POSTGRES_URI`` is set, a PostgreSQL
database of its own (``<database>_shard<k>``, created when missing), so that no two shards share
state. ``LOYALTY_TEST_SHARDS=1`` runs the suite in one process as before. Arguments are pytest's.

The exit status is pytest's worst, or coverage's when the tests passed and the combined coverage
of the whole suite (no arguments given) is under the project's ``fail_under``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
NO_TESTS = 5  # pytest's exit status when a shard's selection is empty (e.g. one file asked for)


def shard_count() -> int:
    wanted = os.environ.get("LOYALTY_TEST_SHARDS")
    if wanted:
        try:
            count = int(wanted)
        except ValueError:
            sys.exit(f"LOYALTY_TEST_SHARDS={wanted!r}: expected a whole number of processes, e.g. 2")
        return max(1, count)
    return max(1, min(2, os.cpu_count() or 1))


def shard_database(uri: str, k: int) -> str:
    """The URI of shard ``k``'s own database next to ``uri``'s, created when missing."""
    import psycopg2

    parts = urlsplit(uri)
    name = f"{parts.path.lstrip('/') or 'postgres'}_shard{k}"
    conn = psycopg2.connect(uri)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


def shard_env(k: int, n: int) -> dict[str, str]:
    env = dict(os.environ)
    env["AIRFLOW_HOME"] = str(REPO / ".airflow" / f"test-{k}")
    env["COVERAGE_FILE"] = str(REPO / f".coverage.shard{k}")
    if n > 1:
        env["LOYALTY_TEST_SHARD"] = f"{k}/{n}"
        uri = env.get("LOYALTY_TEST_POSTGRES_URI")
        if uri and k > 1:
            env["LOYALTY_TEST_POSTGRES_URI"] = shard_database(uri, k)
    return env


def stream(process: subprocess.Popen[str], prefix: str, log: Path) -> None:
    """Print the shard's lines as they come, prefixed, and keep them in its log file."""
    assert process.stdout is not None
    with log.open("w") as out:
        for line in process.stdout:
            out.write(line)
            out.flush()
            sys.stdout.write(f"{prefix}{line}")
            sys.stdout.flush()


def main(args: list[str]) -> int:
    n = shard_count()
    if n > 1 and os.environ.get("LOYALTY_TEST_POSTGRES_URI"):
        try:
            shard_database(os.environ["LOYALTY_TEST_POSTGRES_URI"], 2)
        except Exception as exc:  # noqa: BLE001 - named, and the suite still runs
            print(
                f"run_tests: cannot create a second PostgreSQL test database ({type(exc).__name__}: {exc}); "
                "running the suite in one process",
                flush=True,
            )
            n = 1
    logs = REPO / ".airflow" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in REPO.glob(".coverage.shard*"):
        old.unlink()
    pytest = [sys.executable, "-m", "pytest", "--cov", "--cov-report=", "--cov-fail-under=0", *args]
    processes: list[tuple[int, subprocess.Popen[str], threading.Thread]] = []
    for k in range(1, n + 1):
        process = subprocess.Popen(
            pytest,
            cwd=REPO,
            env=shard_env(k, n),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        prefix = f"[{k}/{n}] " if n > 1 else ""
        reader = threading.Thread(target=stream, args=(process, prefix, logs / f"shard-{k}.log"), daemon=True)
        reader.start()
        processes.append((k, process, reader))
    codes: dict[int, int] = {}
    for k, process, reader in processes:
        codes[k] = process.wait()
        reader.join()
    ran = [code for code in codes.values() if code != NO_TESTS]
    worst = max(ran) if ran else NO_TESTS
    for k, code in codes.items():
        print(f"run_tests: shard {k}/{n} exited {code} (log: {logs / f'shard-{k}.log'})", flush=True)
    data = [str(path) for path in sorted(REPO.glob(".coverage.shard*"))]
    if not data:
        return worst
    coverage = [sys.executable, "-m", "coverage"]
    subprocess.run([*coverage, "combine", "-q", *data], cwd=REPO, check=True)
    # the project's fail_under is about the whole suite: a run of chosen tests reports without judging
    judge = [] if not args else ["--fail-under=0"]
    report = subprocess.run([*coverage, "report", *judge], cwd=REPO).returncode
    return worst or report


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
