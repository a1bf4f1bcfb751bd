"""Who may see the Reversals page, and which ledger rows: asked of Airflow's auth manager.

Airflow does not protect a plugin's FastAPI app; these dependencies do what Airflow's own routes do
(``airflow.api_fastapi.core_api.security``), through whatever auth manager ``[core] auth_manager``
configures (simple, FAB, Keycloak...):

* the user comes from the same ``get_user`` dependency (``Authorization: Bearer`` or the UI's
  ``_token`` cookie): anonymous requests get 401, an invalid token 403;
* the page and its API need the right to view the plugin's view:
  ``is_authorized_custom_view(method="GET", resource_name="Loyalty Reversals")``, else 403;
* ledger rows are limited to the DAGs the user may read, as ``ReadableDagRunsFilterDep`` limits DAG
  runs: a user who may read DAG runs of every DAG sees every row (also rows of DAGs since deleted,
  and rows without a ``dag_id``); anyone else sees the rows of ``get_authorized_dag_ids(method=
  "GET")``, the DAGs Airflow knows and lets them read. In multi-team mode everyone goes the per-DAG
  way. "Every DAG" is asked about a DAG id no DAG can have (:data:`ANY_DAG`), not without a DAG:
  without one, the FAB auth manager answers whether the user may *list* DAGs, which a role with
  ``can read`` on one ``DAG:<id>`` may.

With the FAB auth manager the permission is ``can read`` on ``Loyalty Reversals`` (:mod:`.fab`).
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' ``Annotated`` at runtime.
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

#: The resource an auth manager is asked about (FAB: grant ``can read`` on ``Loyalty Reversals``).
RESOURCE_NAME = "Loyalty Reversals"
#: A DAG id no DAG can have (DAG ids are letters, digits, ``-``, ``.`` and ``_``): may the user read
#: the runs of a DAG nobody granted them by name, that is of every DAG?
ANY_DAG = "loyalty reversals: any DAG"


@dataclass(frozen=True)
class DagScope:
    """The ledger rows a user may see: every row, or the rows of some DAGs.

    :param every_dag: no filter at all.
    :param dag_ids: the readable DAGs when ``every_dag`` is false (empty: no row at all).
    """

    every_dag: bool
    dag_ids: frozenset[str] = frozenset()

    @classmethod
    def everything(cls) -> "DagScope":
        """No filter (for scripts and tests that read the ledger outside a request)."""
        return cls(every_dag=True)

    @property
    def nothing(self) -> bool:
        """The user may read no ledger row."""
        return not self.every_dag and not self.dag_ids

    def allows(self, dag_id: str | None) -> bool:
        """Whether a row of ``dag_id`` is visible."""
        return self.every_dag or (dag_id is not None and dag_id in self.dag_ids)


def readable_dags(user: "BaseUser") -> DagScope:
    """The DAGs whose ledger rows ``user`` may read, from the configured auth manager."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.configuration import conf

    auth_manager = get_auth_manager()
    multi_team = conf.getboolean("core", "multi_team", fallback=False)
    if not multi_team and auth_manager.is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=ANY_DAG), user=user
    ):
        return DagScope.everything()
    return DagScope(every_dag=False, dag_ids=frozenset(auth_manager.get_authorized_dag_ids(user=user, method="GET")))


@dataclass(frozen=True)
class PageDependencies:
    """The app's FastAPI dependencies (one set per app, so FastAPI runs each once per request).

    :param user: the user, if the auth manager lets them view the page (401 anonymous, 403 otherwise).
    :param scope: that user's :class:`DagScope`.
    """

    user: Any
    scope: Any


def page_dependencies() -> PageDependencies:
    """Build the dependencies (annotations stay ``Any``: FastAPI resolves them at runtime)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    def page_user(user: Annotated[Any, Depends(get_user)]) -> Any:
        if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=RESOURCE_NAME, user=user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
        return user

    def scope(user: Annotated[Any, Depends(page_user)]) -> Any:
        return readable_dags(user)

    return PageDependencies(user=Depends(page_user), scope=Depends(scope))
