"""Request and response bodies of both vendors, and the typed results the hooks return.

Requests are strict (what we send must validate against the vendors' published schemas);
responses are read tolerantly: unknown fields are ignored and both documented Capillary shapes
are accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from airflow_provider_loyalty.vendor_limits import CAPILLARY_MAX_EARN_IDS

_REQUEST = ConfigDict(extra="forbid", frozen=True)
_RESPONSE = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


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

    @classmethod
    def for_ids(cls, unique_ids: Iterable[int]) -> CancelPointsRequest:
        """Build the request cancelling ``unique_ids``."""
        return cls.model_validate(cancel_points_body(unique_ids))


def cancel_points_body(unique_ids: Iterable[int]) -> dict[str, Any]:
    """Return the JSON body cancelling ``unique_ids`` (validate it with :class:`CancelPointsRequest`)."""
    return {
        "query": "storesAdmin.mutation.cancelBalance",
        "tag": "storeAdmin",
        "variables": {"recipients_data": {"recipients": [{"unique_id": uid} for uid in unique_ids]}},
    }


class XoxodayRecipientResult(BaseModel):
    """Per-transaction outcome in a cancel answer."""

    model_config = ConfigDict(extra="ignore")
    unique_id: int | None = None
    success: bool | None = None  # absent or null: the vendor did not say, so the outcome is unknown
    message: str | None = None


class XoxodayCancelBalance(BaseModel):
    """``data.cancelBalance`` of a cancel answer; ``error`` does not say which ids failed."""

    model_config = _RESPONSE
    error: bool | None = None
    message: str | None = None
    recipients: list[XoxodayRecipientResult] = Field(default_factory=list)

    @field_validator("recipients", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class XoxodayCancelData(BaseModel):
    """``data`` of a cancel answer."""

    model_config = _RESPONSE
    cancelBalance: XoxodayCancelBalance | None = None  # noqa: N815 - vendor field name


class CancelPointsResponse(BaseModel):
    """Answer of a cancel request."""

    model_config = _RESPONSE
    data: XoxodayCancelData | None = None


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
    """Per-promotion outcome in ``data.revokedDetails``."""

    model_config = _RESPONSE
    promotionId: str | None = None  # noqa: N815 - vendor field name
    revokedEarnIds: list[str] = Field(default_factory=list)  # noqa: N815 - vendor field name
    status: str | None = None

    @field_validator("revokedEarnIds", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class RevokeEarnData(BaseModel):
    """``data`` of a revoke answer, either documented shape: revoked details, or ``code``/``message``."""

    model_config = _RESPONSE
    customerId: int | None = None  # noqa: N815 - vendor field name
    revokedDetails: list[RevokedDetail] = Field(default_factory=list)  # noqa: N815 - vendor field name
    code: str | None = None
    message: str | None = None

    @field_validator("revokedDetails", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class CapillaryError(BaseModel):
    """One entry of ``errors``; ``promotionId``/``earnIds`` are present only sometimes."""

    model_config = _RESPONSE
    code: str | None = None
    message: str | None = None
    promotionId: str | None = None  # noqa: N815 - vendor field name
    earnIds: list[str] | None = None  # noqa: N815 - vendor field name


class RevokeEarnResponse(BaseModel):
    """Answer of a revoke request (also used to read Capillary error bodies)."""

    model_config = _RESPONSE
    data: RevokeEarnData | None = None
    errors: list[CapillaryError] = Field(default_factory=list)

    @field_validator("errors", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

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
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


# ------------------------------------------------------------------------------- typed hook results
@dataclass(slots=True)  # not frozen: one per id, and frozen dataclasses cost 3x to build
class PointOutcome:
    """What Xoxoday said about one unique_id; ``success`` is ``None`` when it said nothing."""

    unique_id: int
    success: bool | None
    message: str


@dataclass(frozen=True)
class CancelPointsResult:
    """Outcome of one cancel request: one :class:`PointOutcome` per requested id, in order."""

    outcomes: list[PointOutcome]
    error: bool | None = None
    message: str | None = None
    #: an earlier attempt of this request may have been applied (timeout, 5xx): refusals such as
    #: "already cancelled" may be the echo of our own first attempt.
    after_ambiguous_attempt: bool = False

    @property
    def succeeded(self) -> list[int]:
        """Ids the vendor cancelled."""
        return [o.unique_id for o in self.outcomes if o.success]

    @property
    def failed(self) -> list[PointOutcome]:
        """Ids the vendor refused or did not mention."""
        return [o for o in self.outcomes if not o.success]


EarnStatus = Literal["revoked", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class EarnOutcome:
    """What Capillary said about one earn id of a request."""

    promotion_id: str
    earn_id: str
    status: EarnStatus
    code: str | None = None
    message: str = ""
    #: the refusal was about the request as a whole (e.g. the customer), not this earn
    whole_request: bool = False


@dataclass(frozen=True)
class RevokeEarnResult:
    """Outcome of one revoke request: one :class:`EarnOutcome` per requested earn id, in order."""

    customer_id: int
    outcomes: list[EarnOutcome] = field(default_factory=list)
    #: an earlier attempt of this request may have been applied (timeout, 5xx).
    after_ambiguous_attempt: bool = False
