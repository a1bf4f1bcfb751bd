"""Request and response bodies of both vendors, and the typed results the hooks return: one module per vendor.

Requests are strict (what we send must validate against the vendors' published schemas);
responses are read tolerantly: unknown fields are ignored and both documented Capillary shapes
are accepted.

Fields of an answer that decide an outcome (ids, ``success``, ``status``, ``customerId``) are kept
as the raw JSON value (:data:`Raw`), never coerced: pydantic's lax mode would read ``true`` as the
id 1 and ``"true"`` as a success. The hooks' interpretation functions judge their JSON types
strictly, so a mistyped field makes that one item *unknown* instead of the whole answer unreadable.
"""

from __future__ import annotations

from airflow_provider_loyalty.models._base import AnswerEntry, Raw, Text
from airflow_provider_loyalty.models.capillary import (
    CapillaryError,
    CapillaryTokenData,
    CapillaryTokenRequest,
    CapillaryTokenResponse,
    EarnRevokeDetail,
    RevokedDetail,
    RevokeEarnData,
    RevokeEarnRequest,
    RevokeEarnResponse,
    RevokeEarnResult,
)
from airflow_provider_loyalty.models.xoxoday import (
    CancelPointsRequest,
    CancelPointsResponse,
    CancelPointsResult,
    XoxodayCancelBalance,
    XoxodayCancelData,
    XoxodayCancelVariables,
    XoxodayErrorBody,
    XoxodayLimitError,
    XoxodayRecipient,
    XoxodayRecipientResult,
    XoxodayRecipientsData,
    XoxodayRefreshRequest,
    XoxodayTokenResponse,
    cancel_points_body,
)

__all__ = [
    "AnswerEntry",
    "CancelPointsRequest",
    "CancelPointsResponse",
    "CancelPointsResult",
    "CapillaryError",
    "CapillaryTokenData",
    "CapillaryTokenRequest",
    "CapillaryTokenResponse",
    "EarnRevokeDetail",
    "Raw",
    "RevokeEarnData",
    "RevokeEarnRequest",
    "RevokeEarnResponse",
    "RevokeEarnResult",
    "RevokedDetail",
    "Text",
    "XoxodayCancelBalance",
    "XoxodayCancelData",
    "XoxodayCancelVariables",
    "XoxodayErrorBody",
    "XoxodayLimitError",
    "XoxodayRecipient",
    "XoxodayRecipientResult",
    "XoxodayRecipientsData",
    "XoxodayRefreshRequest",
    "XoxodayTokenResponse",
    "cancel_points_body",
]
