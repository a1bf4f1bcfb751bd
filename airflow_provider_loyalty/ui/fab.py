"""The page's permission in the FAB auth manager: ``can read`` on ``Loyalty Reversals``.

The FAB auth manager answers ``is_authorized_custom_view(method="GET", resource_name=...)`` with
the user's roles: does one of them hold the permission ``can_read`` on that resource? A role can only
be given a permission on a resource that exists in FAB's tables (``airflow roles add-perms`` stops
with "Resource named ... does not exist"; the roles form lists existing pairs only), and FAB creates
resources for its own views only. So the page creates it, as FAB does for its views:

* when the api-server builds the page's app (its first request under ``/loyalty``, which the UI's
  menu makes on any page load by fetching the icon) and ``[fab] update_fab_perms`` is on (the
  default), the permission ``can_read`` on ``Loyalty Reversals`` is created if missing, and given to
  ``Admin`` when created (``airflow fab sync-perm`` gives Admin every non-DAG permission anyway);
* ``python -m airflow_provider_loyalty.ui.fab`` does the same by hand (also with
  ``update_fab_perms`` off).

Then ``airflow roles add-perms <role> -r "Loyalty Reversals" -a can_read`` grants the page.
"""

from __future__ import annotations

import logging

from airflow_provider_loyalty.ui.auth import RESOURCE_NAME

log = logging.getLogger(__name__)

#: FAB's action for ``GET`` (``get_fab_action_from_method_map()["GET"]``).
ACTION = "can_read"
ADMIN_ROLE = "Admin"


FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def fab_in_use(auth_manager: object) -> bool:
    """Whether ``auth_manager`` is (a subclass of) the FAB auth manager (without importing FAB)."""
    return any(f"{cls.__module__}.{cls.__qualname__}" == FAB_AUTH_MANAGER for cls in type(auth_manager).__mro__)


def register_permission() -> bool:
    """Create ``can_read`` on ``Loyalty Reversals`` if missing, and give it to ``Admin`` then.

    :return: whether the permission was created now.
    """
    from airflow.providers.fab.www.security_appless import ApplessAirflowSecurityManager
    from airflow.utils.session import create_session

    with create_session() as session:
        manager = ApplessAirflowSecurityManager(session=session)
        if manager.get_permission(ACTION, RESOURCE_NAME) is not None:
            return False
        permission = manager.create_permission(ACTION, RESOURCE_NAME)
        admin = manager.find_role(ADMIN_ROLE)
        if permission is not None and admin is not None:
            manager.add_permission_to_role(admin, permission)
        log.info("Created the FAB permission %s on %r (given to %s)", ACTION, RESOURCE_NAME, ADMIN_ROLE)
        return True


def register_if_fab() -> None:
    """In the api-server: register the permission when FAB is the auth manager (never fails the app)."""
    try:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.configuration import conf

        if fab_in_use(get_auth_manager()) and conf.getboolean("fab", "update_fab_perms", fallback=True):
            register_permission()
    except Exception:
        log.warning("Could not register the FAB permission %s on %r", ACTION, RESOURCE_NAME, exc_info=True)


if __name__ == "__main__":  # pragma: no cover - run in a subprocess by the FAB tests
    import sys

    done = "Created" if register_permission() else "Already there:"
    sys.stdout.write(f"{done} {ACTION} on {RESOURCE_NAME!r}\n")
