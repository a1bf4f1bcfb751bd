"""Xoxoday Plum: the cancel points and token bodies, and the result of one cancel request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt, StrictStr, field_validator, model_validator

from airflow_provider_loyalty.models._base import REQUEST, RESPONSE, AnswerEntry, Raw, Text, null_is_empty
from airflow_provider_loyalty.outcomes import Outcome


class XoxodayRecipient(BaseModel):
    """One points transaction to cancel."""

    model_config = REQUEST
    unique_id: StrictInt = Field(gt=0)


class XoxodayRecipientsData(BaseModel):
    """The ``recipients_data`` object of a cancel request."""

    model_config = REQUEST
    recipients: list[XoxodayRecipient] = Field(min_length=1)


class XoxodayCancelVariables(BaseModel):
    """The ``variables`` object of a cancel request."""

    model_config = REQUEST
    recipients_data: XoxodayRecipientsData


class CancelPointsRequest(BaseModel):
    """Body of ``POST {host}/chef/v1/oauth/api`` for ``storesAdmin.mutation.cancelBalance``."""

    model_config = REQUEST
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

    model_config = RESPONSE
    error: Raw = None
    message: Text = None
    recipients: list[XoxodayRecipientResult] = Field(default_factory=list)
    _answer_errors: Any = PrivateAttr(default=None)

    @field_validator("recipients", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        return null_is_empty(value)

    @property
    def answer_errors(self) -> Any:
        """The answer's top-level ``errors`` beside ``data`` (raw JSON; ``None`` when absent or null)."""
        return self._answer_errors


class XoxodayCancelData(BaseModel):
    """``data`` of a cancel answer."""

    model_config = RESPONSE
    cancelBalance: XoxodayCancelBalance | None = None  # noqa: N815 - vendor field name


class CancelPointsResponse(BaseModel):
    """Answer of a cancel request."""

    model_config = RESPONSE
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

    model_config = RESPONSE
    access_token: str
    token_type: str | None = None
    expires_in: float | None = None
    refresh_token: str | None = None
    access_token_expiry: float | None = None  # epoch milliseconds
    refresh_token_expiry: float | None = None  # epoch milliseconds


class XoxodayRefreshRequest(BaseModel):
    """Body of ``POST {host}/chef/v1/oauth/token/company``."""

    model_config = REQUEST
    grant_type: Literal["refresh_token"] = "refresh_token"
    refresh_token: StrictStr = Field(min_length=1)
    client_id: StrictStr = Field(min_length=1)
    client_secret: StrictStr = Field(min_length=1)


class XoxodayLimitError(BaseModel):
    """One entry of a rate-limit answer: ``auth.request_limit_exceeded`` + ``penaltySeconds``."""

    model_config = RESPONSE
    message: str | None = None
    penaltySeconds: float | None = None  # noqa: N815 - vendor field name


class XoxodayErrorBody(BaseModel):
    """Any Xoxoday error body: OAuth (``error``, ``error_description``), 400 or rate limit."""

    model_config = RESPONSE
    error: str | None = None
    error_description: str | None = None
    message: str | None = None
    errors: list[XoxodayLimitError] | None = None


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
