"""Pointing Airflow at a running sandbox: its URL from ``--ready-file``, and the connections to it.

Shared by ``make demo``, the benchmarks, the cluster test and the end-to-end tests, so that the
sandbox's credentials are spelt out once. Standard library only, like the rest of the sandbox.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from airflow_provider_loyalty.sandbox.config import (
    CAPILLARY_PASSWORD,
    CAPILLARY_TILL,
    XOXODAY_ACCESS_TOKEN,
    XOXODAY_CLIENT_ID,
    XOXODAY_CLIENT_SECRET,
    XOXODAY_REFRESH_TOKEN,
)


def connection_env(
    url: str,
    *,
    access_token: str = XOXODAY_ACCESS_TOKEN,
    refresh_token: str = XOXODAY_REFRESH_TOKEN,
) -> dict[str, str]:
    """Return ``AIRFLOW_CONN_XOXODAY_DEFAULT`` and ``AIRFLOW_CONN_CAPILLARY_DEFAULT`` for the sandbox at ``url``.

    :param url: the sandbox's base URL.
    :param access_token: the Xoxoday pair the connection starts from (the sandbox's initial one, or
        the one given with ``--xoxoday-access-token``/``--xoxoday-refresh-token``).
    :param refresh_token: see ``access_token``.
    """
    xoxoday = {
        "conn_type": "xoxoday",
        "host": url,
        "login": XOXODAY_CLIENT_ID,
        "password": XOXODAY_CLIENT_SECRET,
        "extra": json.dumps({"access_token": access_token, "refresh_token": refresh_token}),
    }
    capillary = {
        "conn_type": "capillary",
        "host": url,
        "login": CAPILLARY_TILL,
        "password": CAPILLARY_PASSWORD,
        "extra": json.dumps({"auth_type": "basic"}),
    }
    return {
        "AIRFLOW_CONN_XOXODAY_DEFAULT": json.dumps(xoxoday),
        "AIRFLOW_CONN_CAPILLARY_DEFAULT": json.dumps(capillary),
    }


def warehouse_env(path: Path | str, conn_id: str = "loyalty_warehouse") -> dict[str, str]:
    """Return ``AIRFLOW_CONN_<CONN_ID>`` for a DuckDB warehouse file (what ``--warehouse`` wrote).

    :param path: the DuckDB file; made absolute, so the connection works from any directory.
    :param conn_id: the connection id (the example DAGs use ``loyalty_warehouse``).
    """
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": "duckdb", "host": str(Path(path).resolve())})}


def wait_for_url(ready_file: Path, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> str:
    """Wait until a sandbox started with ``--ready-file`` serves; return its base URL.

    :raises RuntimeError: the process exited first, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with status {process.returncode} before serving")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sandbox did not serve within {timeout:.0f} s")
        time.sleep(0.02)
    return ready_file.read_text().strip()
