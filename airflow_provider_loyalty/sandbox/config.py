"""Runtime settings and fixed credentials of the vendor sandbox."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

XOXODAY_CLIENT_ID = "sandbox-client-id"
XOXODAY_CLIENT_SECRET = "sandbox-client-secret"
XOXODAY_ACCESS_TOKEN = "sandbox-access-token-0"
XOXODAY_REFRESH_TOKEN = "sandbox-refresh-token-0"

CAPILLARY_TILL = "sandbox.till"
CAPILLARY_PASSWORD = "sandbox-till-password"
CAPILLARY_OAUTH_KEY = "sandbox-oauth-key"
CAPILLARY_OAUTH_SECRET = "sandbox-oauth-secret"

# Field kinds used to validate runtime patches (admin endpoint, CLI).
_FLOAT_FIELDS = frozenset(
    {
        "latency_ms",
        "reply_delay_ms",
        "error_rate",
        "rate_window_seconds",
        "xoxoday_penalty_seconds",
        "capillary_penalty_seconds",
        "xoxoday_token_ttl",
        "xoxoday_refresh_grace",
        "xoxoday_refresh_token_ttl",
        "capillary_token_ttl",
    }
)
_INT_FIELDS = frozenset({"fail_next", "xoxoday_limit_status", "seed"})
_OPTIONAL_INT_FIELDS = frozenset({"xoxoday_rpm", "capillary_rpm"})
_BOOL_FIELDS = frozenset({"capillary_retry_after"})
#: What a token endpoint may be told to answer next (``token_faults``).
TOKEN_FAULTS = ("ok", "unreadable", "garbled", "expired", "error_page", "refused")


@dataclass
class SandboxConfig:
    """Behaviour knobs of the sandbox; every field is read per request, so tests may change them live.

    :param latency_ms: sleep added to every vendor request that is not rate limited, before it is processed.
    :param reply_delay_ms: sleep after a vendor request was processed (applied), before its answer is
        sent: a client killed in this window never learns that its reversal was applied.
    :param error_rate: share of vendor requests answered 502/503 with an HTML body
        (drawn from ``random.Random(seed)``, so deterministic for a given request sequence).
    :param fail_next: the next N vendor requests get a 503 (decremented per request).
    :param xoxoday_rpm: Xoxoday requests per minute on the points API; ``None`` = unlimited.
    :param capillary_rpm: Capillary requests per minute on revokeEarn; ``None`` = unlimited.
    :param rate_window_seconds: length of the sliding window in which ``ceil(rpm * window / 60)``
        requests are allowed.
    :param xoxoday_penalty_seconds: once the Xoxoday limit is hit, every request is refused for this long.
    :param xoxoday_limit_status: HTTP status of Xoxoday's rate-limit answer (undocumented by the vendor).
    :param capillary_retry_after: send ``Retry-After`` with Capillary 429 answers.
    :param capillary_penalty_seconds: once the Capillary limit is hit, every request gets 429 for this long.
    :param xoxoday_token_ttl: lifetime of Xoxoday access tokens, seconds.
    :param xoxoday_refresh_grace: seconds a rotated refresh token stays usable (0 = invalid at once).
    :param xoxoday_refresh_token_ttl: lifetime of Xoxoday refresh tokens, seconds.
    :param capillary_token_ttl: lifetime of Capillary OAuth tokens, seconds.
    :param seed: seed of the fault-injection random generator.
    :param token_faults: how the next token answers go, one entry per answer of a token endpoint
        (Capillary's token generation, Xoxoday's refresh and validation), consumed in order:
        ``ok`` (as usual), ``unreadable`` (the token is issued, the answer carries it, and one field
        breaks the documented schema: Capillary ``ttlSeconds: "60m"``, Xoxoday ``expires_in: "15 days"``),
        ``garbled`` (the token is issued and the answer is well-formed, but the token in it ends with a
        line break, which no request header can carry),
        ``expired`` (a well-formed answer whose token is already expired), ``error_page`` (a gateway's
        503 page; nothing issued), ``refused`` (the vendor's refusal of the credentials).
    """

    latency_ms: float = 0.0
    reply_delay_ms: float = 0.0
    error_rate: float = 0.0
    fail_next: int = 0
    xoxoday_rpm: int | None = None
    capillary_rpm: int | None = None
    rate_window_seconds: float = 60.0
    xoxoday_penalty_seconds: float = 60.0
    xoxoday_limit_status: int = 429
    capillary_retry_after: bool = True
    capillary_penalty_seconds: float = 1.0
    xoxoday_token_ttl: float = 1296000.0
    xoxoday_refresh_grace: float = 0.0
    xoxoday_refresh_token_ttl: float = 2592000.0
    capillary_token_ttl: float = 3600.0
    seed: int = 0
    token_faults: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-able dict."""
        return dataclasses.asdict(self)

    def update(self, patch: Mapping[str, Any]) -> None:
        """Validate a partial set of fields and apply it; nothing is changed when any value is invalid.

        :raises ValueError: on an unknown field or a value of the wrong type or range.
        """
        checked = {name: _check_value(name, value) for name, value in patch.items()}
        for name, value in checked.items():
            setattr(self, name, value)


def _check_value(name: str, value: Any) -> Any:
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number")
        if value < 0:
            raise ValueError(f"{name} must be >= 0")
        if name == "error_rate" and value > 1:
            raise ValueError("error_rate must be between 0 and 1")
        if name == "rate_window_seconds" and value == 0:
            raise ValueError("rate_window_seconds must be > 0")
        return float(value)
    if name in _INT_FIELDS or name in _OPTIONAL_INT_FIELDS:
        if value is None and name in _OPTIONAL_INT_FIELDS:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        if name in _OPTIONAL_INT_FIELDS and value <= 0:
            raise ValueError(f"{name} must be > 0 or null")
        if name == "fail_next" and value < 0:
            raise ValueError("fail_next must be >= 0")
        if name == "xoxoday_limit_status" and not 100 <= value <= 599:
            raise ValueError("xoxoday_limit_status must be an HTTP status")
        return value
    if name == "token_faults":
        if not isinstance(value, list) or not all(isinstance(v, str) and v in TOKEN_FAULTS for v in value):
            raise ValueError(f"token_faults must be a list of {', '.join(TOKEN_FAULTS)}")
        return list(value)
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    raise ValueError(f"unknown setting {name!r}")
