"""Offending values in messages: a bounded repr, whatever the value (huge, nested, hostile)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

#: How many characters of an offending value a message shows.
SHOW_CHARS = 80


def show(value: Any) -> str:
    """A repr of ``value`` of at most :data:`SHOW_CHARS` characters, at a cost bounded by that, whatever the value."""
    text = _bounded_repr(value, SHOW_CHARS + 1, 0)
    return text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 3] + "..."


def bounded_repr(value: Any, budget: int) -> str:
    """A repr of ``value`` of about ``budget`` characters at most, at a cost bounded by that."""
    return _bounded_repr(value, budget, 0)


def _bounded_repr(value: Any, budget: int, depth: int) -> str:
    if isinstance(value, (str, bytes, bytearray)):
        return repr(value[:budget])
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        # repr would be long, or raise (Python's 4300-digit limit: about 14,000 bits)
        if value.bit_length() > min(4 * budget, 14_000):
            return f"<int of about {int(value.bit_length() * 0.30103) + 1} digits>"
        return repr(value)
    if isinstance(value, Decimal) and value.is_finite() and len(value.as_tuple().digits) > budget:
        return f"<Decimal of {len(value.as_tuple().digits)} digits, exponent {value.as_tuple().exponent}>"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        brackets = "[]" if isinstance(value, list) else "()" if isinstance(value, tuple) else "{}"
        opener, closer = brackets[0], brackets[1]
        if depth > 3:
            return f"{opener}...{closer}"
        parts: list[str] = []
        used = 1
        items: Iterable[Any] = value.items() if isinstance(value, dict) else value
        for element in items:
            if used >= budget:
                parts.append("...")
                break
            if isinstance(value, dict):
                key, item = element
                part = (
                    f"{_bounded_repr(key, budget - used, depth + 1)}: {_bounded_repr(item, budget - used, depth + 1)}"
                )
            else:
                part = _bounded_repr(element, budget - used, depth + 1)
            parts.append(part)
            used += len(part) + 2
        trailing = "," if isinstance(value, tuple) and len(parts) == 1 and parts[0] != "..." else ""
        return f"{opener}{', '.join(parts)}{trailing}{closer}"
    try:
        text = repr(value)
    except Exception:  # a hostile or broken __repr__ must not hide the real error
        return f"<{type(value).__name__}>"
    return text[:budget]
