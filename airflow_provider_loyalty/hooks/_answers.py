"""Small helpers of the hooks' answer interpretation: strict JSON type checks and readable values."""

from __future__ import annotations

import json

_MAX_SHOWN = 60
_JSON_KINDS = {bool: "boolean", float: "number", str: "string", list: "array", dict: "object"}


def is_json_int(value: object, expected: int | None = None) -> bool:
    """Whether ``value`` is a JSON integer (``true`` and ``5.0`` are not), equal to ``expected`` if given."""
    return type(value) is int and (expected is None or value == expected)


def show(value: object) -> str:
    """Render a value of an answer for a message, with its JSON type when it is not an integer.

    ``7`` → ``7``; ``"7"`` → ``"7" (string)``; ``true`` → ``true (boolean)``; long values are cut.
    """
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    kind = _JSON_KINDS.get(type(value))
    return f"{text} ({kind})" if kind else text
