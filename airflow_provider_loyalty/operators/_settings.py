"""Operator settings that may arrive as rendered Jinja text (``"{{ params.dry_run }}"`` → ``"False"``)."""

from __future__ import annotations

from typing import Any


def as_bool(value: Any, name: str) -> bool:
    """Read a flag given as a bool or as rendered text (``"True"``, ``"false"``, ``"1"``)."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "", "none"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def as_number(value: Any, name: str) -> float | None:
    """Read a number given as such or as rendered text; ``None``/``"None"``/``""`` mean unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "null"):
            return None
        value = text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def templated(value: Any) -> bool:
    """Whether ``value`` is a Jinja template not rendered yet (checked again after rendering)."""
    return isinstance(value, str) and "{{" in value


def ratio(value: Any, name: str) -> float:
    """A share between 0 and 1."""
    number = as_number(value, name)
    if number is None or not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number


def positive_or_none(value: Any, name: str) -> float | None:
    """A positive number, or ``None`` for unset."""
    number = as_number(value, name)
    if number is not None and number <= 0:
        raise ValueError(f"{name} must be positive or None, got {value!r}")
    return number


def on_invalid(value: Any, name: str) -> str:
    """``"fail"`` or ``"skip"``."""
    text = str(value).strip().lower() if value is not None else "fail"
    if text not in ("fail", "skip"):
        raise ValueError(f"{name} must be 'fail' or 'skip', got {value!r}")
    return text


def count(value: Any, name: str, *, minimum: int = 1, optional: bool = False) -> int | None:
    """A whole number of at least ``minimum`` (``None`` allowed when ``optional``)."""
    number = as_number(value, name)
    if number is None and optional:
        return None
    if number is None or number < minimum or number != int(number):
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if optional else ''}, got {value!r}")
    return int(number)


def rate_or_auto(value: Any, name: str) -> float | str | None:
    """A positive number, ``None`` for no limit, or ``"auto"`` (find the vendor's limit: see the hooks)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return positive_or_none(value, name)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, None or 'auto', got {value!r}") from None
