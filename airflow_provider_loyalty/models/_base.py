"""What both vendors' bodies share: the request and response configurations, the lenient readers, list entries."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ModelWrapValidatorHandler, PrivateAttr, model_validator

REQUEST = ConfigDict(extra="forbid", frozen=True)
RESPONSE = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


def as_text(value: object) -> object:
    """Read a free-text field (message, error code) whatever its JSON type; ``None`` stays ``None``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def objects_only(value: object) -> object:
    """``null`` is an empty list; entries that are not JSON objects cannot name an item: dropped."""
    if value is None:
        return []
    if isinstance(value, list):
        return [entry for entry in value if isinstance(entry, dict)]
    return value  # not a list: left to fail validation (the answer is unreadable)


def null_is_empty(value: object) -> object:
    """``null`` is an empty list; every entry is kept (each model says how it reads a non-object)."""
    return [] if value is None else value


#: A free-text field: any JSON scalar read as text, for messages only (never for a decision).
Text = Annotated[str | None, BeforeValidator(as_text)]
#: A field kept as its raw JSON value (int, float, bool, str, list, dict or None), judged by the hook.
Raw = Any


class AnswerEntry(BaseModel):
    """An entry of a list in a vendor answer, kept even when it is not a JSON object.

    A bare string, number, list or ``null`` names nothing we can attribute: it is kept with no
    fields, :attr:`is_object` false and the value in :attr:`raw`, so the answer readers treat it as
    doubt instead of dropping it.
    """

    _is_object: bool = PrivateAttr(default=True)
    _raw: Any = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _any_entry(cls, value: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if isinstance(value, dict | cls):
            return handler(value)
        entry = handler({})
        entry._is_object = False
        entry._raw = value
        return entry

    @property
    def is_object(self) -> bool:
        """Whether the vendor sent this entry as a JSON object."""
        return self._is_object

    @property
    def raw(self) -> Any:
        """The entry as sent, when it was not a JSON object (else ``None``)."""
        return self._raw
