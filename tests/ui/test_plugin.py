"""The plugin: what Airflow reads from it, how it is found, and that loading it stays cheap."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import date

import pytest

from tests.conftest import REPO

PLUGIN_PATH = "airflow_provider_loyalty.ui.plugin:LoyaltyReversalsPlugin"


def test_plugin_declares_a_mounted_app_and_a_browse_view() -> None:
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse

    from airflow_provider_loyalty.ui import app as ui_app
    from airflow_provider_loyalty.ui.plugin import URL_PREFIX, LazyASGIApp, LoyaltyReversalsPlugin

    assert URL_PREFIX == ui_app.URL_PREFIX
    (mounted,) = LoyaltyReversalsPlugin.fastapi_apps
    assert isinstance(mounted["app"], LazyASGIApp)
    FastAPIAppResponse.model_validate({**mounted, "app": "LazyASGIApp"})
    assert not any(mounted["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    (view,) = LoyaltyReversalsPlugin.external_views
    parsed = ExternalViewResponse.model_validate(view)
    assert (parsed.name, parsed.category, parsed.destination, parsed.url_route) == (
        "Reversals",
        "browse",
        "nav",
        "reversals",
    )
    assert parsed.href == "/loyalty/reversals" and parsed.icon == "/loyalty/static/reversals-icon.svg"


def test_lazy_app_is_built_once_on_first_request() -> None:
    from airflow_provider_loyalty.ui.plugin import LazyASGIApp

    calls: list[str] = []

    async def fake_app(scope, receive, send) -> None:
        calls.append(scope["path"])

    lazy = LazyASGIApp("tests.ui.test_plugin:_factory")
    _factory.built = 0  # type: ignore[attr-defined]
    _factory.app = fake_app  # type: ignore[attr-defined]
    assert lazy._app is None
    for path in ("/a", "/b"):
        asyncio.run(lazy({"type": "http", "path": path}, None, None))  # type: ignore[arg-type]
    assert calls == ["/a", "/b"] and _factory.built == 1  # type: ignore[attr-defined]


def _factory():
    _factory.built += 1  # type: ignore[attr-defined]
    return _factory.app  # type: ignore[attr-defined]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Not from the checkout's root: a build's leftover *.egg-info there would list the distribution twice.
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(REPO),
        env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **env},
    )


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """Schedulers and workers load plugins too: no FastAPI, Jinja, DuckDB or pydantic models at import."""
    result = _python(
        """
        import sys, json
        from airflow_provider_loyalty.ui.plugin import LoyaltyReversalsPlugin
        heavy = ["fastapi", "duckdb", *(f"airflow_provider_loyalty.ui.{m}" for m in ("app", "reader", "queries", "aggregate", "models", "connections"))]
        print(json.dumps([m for m in heavy if m in sys.modules]))
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_airflow_loads_the_plugin(tmp_path) -> None:
    """Through the installed distribution's ``airflow.plugins`` entry point (nothing in the plugins folder)."""
    result = _python(
        """
        import json
        from airflow import plugins_manager
        plugins, errors = plugins_manager._get_plugins()
        views, _ = plugins_manager._get_ui_plugins()
        apps, _ = plugins_manager.get_fastapi_plugins()
        print(json.dumps({
            "plugins": [p.name for p in plugins],
            "errors": errors,
            "views": [v["name"] for v in views],
            "apps": [a["url_prefix"] for a in apps],
        }))
        """,
        AIRFLOW__CORE__PLUGINS_FOLDER=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "loyalty_reversals" in found["plugins"] and found["errors"] == {}
    assert "Reversals" in found["views"] and "/loyalty" in found["apps"]


def test_entry_point_declared_in_pyproject_names_the_plugin() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["entry-points"]["airflow.plugins"] == {"loyalty_reversals": PLUGIN_PATH}


def test_chart_has_a_bar_per_day_and_escapes_nothing_unsafe() -> None:
    from airflow_provider_loyalty.ui.chart import day_bars, render_svg
    from airflow_provider_loyalty.ui.models import DayCounts

    rows = [
        DayCounts(day=date(2026, 3, 3), vendor="xoxoday", succeeded=5, refused=1, skipped=None),
        DayCounts(day=date(2026, 3, 3), vendor="capillary", succeeded=2, failed=2, skipped=4),
        DayCounts(day=date(2026, 2, 1), vendor="xoxoday", succeeded=99),  # before the window: ignored
    ]
    bars = day_bars(date(2026, 3, 1), date(2026, 3, 3), rows)
    assert [b.day.day for b in bars] == [1, 2, 3]
    assert (bars[2].succeeded, bars[2].refused, bars[2].failed, bars[2].skipped) == (7, 1, 2, 4)
    svg = render_svg(bars)
    assert svg.count('<g class="day"') == 3 and svg.count('class="bar-succeeded"') == 1
    assert "2026-03-03: 7 succeeded, 1 refused (permanent), 2 still failing, 4 skipped (already done)" in svg
    assert "<script" not in svg and "style=" not in svg
    empty = render_svg(day_bars(date(2026, 3, 1), date(2026, 3, 1), []))
    assert 'class="bar-' not in empty


def test_chart_scales_to_the_days_and_counts_it_has() -> None:
    """One day of 18,402 outcomes in a 30-day window: one bar, an axis to 20,000, a narrow chart."""
    from airflow_provider_loyalty.ui.chart import MAX_SLOT, WIDTH, day_bars, nice_top, render_svg, with_data
    from airflow_provider_loyalty.ui.models import DayCounts

    rows = [DayCounts(day=date(2026, 12, 7), vendor="xoxoday", succeeded=18_000, failed=402)]
    bars = with_data(day_bars(date(2026, 11, 8), date(2026, 12, 7), rows))
    assert [b.day for b in bars] == [date(2026, 12, 7)]
    svg = render_svg(bars)
    assert svg.count('<g class="day"') == 1
    assert 'data-axis-top="20000">20,000<' in svg and ">10,000<" in svg
    width = int(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    assert width < WIDTH / 4 and width <= 48 + MAX_SLOT + 4 + 72
    empty_first = DayCounts(day=date(2026, 11, 8), vendor="xoxoday")
    assert len(with_data(day_bars(date(2026, 11, 8), date(2026, 12, 7), [*rows, empty_first]))) == 1
    first = DayCounts(day=date(2026, 11, 8), vendor="xoxoday", succeeded=1)
    assert len(with_data(day_bars(date(2026, 11, 8), date(2026, 12, 7), [*rows, first]))) == 30
    assert [nice_top(n) for n in (0, 1, 3, 7, 10, 11, 26, 18_402, 100_001)] == [
        1,
        1,
        5,
        10,
        10,
        20,
        50,
        20_000,
        200_000,
    ]


def test_links_follow_airflow_under_a_base_path(monkeypatch, duckdb_ledger, token) -> None:
    """With ``[api] base_url`` = ``https://example.test/airflow/``: the menu entry, assets and run links."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_provider_loyalty.ui.app import create_app
    from airflow_provider_loyalty.ui.plugin import _ui_root

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://example.test/airflow/")
    assert _ui_root() == "/airflow"
    parent = FastAPI(root_path="/airflow")  # as Airflow's create_app does for a base path
    parent.mount("/loyalty", create_app(skipped_source=None))
    client = TestClient(parent, headers={"Authorization": f"Bearer {token}"})
    summary = client.get("/airflow/loyalty/api/summary").json()
    assert summary["runs"][0]["run_url"].startswith("/airflow/dags/loyalty_daily_reversals/runs/")
    page = client.get("/airflow/loyalty/reversals").text
    assert 'href="/airflow/loyalty/static/reversals.css' in page and 'href="/airflow/dags/' in page
    redirect = client.get("/airflow/loyalty/", follow_redirects=False)
    assert redirect.headers["location"] == "/airflow/loyalty/reversals"
