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

    :raises Exception: the Variable could not be read at all (no API server, no metadata DB).
    """
    if in_task_context():
        from airflow.sdk import Variable

        return Variable.get(key, default=None)
    from airflow.models.variable import Variable as MetastoreVariable

    return MetastoreVariable.get(key, default_var=None)


def set_variable(key: str, value: str, description: str) -> None:
    """Write the Variable (raises when it cannot be written)."""
    if in_task_context():
        from airflow.sdk import Variable

        Variable.set(key, value, description=description)
        return
    from airflow.models.variable import Variable as MetastoreVariable

    MetastoreVariable.set(key, value, description=description)


def delete_variable(key: str) -> None:
    """Delete the Variable (raises when it cannot be deleted)."""
    if in_task_context():
        from airflow.sdk import Variable

        Variable.delete(key)
        return
    from airflow.models.variable import Variable as MetastoreVariable

    MetastoreVariable.delete(key)
