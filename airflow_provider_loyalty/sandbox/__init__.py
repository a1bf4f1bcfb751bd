"""Local emulator of the Xoxoday Plum and Capillary APIs, written from the vendors' docs only.

In process::

    with Sandbox(SandboxConfig(capillary_rpm=1000), generate_dataset(seed=42)) as sandbox:
        ...  # point the connections' host at sandbox.url

As a process: ``python -m airflow_provider_loyalty.sandbox --port 0 --ready-file url.txt``; tests and
demos then steer it through the ``/_sandbox/...`` admin endpoints (stats, config, tokens, attempts).

Layout: ``server`` (HTTP plumbing, the vendor request pipeline, ``Sandbox``) serves ``xoxoday_api``,
``capillary_api`` and ``admin_api`` (sharing ``replies``); they act on ``state.SandboxState``, which
composes ``points``, ``earns``, ``limits``, ``faults``, ``tokens`` and ``stats`` behind one lock.
``config`` holds the settings and credentials, ``seed`` the generated dataset, ``launch`` the helpers to
reach a sandbox running as a process.
"""

from __future__ import annotations

from airflow_provider_loyalty.sandbox.config import (
    CAPILLARY_OAUTH_KEY,
    CAPILLARY_OAUTH_SECRET,
    CAPILLARY_PASSWORD,
    CAPILLARY_TILL,
    XOXODAY_ACCESS_TOKEN,
    XOXODAY_CLIENT_ID,
    XOXODAY_CLIENT_SECRET,
    XOXODAY_REFRESH_TOKEN,
    SandboxConfig,
)
from airflow_provider_loyalty.sandbox.launch import connection_env, wait_for_url
from airflow_provider_loyalty.sandbox.seed import Dataset, generate_dataset, write_duckdb
from airflow_provider_loyalty.sandbox.server import Sandbox

__all__ = [
    "CAPILLARY_OAUTH_KEY",
    "CAPILLARY_OAUTH_SECRET",
    "CAPILLARY_PASSWORD",
    "CAPILLARY_TILL",
    "XOXODAY_ACCESS_TOKEN",
    "XOXODAY_CLIENT_ID",
    "XOXODAY_CLIENT_SECRET",
    "XOXODAY_REFRESH_TOKEN",
    "Dataset",
    "Sandbox",
    "SandboxConfig",
    "connection_env",
    "generate_dataset",
    "wait_for_url",
    "write_duckdb",
]
