"""Operator settings that may arrive as rendered Jinja text (``"{{ params.dry_run }}"`` → ``"False"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_loyalty._flags import as_bool

__all__ = ["as_bool"]  # the operators read flags as the hooks do

#: The smallest ``max_requests_per_minute`` (and cap) accepted.
MIN_PER_MINUTE = 1.0


def as_number(value: Any, name: str, *, blank_is_unset: bool = True) -> float | None:
    """Read a number given as such or as rendered text; ``None`` means unset.

    ``"None"``/``"null"``/``""`` mean unset too, unless ``blank_is_unset`` is false: for a guard
    (``max_items``), a template that rendered nothing must not lift the limit.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "null"):
            if blank_is_unset:
                return None
            raise ValueError(
                f"{name} must be a number (None in Python for no limit), got {value!r}"
                " (a template that rendered nothing? give it a default)"
            )
        value = text
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    except OverflowError:
        raise ValueError(f"{name} is out of range: {str(value)[:40]}...") from None
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
    """A request rate of at least :data:`MIN_PER_MINUTE`, or ``None`` for unset.

    A smaller rate is a typo (``1e-6``), never a plan: it would hold the first request for years
    without a word.
    """
    number = as_number(value, name)
    if number is not None and number < MIN_PER_MINUTE:
        raise ValueError(f"{name} must be at least {MIN_PER_MINUTE:g} (requests per minute) or None, got {value!r}")
    return number


def conn_id_or_none(value: Any, name: str) -> str | None:
    """A connection id, or ``None`` when unset (also ``""``/``"None"``, as a template renders an unset param)."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in ("", "none", "null") else text


def seconds_or_none(value: Any, name: str) -> float | None:
    """A duration of at least 0 seconds, or ``None`` for the default."""
    number = as_number(value, name)
    if number is not None and number < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, got {value!r}")
    return number


def on_invalid(value: Any, name: str) -> str:
    """``"fail"`` or ``"skip"``."""
    text = str(value).strip().lower() if value is not None else "fail"
    if text not in ("fail", "skip"):
        raise ValueError(f"{name} must be 'fail' or 'skip', got {value!r}")
    return text


def count(
    value: Any, name: str, *, minimum: int = 1, optional: bool = False, blank_is_unset: bool = True
) -> int | None:
    """A whole number of at least ``minimum`` (``None`` allowed when ``optional``)."""
    number = as_number(value, name, blank_is_unset=blank_is_unset)
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
        raise ValueError(
            f"{name} must be a number of at least {MIN_PER_MINUTE:g}, None or 'auto', got {value!r}"
        ) from None


def _max_items(value: Any, name: str) -> int | None:
    # a guard: a template that rendered nothing must not lift the limit
    return count(value, name, minimum=0, optional=True, blank_is_unset=False)


#: The reversal operators' settings that may be templated, each with its check; keyed by attribute.
CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "plan_only": as_bool,
    "max_failed_ratio": ratio,
    "max_requests_per_minute": rate_or_auto,
    "max_requests_per_minute_cap": positive_or_none,
    "rate_limit_timeout": seconds_or_none,
    "rate_budget_conn_id": conn_id_or_none,
    "max_concurrency": count,
    "max_items": _max_items,
    "on_invalid": on_invalid,
}
#: The argument each attribute is given as, where the two differ (for messages).
ARGUMENT = {"plan_only": "dry_run"}


def check(target: object, *, lenient: bool = False) -> None:
    """Coerce and check ``target``'s settings in place; ``lenient`` lets unrendered templates through."""
    for attribute, checker in CHECKS.items():
        value = getattr(target, attribute)
        if not (lenient and templated(value)):
            setattr(target, attribute, checker(value, ARGUMENT.get(attribute, attribute)))
