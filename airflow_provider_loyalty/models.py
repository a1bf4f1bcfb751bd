"""Request and response bodies of both vendors, and the typed results the hooks return.

Requests are strict (what we send must validate against the vendors' published schemas);
responses are read tolerantly: unknown fields are ignored and both documented Capillary shapes
are accepted.

Fields of an answer that decide an outcome (ids, ``success``, ``status``, ``customerId``) are kept
as the raw JSON value (:data:`Raw`), never coerced: pydantic's lax mode would read ``true`` as the
id 1 and ``"true"`` as a success. The hooks' interpretation functions judge their JSON types
strictly, so a mistyped field makes that one item *unknown* instead of the whole answer unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from airflow_provider_loyalty.outcomes import Outcome
from airflow_provider_loyalty.vendor_limits import CAPILLARY_MAX_EARN_IDS

_REQUEST = ConfigDict(extra="forbid", frozen=True)
_RESPONSE = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


def _as_text(value: object) -> object:
    """Read a free-text field (message, error code) whatever its JSON type; ``None`` stays ``None``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _objects_only(value: object) -> object:
    """``null`` is an empty list; entries that are not JSON objects cannot name an item: dropped."""
    if value is None:
        return []
    if isinstance(value, list):
        return [entry for entry in value if isinstance(entry, dict)]
    return value  # not a list: left to fail validation (the answer is unreadable)


def _null_is_empty(value: object) -> object:
    """``null`` is an empty list; every entry is kept (each model says how it reads a non-object)."""
    return [] if value is None else value


#: A free-text field: any JSON scalar read as text, for messages only (never for a decision).
Text = Annotated[str | None, BeforeValidator(_as_text)]
#: A field kept as its raw JSON value (int, float, bool, str, list, dict or None), judged by the hook.
Raw = Any


# ------------------------------------------------------------------------------------------ Xoxoday
class XoxodayRecipient(BaseModel):
    """One points transaction to cancel."""

    model_config = _REQUEST
    unique_id: StrictInt = Field(gt=0)


class XoxodayRecipientsData(BaseModel):
    """The ``recipients_data`` object of a cancel request."""

    model_config = _REQUEST
    recipients: list[XoxodayRecipient] = Field(min_length=1)


class XoxodayCancelVariables(BaseModel):
    """The ``variables`` object of a cancel request."""

    model_config = _REQUEST
    recipients_data: XoxodayRecipientsData


class CancelPointsRequest(BaseModel):
    """Body of ``POST {host}/chef/v1/oauth/api`` for ``storesAdmin.mutation.cancelBalance``."""

    model_config = _REQUEST
    query: Literal["storesAdmin.mutation.cancelBalance"] = "storesAdmin.mutation.cancelBalance"
    tag: Literal["storeAdmin"] = "storeAdmin"
    variables: XoxodayCancelVariables


def cancel_points_body(unique_ids: Iterable[int]) -> dict[str, Any]:
    """Return the JSON body cancelling ``unique_ids`` (validate it with :class:`CancelPointsRequest`)."""
    return {
        "query": "storesAdmin.mutation.cancelBalance",
        "tag": "storeAdmin",
        "variables": {"recipients_data": {"recipients": [{"unique_id": uid} for uid in unique_ids]}},
    }


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


class XoxodayRecipientResult(AnswerEntry):
    """Per-transaction outcome in a cancel answer.

    ``unique_id`` and ``success`` are raw JSON: only a JSON integer is an id of ours, only a JSON
    boolean is an outcome (see :func:`airflow_provider_loyalty.hooks.xoxoday.interpret_cancel`).
    """

    model_config = ConfigDict(extra="ignore")
    unique_id: Raw = None
    success: Raw = None  # absent or null: the vendor did not say, so the outcome is unknown
    message: Text = None


class XoxodayCancelBalance(BaseModel):
    """``data.cancelBalance`` of a cancel answer; ``error`` does not say which ids failed.

    Every ``recipients`` entry is kept, objects or not (one that is not cannot be attributed: doubt).
    :attr:`answer_errors` is the answer's top-level ``errors`` (set by :class:`CancelPointsResponse`).
    """

    model_config = _RESPONSE
    error: Raw = None
    message: Text = None
    recipients: list[XoxodayRecipientResult] = Field(default_factory=list)
    _answer_errors: Any = PrivateAttr(default=None)

    @field_validator("recipients", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return _null_is_empty(value)

    @property
    def answer_errors(self) -> Any:
        """The answer's top-level ``errors`` beside ``data`` (raw JSON; ``None`` when absent or null)."""
        return self._answer_errors


class XoxodayCancelData(BaseModel):
    """``data`` of a cancel answer."""

    model_config = _RESPONSE
    cancelBalance: XoxodayCancelBalance | None = None  # noqa: N815 - vendor field name


class CancelPointsResponse(BaseModel):
    """Answer of a cancel request."""

    model_config = _RESPONSE
    data: XoxodayCancelData | None = None
    #: top-level ``errors`` (GraphQL style) beside ``data``: raw JSON, handed to ``data.cancelBalance``
    errors: Raw = None

    @model_validator(mode="after")
    def _errors_to_balance(self) -> CancelPointsResponse:
        if self.data is not None and self.data.cancelBalance is not None:
            self.data.cancelBalance._answer_errors = self.errors
        return self


class XoxodayTokenResponse(BaseModel):
    """Answer of the token refresh (and, without ``refresh_token``, of token validation)."""

    model_config = _RESPONSE
    access_token: str
    token_type: str | None = None
    expires_in: float | None = None
    refresh_token: str | None = None
    access_token_expiry: float | None = None  # epoch milliseconds
    refresh_token_expiry: float | None = None  # epoch milliseconds


class XoxodayRefreshRequest(BaseModel):
    """Body of ``POST {host}/chef/v1/oauth/token/company``."""

    model_config = _REQUEST
    grant_type: Literal["refresh_token"] = "refresh_token"
    refresh_token: StrictStr = Field(min_length=1)
    client_id: StrictStr = Field(min_length=1)
    client_secret: StrictStr = Field(min_length=1)


class XoxodayLimitError(BaseModel):
    """One entry of a rate-limit answer: ``auth.request_limit_exceeded`` + ``penaltySeconds``."""

    model_config = _RESPONSE
    message: str | None = None
    penaltySeconds: float | None = None  # noqa: N815 - vendor field name


class XoxodayErrorBody(BaseModel):
    """Any Xoxoday error body: OAuth (``error``, ``error_description``), 400 or rate limit."""

    model_config = _RESPONSE
    error: str | None = None
    error_description: str | None = None
    message: str | None = None
    errors: list[XoxodayLimitError] | None = None


# ---------------------------------------------------------------------------------------- Capillary
class EarnRevokeDetail(BaseModel):
    """One cart promotion and the earn ids to revoke in it."""

    model_config = _REQUEST
    promotionId: StrictStr = Field(min_length=1)  # noqa: N815 - vendor field name
    earnIds: list[StrictStr] = Field(min_length=1)  # noqa: N815 - vendor field name


class RevokeEarnRequest(BaseModel):
    """Body of ``POST {host}/api_gateway/v1/promotions/revokeEarn``: one customer per request."""

    model_config = _REQUEST
    customerId: StrictInt = Field(gt=0)  # noqa: N815 - vendor field name
    earnRevokeDetails: list[EarnRevokeDetail] = Field(min_length=1)  # noqa: N815 - vendor field name

    @model_validator(mode="after")
    def _at_most_1000_earn_ids(self) -> RevokeEarnRequest:
        total = sum(len(detail.earnIds) for detail in self.earnRevokeDetails)
        if total > CAPILLARY_MAX_EARN_IDS:
            raise ValueError(f"{total} earn ids in one request; Capillary accepts at most {CAPILLARY_MAX_EARN_IDS}")
        return self


class RevokedDetail(BaseModel):
    """Per-promotion outcome in ``data.revokedDetails``.

    All three fields are raw JSON (see :func:`airflow_provider_loyalty.hooks.capillary.interpret_revoke`):
    ``promotionId`` and the earn ids count only as JSON strings, ``status`` only as ``"SUCCESS"``.
    """

    model_config = _RESPONSE
    promotionId: Raw = None  # noqa: N815 - vendor field name
    revokedEarnIds: Raw = None  # noqa: N815 - vendor field name
    status: Raw = None


class RevokeEarnData(BaseModel):
    """``data`` of a revoke answer, either documented shape: revoked details, or ``code``/``message``."""

    model_config = _RESPONSE
    #: raw JSON: only a JSON integer equal to the requested customer confirms the customer.
    customerId: Raw = None  # noqa: N815 - vendor field name
    revokedDetails: list[RevokedDetail] = Field(default_factory=list)  # noqa: N815 - vendor field name
    code: Text = None
    message: Text = None

    @field_validator("revokedDetails", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return _objects_only(value)


class CapillaryError(AnswerEntry):
    """One entry of ``errors``; ``promotionId``/``earnIds`` are present only sometimes (raw JSON).

    An entry that is not a JSON object (a bare string, number, list, ``null``) is kept, with no
    fields, as :attr:`is_object` false and the value in :attr:`raw`: it names nothing we can
    attribute, so the hook treats it as doubt about the whole request instead of dropping it.
    """

    model_config = _RESPONSE
    code: Text = None
    message: Text = None
    promotionId: Raw = None  # noqa: N815 - vendor field name
    earnIds: Raw = None  # noqa: N815 - vendor field name


class RevokeEarnResponse(BaseModel):
    """Answer of a revoke request (also used to read Capillary error bodies)."""

    model_config = _RESPONSE
    data: RevokeEarnData | None = None
    #: every entry, objects or not: an entry we cannot read is doubt, not nothing
    errors: list[CapillaryError] = Field(default_factory=list)

    @field_validator("errors", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return _null_is_empty(value)

    @field_validator("data", mode="before")
    @classmethod
    def _non_object_is_none(cls, value: object) -> object:
        return value if isinstance(value, dict) else None


class CapillaryTokenRequest(BaseModel):
    """Body of ``POST {host}/v3/oauth/token/generate``."""

    model_config = _REQUEST
    key: StrictStr = Field(min_length=1)
    secret: StrictStr = Field(min_length=1)


class CapillaryTokenData(BaseModel):
    """``data`` of a token answer."""

    model_config = _RESPONSE
    accessToken: str  # noqa: N815 - vendor field name
    ttlSeconds: float | None = None  # noqa: N815 - vendor field name


class CapillaryTokenResponse(BaseModel):
    """Answer of the OAuth token generation."""

    model_config = _RESPONSE
    data: CapillaryTokenData | None = None
    errors: list[CapillaryError] = Field(default_factory=list)

    @field_validator("errors", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return _objects_only(value)

    @field_validator("data", mode="before")
    @classmethod
    def _non_object_is_none(cls, value: object) -> object:
        return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------- typed hook results
@dataclass(frozen=True)
class CancelPointsResult:
    """Outcome of one cancel request: one :class:`~airflow_provider_loyalty.outcomes.Outcome` per item, in order."""

    outcomes: list[Outcome]
    error: bool | None = None
    message: str | None = None
    #: an earlier attempt of this request may have been applied (timeout, 5xx): refusals such as
    #: "already cancelled" may be the echo of our own first attempt.
    after_ambiguous_attempt: bool = False

    @property
    def succeeded(self) -> list[int]:
        """Ids the vendor cancelled."""
        return [o.item.unique_id for o in self.outcomes if o.ok]  # type: ignore[union-attr]

    @property
    def failed(self) -> list[Outcome]:
        """Outcomes of the ids the vendor refused or did not clearly settle."""
        return [o for o in self.outcomes if not o.ok]


@dataclass(frozen=True)
class RevokeEarnResult:
    """Outcome of one revoke request: one :class:`~airflow_provider_loyalty.outcomes.Outcome` per earn, in order."""

    customer_id: int
    outcomes: list[Outcome] = field(default_factory=list)
    #: an earlier attempt of this request may have been applied (timeout, 5xx).
    after_ambiguous_attempt: bool = False
