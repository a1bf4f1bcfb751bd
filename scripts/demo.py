"""`make demo`: the daily reversal DAG end to end on an embedded DuckDB warehouse and the vendor sandbox.

1. an Airflow home in .demo/airflow (migrated once), 2. a DuckDB warehouse seeded with a day of
reversals (kept between runs, so the second run finds everything done), 3. the sandbox started
with the same deterministic dataset, 4. connections set through AIRFLOW_CONN_*, 5. `airflow dags
test loyalty_daily_reversals`, 6. a short summary from the ledger. `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
HOME = DEMO / "airflow"
WAREHOUSE = DEMO / "warehouse.duckdb"
LOG = DEMO / "last-run.log"
DAG_ID = "loyalty_daily_reversals"
SEED, POINTS, EARNS = 42, 2000, 3000


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def airflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    return env


def airflow(*args: str, env: dict[str, str], log: Path | None = None) -> int:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    if log is None:
        return subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT).returncode
    with log.open("w") as out:
        return subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def seed_warehouse(today: date) -> None:
    from airflow_provider_loyalty.sandbox import generate_dataset, write_duckdb

    dataset = generate_dataset(seed=SEED, points=POINTS, earns=EARNS, reversal_date=today)
    write_duckdb(WAREHOUSE, dataset, today)
    say(
        f"seeded {WAREHOUSE.relative_to(ROOT)}: {len(dataset.point_reversals)} point reversals, "
        f"{len(dataset.earn_reversals)} earn reversals (some already redeemed, some invalid)"
    )


def start_sandbox(access: str, refresh: str) -> tuple[subprocess.Popen[bytes], str]:
    ready = DEMO / "sandbox.url"
    ready.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_loyalty.sandbox",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--seed",
            str(SEED),
            "--points",
            str(POINTS),
            "--earns",
            str(EARNS),
            "--latency-ms",
            "30",
            "--xoxoday-access-token",
            access,
            "--xoxoday-refresh-token",
            refresh,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(DEMO / "sandbox.log").open("w"),
    )
    from airflow_provider_loyalty.sandbox import wait_for_url

    try:
        return process, wait_for_url(ready, process, timeout=30)
    except RuntimeError as exc:
        process.kill()
        raise SystemExit(f"{exc}; see {DEMO / 'sandbox.log'}") from None


def ledger_report(since: datetime) -> dict[str, Counter[tuple[str, ...]]]:
    import duckdb

    with duckdb.connect(str(WAREHOUSE), read_only=True) as db:
        pending = {
            "points": db.execute("SELECT COUNT(*) FROM loyalty_points_reversals").fetchone()[0],
            "earns": db.execute("SELECT COUNT(*) FROM loyalty_earn_reversals").fetchone()[0],
        }
        done = dict(
            db.execute(
                "SELECT vendor, COUNT(DISTINCT item_key) FROM loyalty_reversal_ledger WHERE status = 'succeeded' GROUP BY 1"
            ).fetchall()
        )
        refused = dict(
            db.execute(
                "SELECT vendor, COUNT(DISTINCT item_key) FROM loyalty_reversal_ledger l WHERE failure_kind = 'permanent' "
                "AND NOT EXISTS (SELECT 1 FROM loyalty_reversal_ledger s WHERE s.vendor = l.vendor "
                "AND s.item_key = l.item_key AND s.status = 'succeeded') GROUP BY 1"
            ).fetchall()
        )
        rows = db.execute(
            "SELECT vendor, status, COALESCE(failure_kind, ''), COALESCE(code, ''), COALESCE(message, '') "
            "FROM loyalty_reversal_ledger WHERE recorded_at >= ?",
            [since.replace(tzinfo=None)],
        ).fetchall()
    this_run: Counter[tuple[str, ...]] = Counter(rows)
    return {"pending": Counter(pending), "done": Counter(done), "refused": Counter(refused), "run": this_run}


def print_summary(report: dict[str, Counter[tuple[str, ...]]], seconds: float) -> None:
    run = report["run"]
    names = {"xoxoday": ("Xoxoday points", "cancelled"), "capillary": ("Capillary earns", "revoked")}
    print()
    print(f"Reversal run finished in {seconds:.0f} s")
    for vendor, (label, verb) in names.items():
        ok = sum(n for key, n in run.items() if key[0] == vendor and key[1] == "succeeded")
        failed = [(key, n) for key, n in run.items() if key[0] == vendor and key[1] == "failed"]
        total_failed = sum(n for _, n in failed)
        pending = report["pending"]["points" if vendor == "xoxoday" else "earns"]
        done_before = report["done"][vendor] - ok
        refused_before = max(0, report["refused"][vendor] - total_failed)
        line = f"  {label}: {pending} in the warehouse; this run {verb} {ok}, failed {total_failed}; "
        line += f"already done before: {done_before}"
        if refused_before:
            line += f", refused before (not resent): {refused_before}"
        print(line)
        for (_, _, kind, code, message), n in sorted(failed, key=lambda kv: -kv[1]):
            print(f"      {n:5d} x {code or '?'} ({kind}): {message}")
    print()
    print(
        f"  Ledger: .demo/warehouse.duckdb table loyalty_reversal_ledger ({sum(report['done'].values())} items done)."
        f"  Task logs: {LOG.relative_to(ROOT)}"
    )
    if not run:
        print(
            "  Nothing was left to reverse: every pending row is done or refused per the ledger (run `make demo` with "
            "DEMO_ARGS=--fresh to start over)."
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fresh", action="store_true", help="delete the demo warehouse and Airflow home first")
    args = parser.parse_args()
    if args.fresh and DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir(exist_ok=True)
    env = airflow_env()
    started = time.monotonic()

    if not (HOME / ".migrated").exists():
        say("initialising the Airflow metadata database (first run only)")
        HOME.mkdir(parents=True, exist_ok=True)
        if airflow("db", "migrate", env=env, log=DEMO / "migrate.log") != 0:
            raise SystemExit(f"airflow db migrate failed; see {DEMO / 'migrate.log'}")
        (HOME / ".migrated").touch()
    today = datetime.now(timezone.utc).date()
    if WAREHOUSE.exists():
        say(f"reusing {WAREHOUSE.relative_to(ROOT)} and its ledger (second run: what is done is skipped)")
    else:
        seed_warehouse(today)

    # A new dashboard pair for this sandbox instance; the hook rotates it and stores the new pair
    # in an Airflow Variable, as it would against Xoxoday.
    access, refresh = f"demo-access-{secrets.token_hex(8)}", f"demo-refresh-{secrets.token_hex(8)}"
    sandbox, url = start_sandbox(access, refresh)
    say(f"vendor sandbox on {url}")
    from airflow_provider_loyalty.sandbox import connection_env

    env.update(connection_env(url, access_token=access, refresh_token=refresh))
    env["AIRFLOW_CONN_LOYALTY_WAREHOUSE"] = json.dumps({"conn_type": "duckdb", "host": str(WAREHOUSE)})

    since = datetime.now(timezone.utc)
    say(f"running `airflow dags test {DAG_ID}` (task logs: {LOG.relative_to(ROOT)})")
    run_started = time.monotonic()
    try:
        code = airflow("dags", "test", DAG_ID, env=env, log=LOG)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    run_seconds = time.monotonic() - run_started
    print_summary(ledger_report(since), run_seconds)
    if code != 0:
        print(f"\nThe DAG run FAILED (exit {code}). Last lines of {LOG.relative_to(ROOT)}:")
        print("".join(LOG.read_text().splitlines(keepends=True)[-40:]))
        return 1
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
