"""The ``python -m airflow_provider_loyalty.sandbox`` command: start, serve, stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import requests

from tests.sandbox.helpers import cancel

REPO = Path(__file__).resolve().parents[2]


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``--port 0 --ready-file`` publishes the URL atomically; the warehouse is written; SIGTERM stops it."""
    ready = tmp_path / "sandbox.url"
    warehouse = tmp_path / "warehouse.duckdb"
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path}
    command = [
        sys.executable,
        "-m",
        "airflow_provider_loyalty.sandbox",
        "--port",
        "0",
        "--ready-file",
        str(ready),
        "--points",
        "50",
        "--earns",
        "80",
        "--big-customer-earns",
        "20",
        "--warehouse",
        str(warehouse),
        "--reversal-date",
        "2025-03-01",
        "--xoxoday-rpm",
        "600",
        "--no-retry-after",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "sandbox did not become ready"
            time.sleep(0.02)
        url = ready.read_text()
        assert url.startswith("http://127.0.0.1:")
        with requests.Session() as http:
            config = http.get(url + "/_sandbox/config", timeout=5).json()
            assert (config["xoxoday_rpm"], config["capillary_retry_after"]) == (600, False)
            assert cancel(http, url, [1]).json()["data"]["cancelBalance"]["recipients"][0]["success"] is False
            stats = http.get(url + "/_sandbox/stats", timeout=5).json()
            assert stats["xoxoday"]["points"] == 54  # 49 known reversal ids + 5 others
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM loyalty_earn_reversals").fetchone() == (80,)
        finally:
            con.close()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"sandbox listening on {url}" in stdout.splitlines()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_launch_helpers_point_airflow_at_a_sandbox_process(tmp_path) -> None:
    """``wait_for_url`` reads the ready file; ``connection_env`` gives connections that authenticate there."""
    import json

    from airflow_provider_loyalty.sandbox import connection_env, wait_for_url

    ready = tmp_path / "url"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_loyalty.sandbox",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--points",
            "5",
            "--earns",
            "5",
            "--big-customer-earns",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = wait_for_url(ready, process, timeout=30)
        env = connection_env(url, access_token="a-1", refresh_token="r-1")
        xoxoday = json.loads(env["AIRFLOW_CONN_XOXODAY_DEFAULT"])
        assert xoxoday["host"] == url and json.loads(xoxoday["extra"]) == {
            "access_token": "a-1",
            "refresh_token": "r-1",
        }
        capillary = json.loads(env["AIRFLOW_CONN_CAPILLARY_DEFAULT"])
        assert requests.get(f"{capillary['host']}/_sandbox/stats", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(RuntimeError, match="exited with status 3"):
        wait_for_url(tmp_path / "never", dead, timeout=5)
