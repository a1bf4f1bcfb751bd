"""Flags given as a bool or as text (a rendered template, a connection's extra)."""

from __future__ import annotations

from typing import Any


def as_bool(value: Any, name: str) -> bool:
    """Read a flag given as a bool or as text (``"True"``, ``"false"``, ``"1"``, ``"on"``).

    Nothing (``None``, ``""``, ``"None"``) is refused rather than read as false: a template that
    rendered empty (``{{ dag_run.conf.get('dry_run') }}`` without conf) must not turn a safety flag off.

    :raises ValueError: naming ``name`` and the value.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if value is not None else ""
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    hint = " (a template that rendered nothing? give it a default)" if text in ("", "none", "null") else ""
    raise ValueError(f"{name} must be true or false, got {value!r}{hint}")
