"""Capillary: the revokeEarn and OAuth token bodies, and the result of one revoke request."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field, StrictInt, StrictStr, field_validator, model_validator

from airflow_provider_loyalty.models._base import (
    REQUEST,
    RESPONSE,
    AnswerEntry,
    Raw,
    Text,
    null_is_empty,
    objects_only,
)
from airflow_provider_loyalty.outcomes import Outcome
from airflow_provider_loyalty.vendor_limits import CAPILLARY_MAX_EARN_IDS


class EarnRevokeDetail(BaseModel):
    """One cart promotion and the earn ids to revoke in it."""

    model_config = REQUEST
    promotionId: StrictStr = Field(min_length=1)  # noqa: N815 - vendor field name
    earnIds: list[StrictStr] = Field(min_length=1)  # noqa: N815 - vendor field name


class RevokeEarnRequest(BaseModel):
    """Body of ``POST {host}/api_gateway/v1/promotions/revokeEarn``: one customer per request."""

    model_config = REQUEST
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

    model_config = RESPONSE
    promotionId: Raw = None  # noqa: N815 - vendor field name
    revokedEarnIds: Raw = None  # noqa: N815 - vendor field name
    status: Raw = None


class RevokeEarnData(BaseModel):
    """``data`` of a revoke answer, either documented shape: revoked details, or ``code``/``message``."""

    model_config = RESPONSE
    #: raw JSON: only a JSON integer equal to the requested customer confirms the customer.
    customerId: Raw = None  # noqa: N815 - vendor field name
    revokedDetails: list[RevokedDetail] = Field(default_factory=list)  # noqa: N815 - vendor field name
    code: Text = None
    message: Text = None

    @field_validator("revokedDetails", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return objects_only(value)


class CapillaryError(AnswerEntry):
    """One entry of ``errors``; ``promotionId``/``earnIds`` are present only sometimes (raw JSON).

    An entry that is not a JSON object (a bare string, number, list, ``null``) is kept, with no
    fields, as :attr:`is_object` false and the value in :attr:`raw`: it names nothing we can
    attribute, so the hook treats it as doubt about the whole request instead of dropping it.
    """

    model_config = RESPONSE
    code: Text = None
    message: Text = None
    promotionId: Raw = None  # noqa: N815 - vendor field name
    earnIds: Raw = None  # noqa: N815 - vendor field name


class RevokeEarnResponse(BaseModel):
    """Answer of a revoke request (also used to read Capillary error bodies)."""

    model_config = RESPONSE
    data: RevokeEarnData | None = None
    #: every entry, objects or not: an entry we cannot read is doubt, not nothing
    errors: list[CapillaryError] = Field(default_factory=list)

    @field_validator("errors", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return null_is_empty(value)

    @field_validator("data", mode="before")
    @classmethod
    def _non_object_is_none(cls, value: object) -> object:
        return value if isinstance(value, dict) else None


class CapillaryTokenRequest(BaseModel):
    """Body of ``POST {host}/v3/oauth/token/generate``."""

    model_config = REQUEST
    key: StrictStr = Field(min_length=1)
    secret: StrictStr = Field(min_length=1)


class CapillaryTokenData(BaseModel):
    """``data`` of a token answer."""

    model_config = RESPONSE
    accessToken: str  # noqa: N815 - vendor field name
    ttlSeconds: float | None = None  # noqa: N815 - vendor field name


class CapillaryTokenResponse(BaseModel):
    """Answer of the OAuth token generation."""

    model_config = RESPONSE
    data: CapillaryTokenData | None = None
    errors: list[CapillaryError] = Field(default_factory=list)

    @field_validator("errors", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return objects_only(value)

    @field_validator("data", mode="before")
    @classmethod
    def _non_object_is_none(cls, value: object) -> object:
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class RevokeEarnResult:
    """Outcome of one revoke request: one :class:`~airflow_provider_loyalty.outcomes.Outcome` per earn, in order."""

    customer_id: int
    outcomes: list[Outcome] = field(default_factory=list)
    #: an earlier attempt of this request may have been applied (timeout, 5xx).
    after_ambiguous_attempt: bool = False
