"""The ``python -m airflow_provider_loyalty.sandbox`` command: start, serve, stop on SIGTERM."""

from __future__ import annotations

import json
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


def _cli_env(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m airflow_provider_loyalty.sandbox env ...`` as a user would."""
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_loyalty.sandbox", "env", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": python_path},
    )


def _eval_in_bash(exports: str) -> dict[str, str]:
    """Return the AIRFLOW_CONN_* variables a shell has after ``eval "$exports"``."""
    shell = subprocess.run(
        ["bash", "-c", 'eval "$1" && env -0', "bash", exports],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert shell.returncode == 0, shell.stderr
    pairs = (entry.split("=", 1) for entry in shell.stdout.split("\0") if "=" in entry)
    return {name: value for name, value in pairs if name.startswith("AIRFLOW_CONN_")}


def test_every_cli_option_has_a_help_text() -> None:
    """``--help`` describes every option of the server and of ``env``, and the server's names ``env``."""
    import argparse

    from airflow_provider_loyalty.sandbox.__main__ import _env_parser, _parser, main

    for parser in (_parser(), _env_parser()):
        undocumented = [
            "/".join(action.option_strings) or action.dest
            for action in parser._actions
            if not action.help or action.help == argparse.SUPPRESS
        ]
        assert undocumented == [], f"{parser.prog}: options without --help text: {undocumented}"
        assert len(parser._actions) > 3
    for argv, expected in ((["--help"], " env --port PORT"), (["env", "--help"], "--new-xoxoday-pair")):
        result = subprocess.run(
            [sys.executable, "-m", "airflow_provider_loyalty.sandbox", *argv], capture_output=True, text=True, cwd=REPO
        )
        assert result.returncode == 0 and expected in result.stdout, result.stdout + result.stderr
    with pytest.raises(SystemExit):
        main(["env", "--no-such-option"])


def test_env_prints_exports_a_shell_evaluates_into_working_connections(tmp_path: Path) -> None:
    """``env`` against a running sandbox: bash evals it; the JSONs parse, point there and authenticate."""
    from airflow.models.connection import Connection

    from airflow_provider_loyalty.sandbox import Sandbox, generate_dataset
    from tests.sandbox.helpers import basic_header, revoke

    warehouse = tmp_path / "dir with 'quote'" / "warehouse.duckdb"
    with Sandbox(dataset=generate_dataset(seed=3, points=5, earns=5, big_customer_earns=0)) as sandbox:
        port = sandbox.url.rsplit(":", 1)[1]
        result = _cli_env("--port", port, "--warehouse", str(warehouse))
        assert result.returncode == 0, result.stderr
        assert all(line.startswith("export AIRFLOW_CONN_") for line in result.stdout.splitlines())
        conns = _eval_in_bash(result.stdout)
        assert set(conns) == {
            "AIRFLOW_CONN_XOXODAY_DEFAULT",
            "AIRFLOW_CONN_CAPILLARY_DEFAULT",
            "AIRFLOW_CONN_LOYALTY_WAREHOUSE",
        }
        parsed = {name: Connection.from_json(value, conn_id=name[14:].lower()) for name, value in conns.items()}
        assert parsed["AIRFLOW_CONN_LOYALTY_WAREHOUSE"].conn_type == "duckdb"
        assert parsed["AIRFLOW_CONN_LOYALTY_WAREHOUSE"].host == str(warehouse)
        xoxoday, capillary = parsed["AIRFLOW_CONN_XOXODAY_DEFAULT"], parsed["AIRFLOW_CONN_CAPILLARY_DEFAULT"]
        assert (xoxoday.conn_type, capillary.conn_type) == ("xoxoday", "capillary")
        assert xoxoday.host == capillary.host == sandbox.url
        current = sandbox.xoxoday_tokens()
        assert xoxoday.extra_dejson == {
            "access_token": current["access_token"],
            "refresh_token": current["refresh_token"],
        }
        with requests.Session() as http:
            assert cancel(http, xoxoday.host, [1], token=xoxoday.extra_dejson["access_token"]).status_code == 200
            assert cancel(http, xoxoday.host, [1], token="not-the-token").status_code == 401
            answer = revoke(
                http, capillary.host, 1, [("p", ["e"])], headers=basic_header(capillary.login, capillary.password)
            )
            assert answer.status_code not in (401, 403), answer.text

            # A restarted sandbox: a new pair, now the one the sandbox holds.
            renewed = _cli_env("--url", sandbox.url + "/", "--new-xoxoday-pair")
            assert renewed.returncode == 0, renewed.stderr
            extra = json.loads(json.loads(_eval_in_bash(renewed.stdout)["AIRFLOW_CONN_XOXODAY_DEFAULT"])["extra"])
            assert extra["refresh_token"] != current["refresh_token"]
            assert extra["refresh_token"] == sandbox.xoxoday_tokens()["refresh_token"]
            assert cancel(http, sandbox.url, [1], token=extra["access_token"]).status_code == 200


def test_env_says_when_no_sandbox_answers_and_prints_offline(tmp_path: Path) -> None:
    """Nothing listening: exit 1, nothing to eval, the URL and the cause named; ``--offline`` still prints."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])  # closed again below: nobody listens there
    result = _cli_env("--port", port)
    assert result.returncode == 1 and result.stdout == ""
    assert f"http://127.0.0.1:{port}" in result.stderr and "refused" in result.stderr.lower(), result.stderr
    missing = _cli_env("--ready-file", str(tmp_path / "absent"))
    assert missing.returncode == 1 and "absent" in missing.stderr
    offline = _cli_env("--offline", "--host", "::1", "--port", port, "--xoxoday-access-token", "it's")
    assert offline.returncode == 0, offline.stderr
    conn = json.loads(_eval_in_bash(offline.stdout)["AIRFLOW_CONN_XOXODAY_DEFAULT"])
    assert conn["host"] == f"http://[::1]:{port}"
    assert json.loads(conn["extra"])["access_token"] == "it's"
