"""Read and write Airflow Variables from inside a task (Task SDK) or outside one (metadata DB)."""

from __future__ import annotations

from typing import Any


def in_task_context() -> bool:
    """Whether this process runs an Airflow task (the Task SDK's supervisor channel is open)."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover - the task SDK always ships with Airflow 3
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def get_variable(key: str) -> Any:
    """Return the Variable's value, or ``None`` when it is not set.

    Through the Task SDK first (inside a task: the API server; anywhere: env vars and secrets
    backends); outside a task, where the SDK sees no metadata DB, the metadata DB next.

    :raises Exception: the Variable could not be read at all (no API server, no metadata DB).
    """
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    if value is None and not in_task_context():
        from airflow.models.variable import Variable as MetastoreVariable

        value = MetastoreVariable.get(key, default_var=None)
    return value


def set_variable(key: str, value: str, description: str) -> None:
    """Write the Variable: through the Task SDK, or outside a task into the metadata DB (raises when neither can)."""
    from airflow.sdk import Variable

    try:
        Variable.set(key, value, description=description)
    except Exception:
        if in_task_context():
            raise
        from airflow.models.variable import Variable as MetastoreVariable

        MetastoreVariable.set(key, value, description=description)


def delete_variable(key: str) -> None:
    """Delete the Variable: through the Task SDK, or outside a task in the metadata DB."""
    from airflow.sdk import Variable

    try:
        Variable.delete(key)
    except Exception:
        if in_task_context():
            raise
        from airflow.models.variable import Variable as MetastoreVariable

        MetastoreVariable.delete(key)
