"""Shared HTTP plumbing of both hooks, by concern (this module keeps the names importable as before).

* :mod:`._clock` — injectable time (tests assert the waits instead of sleeping);
* :mod:`._retry` — which failures are retried, how often, how long to wait;
* :mod:`._pacing` — evenly spaced requests shared by a task's threads, vendor rate-limit windows,
  a concurrency bound that halves after a rate-limit answer;
* :mod:`._client` — the session, one request with retries and pacing, redirects refused, error texts;
* :mod:`._urls` — base URL and paths from a connection;
* :mod:`.errors` — the public exceptions.
"""

from __future__ import annotations

from airflow_provider_loyalty.hooks._client import (
    DEFAULT_TIMEOUT,
    Answer,
    VendorHTTPClient,
    json_body,
    redirect_error,
    response_snippet,
    transport_failure,
    user_agent,
)
from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock
from airflow_provider_loyalty.hooks._pacing import PACING_MARGIN, ConcurrencyGate, RateLimiter, RequestPacer
from airflow_provider_loyalty.hooks._retry import (
    RETRYABLE_TRANSPORT_ERRORS,
    RetryDecision,
    RetryPolicy,
    ThrottleHint,
    may_have_been_applied,
    retry_after_seconds,
)
from airflow_provider_loyalty.hooks._urls import base_url, url_path
from airflow_provider_loyalty.hooks.errors import (
    CredentialsMissingError,
    VendorAuthError,
    VendorConfigError,
    VendorError,
    VendorRateLimitError,
    VendorRequestError,
    VendorResponseError,
    VendorUnavailableError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "PACING_MARGIN",
    "RETRYABLE_TRANSPORT_ERRORS",
    "SYSTEM_CLOCK",
    "Answer",
    "Clock",
    "ConcurrencyGate",
    "CredentialsMissingError",
    "RateLimiter",
    "RequestPacer",
    "RetryDecision",
    "RetryPolicy",
    "ThrottleHint",
    "VendorAuthError",
    "VendorConfigError",
    "VendorError",
    "VendorHTTPClient",
    "VendorRateLimitError",
    "VendorRequestError",
    "VendorResponseError",
    "VendorUnavailableError",
    "base_url",
    "json_body",
    "may_have_been_applied",
    "redirect_error",
    "response_snippet",
    "retry_after_seconds",
    "transport_failure",
    "url_path",
    "user_agent",
]
