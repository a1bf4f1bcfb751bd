"""`make ui`: Airflow's api-server on the demo's Airflow home and warehouse, to click through the Reversals page.

Run `make demo` first (it leaves `.demo/airflow`, the Airflow home with its metadata DB, and
`.demo/warehouse.duckdb`, the warehouse holding the ledger). This starts `airflow api-server` on
loopback with the ledger connection set, prints the URL and the login, and runs until Ctrl-C.
`--check` starts it, logs in, reads the page and the JSON endpoint, prints the numbers and stops.

Only the api-server runs: the UI's scheduler, triggerer and dag-processor badges are red, and that
is expected. The DuckDB file has one writer at a time: while `make demo` writes the ledger, the page
gives way (short read-only reads, backing off on the writer's lock) and may answer "busy" meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
HOME = DEMO / "airflow"
WAREHOUSE = DEMO / "warehouse.duckdb"
LOG = DEMO / "api-server.log"
PASSWORDS = HOME / "simple_auth_manager_passwords.json.generated"


def say(message: str) -> None:
    print(f"[ui] {message}", flush=True)


def login_password(user: str) -> str:
    """The user's password in SimpleAuthManager's password file, created on first use."""
    passwords: dict[str, str] = {}
    if PASSWORDS.exists() and PASSWORDS.read_text().strip():
        passwords = json.loads(PASSWORDS.read_text())
    if user not in passwords:
        passwords[user] = secrets.token_urlsafe(12)
        PASSWORDS.write_text(json.dumps(passwords) + "\n")
        PASSWORDS.chmod(0o600)
    return passwords[user]


def free_port(host: str, wanted: int) -> int:
    """``wanted`` if it is free on ``host``, else any free port."""
    for port in (wanted, 0):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise SystemExit(f"no free port on {host}")


def server_env(user: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{user}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__LOYALTY__LEDGER_CONN_ID="loyalty_warehouse",
        AIRFLOW__LOYALTY__LEDGER_TABLE="loyalty_reversal_ledger",
        AIRFLOW_CONN_LOYALTY_WAREHOUSE=json.dumps({"conn_type": "duckdb", "host": str(WAREHOUSE)}),
        PYTHONUNBUFFERED="1",
    )
    return env


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the api-server exited ({process.returncode}); see {LOG.relative_to(ROOT)}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the api-server did not answer within {timeout:.0f} s; see {LOG.relative_to(ROOT)}")


def check(url: str, user: str, password: str) -> None:
    """Log in, fetch the page and the summary; fail loudly if anything is off."""
    anonymous = urllib.request.Request(f"{url}/loyalty/api/summary")
    try:
        urllib.request.urlopen(anonymous, timeout=10)
        raise SystemExit("an anonymous request read the summary: the app is not protected")
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise SystemExit(f"anonymous request answered {exc.code}, expected 401") from None
    body = json.dumps({"username": user, "password": password}).encode()
    request = urllib.request.Request(
        f"{url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        token = json.loads(response.read())["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/loyalty/reversals", headers=headers), timeout=30) as r:
        page = r.read().decode()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/loyalty/api/summary", headers=headers), timeout=30) as r:
        summary = json.loads(r.read())
    if "<h1>Reversals</h1>" not in page:
        raise SystemExit("the Reversals page did not render")
    for total in summary["totals"]:
        say(
            f"{total['vendor']}: {total['succeeded']} succeeded ({total['reconciled']} reconciled), "
            f"{total['failed_permanent']} failed (permanent), {total['failed_transient']} failed (transient), "
            f"{total['failed_rejected']} rejected requests, {total['in_doubt']} in doubt now, "
            f"{total['skipped']} skipped in the last 30 days"
        )
    say("check passed: anonymous 401, logged-in page and JSON served")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="port (another free one if taken)")
    parser.add_argument("--user", default="admin", help="SimpleAuthManager user (admin role)")
    parser.add_argument("--check", action="store_true", help="start, check the page and the JSON, stop")
    args = parser.parse_args()

    if not (HOME / ".migrated").exists() or not WAREHOUSE.exists():
        say("no demo yet: run `make demo` first (it creates .demo/airflow and .demo/warehouse.duckdb)")
        return 1
    password = login_password(args.user)
    port = free_port(args.host, args.port)
    if port != args.port:
        say(f"port {args.port} is taken; using {port}")
    env = server_env(args.user)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{port}"
    command = [str(Path(sys.executable).with_name("airflow")), "api-server", "--host", args.host, "--port", str(port)]
    say(f"starting the api-server (log: {LOG.relative_to(ROOT)})")
    # `kill <pid>` stops the server too (the default SIGTERM action would skip the clean-up below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with LOG.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(url, process)
        if args.check:
            check(url, args.user, password)
            return 0
        print()
        print(f"  Airflow UI:      {url}/")
        print(f"  Reversals page:  {url}/plugin/reversals   (Browse -> Reversals)")
        print(f"  JSON:            {url}/loyalty/api/summary, {url}/loyalty/api/items?q=<id>")
        print(f"  Login:           {args.user} / {password}")
        print(f"  Ledger:          {WAREHOUSE.relative_to(ROOT)} (connection loyalty_warehouse)")
        print("  Note:            only the api-server runs, so the UI shows the scheduler, triggerer and")
        print("                   dag-processor as unhealthy (red badges): expected, the page needs none of them.")
        print("  Ctrl-C stops the server.")
        print()
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        say("api-server stopped")


if __name__ == "__main__":
    sys.exit(main())
