"""An auth manager that can limit a user to some DAGs, for the Reversals page's permission tests.

Airflow's simple auth manager has roles only (every viewer reads every DAG). This real subclass,
configured like any auth manager (``[core] auth_manager =
tests.ui.auth_manager.DagLimitedAuthManager``), adds per-user DAG limits from ``[loyalty_tests]
dag_access`` (JSON ``{"username": ["dag_id", ...]}``, env ``AIRFLOW__LOYALTY_TESTS__DAG_ACCESS``):
a listed user may read those DAGs only (and change none), like a FAB role holding ``can read`` on
``DAG:<dag_id>`` and ``DAG Runs``. Everything else, including the page's custom view, is the
simple auth manager's own answer for the user's role.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.configuration import conf


def dag_limits() -> dict[str, set[str]]:
    raw = conf.get("loyalty_tests", "dag_access", fallback="") or "{}"
    return {user: set(dags) for user, dags in json.loads(raw).items()}


class DagLimitedAuthManager(SimpleAuthManager):
    """The simple auth manager, with some users limited to some DAGs."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        limit = dag_limits().get(user.username)
        if limit is None:
            return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
        # No answer about "every DAG" (details None); per DAG, reading only.
        return method == "GET" and details is not None and details.id in limit and bool(user.role)
