"""The ``export AIRFLOW_CONN_...`` examples of docs/connections.md parse and give the hooks the page promises."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

CONNECTIONS = Path(REPO, "docs", "connections.md").read_text()
BASH = "\n".join(re.findall(r"```bash\n(.*?)```", CONNECTIONS, flags=re.S))
EXPORTS = re.findall(r"export (AIRFLOW_CONN_\w+)='(.*?)'", BASH, flags=re.S)
WAREHOUSES = {
    json.loads(value)["conn_type"]: json.loads(value) for name, value in EXPORTS if name.endswith("_WAREHOUSE")
}


def test_readme_exports_are_json_connections() -> None:
    assert {"AIRFLOW_CONN_XOXODAY_DEFAULT", "AIRFLOW_CONN_CAPILLARY_DEFAULT"} <= {name for name, _ in EXPORTS}
    for name, value in EXPORTS:
        assert isinstance(json.loads(value)["conn_type"], str), name


def test_readme_shows_the_warehouse_for_duckdb_sqlite_and_postgres() -> None:
    assert set(WAREHOUSES) == {"duckdb", "sqlite", "postgres"}


@pytest.mark.parametrize("conn_type", ["duckdb", "sqlite", "postgres"])
def test_readme_warehouse_connection_gives_a_working_hook(
    conn_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's JSON, with a real file (or ``LOYALTY_TEST_POSTGRES_URI``'s server), answers a query."""
    from airflow.sdk import BaseHook

    fields = dict(WAREHOUSES[conn_type])
    expected_hook = {"duckdb": "DuckDBHook", "sqlite": "SqliteHook", "postgres": "PostgresHook"}[conn_type]
    if conn_type == "postgres":
        uri = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
        assert set(fields) == {"conn_type", "host", "port", "login", "password", "schema"}
        if uri:
            from urllib.parse import unquote, urlsplit

            parts = urlsplit(uri)
            fields.update(
                host=parts.hostname,
                port=parts.port or 5432,
                login=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                schema=parts.path.lstrip("/"),
            )
    else:
        fields["host"] = str(tmp_path / f"warehouse.{conn_type}")
    monkeypatch.setenv("AIRFLOW_CONN_LOYALTY_WAREHOUSE", json.dumps(fields))
    hook = BaseHook.get_connection("loyalty_warehouse").get_hook()
    assert type(hook).__name__ == expected_hook
    if conn_type == "postgres" and not os.environ.get("LOYALTY_TEST_POSTGRES_URI"):
        assert hook.get_uri().startswith("postgresql")
        pytest.skip("LOYALTY_TEST_POSTGRES_URI is not set: the PostgreSQL JSON is parsed, not connected")
    assert hook.get_first("SELECT 41 + 1") == (42,)
