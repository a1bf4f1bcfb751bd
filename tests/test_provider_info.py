"""Provider info validates against Airflow's schemas; Airflow discovers the provider and both forms."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import airflow
import jsonschema

from airflow_provider_loyalty import __version__
from airflow_provider_loyalty.get_provider_info import get_provider_info

AIRFLOW_DIR = pathlib.Path(airflow.__file__).parent


def test_provider_info_validates_against_airflows_schemas() -> None:
    info = get_provider_info()
    jsonschema.validate(info, json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text()))
    yaml_schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    conn_schema = yaml_schema["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], conn_schema)
    behaviour_schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    for conn in info["connection-types"]:
        behaviour = conn["ui-field-behaviour"]
        jsonschema.validate(
            {
                "hidden_fields": behaviour["hidden-fields"],
                "relabeling": behaviour["relabeling"],
                "placeholders": behaviour["placeholders"],
            },
            behaviour_schema,
        )
    assert info["package-name"] == "airflow-provider-loyalty"
    assert info["versions"] == [__version__]


def test_connection_forms_mask_secrets_and_have_no_null_choices() -> None:
    forms = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert set(forms) == {"xoxoday", "capillary"}
    xoxo = forms["xoxoday"]
    assert xoxo["hook-class-name"] == "airflow_provider_loyalty.hooks.xoxoday.XoxodayHook"
    for secret in ("access_token", "refresh_token"):
        assert xoxo["conn-fields"][secret]["schema"]["format"] == "password"
    assert xoxo["ui-field-behaviour"]["relabeling"] == {
        "host": "Base URL",
        "login": "Client ID",
        "password": "Client Secret",
    }
    auth = forms["capillary"]["conn-fields"]["auth_type"]["schema"]
    assert auth["enum"] == ["basic", "oauth"] and auth["default"] == "basic" and None not in auth["enum"]


def test_hooks_declare_what_airflow_needs() -> None:
    from airflow_provider_loyalty.hooks.capillary import CapillaryHook
    from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook

    for hook, conn_type, attr, default in (
        (XoxodayHook, "xoxoday", "xoxoday_conn_id", "xoxoday_default"),
        (CapillaryHook, "capillary", "capillary_conn_id", "capillary_default"),
    ):
        assert (hook.conn_type, hook.conn_name_attr, hook.default_conn_name) == (conn_type, attr, default)
        assert hook.hook_name
        assert callable(hook.test_connection)


def test_airflow_cli_lists_provider_and_both_connection_types() -> None:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    cli = [sys.executable, "-m", "airflow"]
    providers = subprocess.run(
        [*cli, "providers", "list", "-o", "json"], capture_output=True, text=True, env=env, timeout=180
    )
    assert providers.returncode == 0, providers.stderr[-2000:]
    names = {p["package_name"]: p for p in json.loads(providers.stdout)}
    assert names["airflow-provider-loyalty"]["version"] == __version__
    hooks = subprocess.run(
        [*cli, "providers", "hooks", "-o", "json"], capture_output=True, text=True, env=env, timeout=180
    )
    assert hooks.returncode == 0, hooks.stderr[-2000:]
    by_type = {h["connection_type"]: h for h in json.loads(hooks.stdout)}
    assert by_type["xoxoday"]["class"] == "airflow_provider_loyalty.hooks.xoxoday.XoxodayHook"
    assert by_type["capillary"]["class"] == "airflow_provider_loyalty.hooks.capillary.CapillaryHook"


def test_providers_manager_builds_our_forms() -> None:
    """What the Add Connection form reads (GET /ui/connections/hook_meta) comes from these."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    assert widgets["extra__xoxoday__access_token"].is_sensitive
    assert widgets["extra__xoxoday__refresh_token"].is_sensitive
    assert not widgets["extra__xoxoday__api_path"].is_sensitive
    assert widgets["extra__capillary__auth_type"].field["schema"]["enum"] == ["basic", "oauth"]
    behaviours = manager.field_behaviours
    assert behaviours["capillary"]["relabeling"]["host"] == "Cluster base URL"
    assert "schema" in behaviours["xoxoday"]["hidden_fields"]
