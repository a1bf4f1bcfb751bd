"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_loyalty import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider dict: hooks, operators and the two connection types with their forms."""
    return {
        "package-name": "airflow-provider-loyalty",
        "name": "Loyalty reversals (Xoxoday Plum, Capillary)",
        "description": "Cancel Xoxoday Plum points and revoke Capillary cart-promotion earns, exactly once.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Xoxoday Plum",
                "external-doc-url": "https://help-plum.xoxoday.com/",
                "tags": ["service"],
            },
            {
                "integration-name": "Capillary",
                "external-doc-url": "https://docs.capillarytech.com/",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "Xoxoday Plum", "python-modules": ["airflow_provider_loyalty.hooks.xoxoday"]},
            {"integration-name": "Capillary", "python-modules": ["airflow_provider_loyalty.hooks.capillary"]},
        ],
        "operators": [
            {"integration-name": "Xoxoday Plum", "python-modules": ["airflow_provider_loyalty.operators.xoxoday"]},
            {"integration-name": "Capillary", "python-modules": ["airflow_provider_loyalty.operators.capillary"]},
        ],
        "connection-types": [
            {
                "connection-type": "xoxoday",
                "hook-class-name": "airflow_provider_loyalty.hooks.xoxoday.XoxodayHook",
                "hook-name": "Xoxoday Plum",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "Base URL", "login": "Client ID", "password": "Client Secret"},
                    "placeholders": {
                        "host": "https://stagingstores.xoxoday.com (production: https://accounts.xoxoday.com)",
                        "login": "client_id from the Plum dashboard",
                        "password": "client_secret from the Plum dashboard",
                        "extra": '{"access_token": "...", "refresh_token": "..."}',
                    },
                },
                "conn-fields": {
                    "access_token": {
                        "label": "Access token",
                        "description": "First access token from the dashboard; rotated tokens are kept in the "
                        "Variable loyalty_xoxoday_token__<conn_id>.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "refresh_token": {
                        "label": "Refresh token",
                        "description": "First refresh token from the dashboard. Xoxoday rotates it on every refresh; "
                        "paste a new one here only to replace the stored pair.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "api_path": {
                        "label": "API path",
                        "description": "Path of the points API (the /cancelPoints suffix in Xoxoday's docs is virtual).",
                        "schema": {"type": ["string", "null"], "default": "/chef/v1/oauth/api"},
                    },
                    # not "token_path": Airflow's form redacts fields whose names look secret
                    "refresh_path": {
                        "label": "Token refresh path",
                        "schema": {"type": ["string", "null"], "default": "/chef/v1/oauth/token/company"},
                    },
                },
            },
            {
                "connection-type": "capillary",
                "hook-class-name": "airflow_provider_loyalty.hooks.capillary.CapillaryHook",
                "hook-name": "Capillary",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Cluster base URL",
                        "login": "Till ID or OAuth client key",
                        "password": "Till password or OAuth client secret",
                    },
                    "placeholders": {
                        "host": "https://eu.api.capillarytech.com",
                        "login": "till id (basic) or client key (oauth)",
                        "password": "plain till password (sent md5-hashed) or client secret",
                        "extra": '{"auth_type": "basic"}',
                    },
                },
                "conn-fields": {
                    "auth_type": {
                        "label": "Auth type",
                        "description": "basic: till id + password (md5-hashed per Capillary); oauth: client key + "
                        "secret, token sent as X-CAP-API-OAUTH-TOKEN.",
                        "schema": {"type": "string", "enum": ["basic", "oauth"], "default": "basic"},
                    },
                },
            },
        ],
    }
