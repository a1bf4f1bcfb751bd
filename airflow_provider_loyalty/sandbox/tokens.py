"""Credentials the vendors issue: Xoxoday's rotating access/refresh pair and Capillary's OAuth tokens.

Lock-free on purpose: ``SandboxState`` calls every method with its one lock held. The time is passed in
as ``now``, read by the caller before it takes the lock.
"""

from __future__ import annotations

import secrets
from typing import Any

from airflow_provider_loyalty.sandbox.config import (
    XOXODAY_ACCESS_TOKEN,
    XOXODAY_REFRESH_TOKEN,
    SandboxConfig,
)


class Tokens:
    """Issued tokens with their expiries (epoch seconds).

    Expired Xoxoday access tokens are dropped at the next rotation; Capillary tokens are never dropped, so
    that an expired one is answered 498 rather than 401.
    """

    __slots__ = ("_cap_tokens", "_xx_access", "_xx_old_refresh", "_xx_refresh", "_xx_refresh_expiry")

    def __init__(self) -> None:
        self._xx_access: dict[str, float] = {}
        self._xx_refresh = ""
        self._xx_refresh_expiry = 0.0
        # Rotated-out refresh tokens still usable until their grace ends.
        self._xx_old_refresh: dict[str, float] = {}
        self._cap_tokens: dict[str, float] = {}

    # ------------------------------------------------------------------ Xoxoday
    def reset(self, now: float, cfg: SandboxConfig) -> None:
        """Restore the initial Xoxoday pair (fresh expiries) and forget every other token."""
        self._xx_access = {XOXODAY_ACCESS_TOKEN: now + cfg.xoxoday_token_ttl}
        self._xx_refresh = XOXODAY_REFRESH_TOKEN
        self._xx_refresh_expiry = now + cfg.xoxoday_refresh_token_ttl
        self._xx_old_refresh = {}
        self._cap_tokens = {}

    def set_xoxoday(self, now: float, cfg: SandboxConfig, access_token: str | None, refresh_token: str | None) -> None:
        """Make ``access_token`` valid (for one TTL) and/or ``refresh_token`` the current refresh token."""
        if access_token:
            self._xx_access[access_token] = now + cfg.xoxoday_token_ttl
        if refresh_token:
            self._xx_refresh = refresh_token
            self._xx_refresh_expiry = now + cfg.xoxoday_refresh_token_ttl
            self._xx_old_refresh.pop(refresh_token, None)

    def expire_xoxoday_access(self) -> None:
        """Expire every Xoxoday access token issued so far (requests then get 401)."""
        for token in self._xx_access:
            self._xx_access[token] = 0.0

    def xoxoday_pair(self, now: float) -> dict[str, Any]:
        """Return the current Xoxoday pair: the newest valid access token and the current refresh token."""
        access, expiry = max(self._xx_access.items(), key=lambda item: item[1], default=("", 0.0))
        return {
            "access_token": access if expiry > now else None,
            "refresh_token": self._xx_refresh,
            "access_token_expiry": int(expiry * 1000),
            "refresh_token_expiry": int(self._xx_refresh_expiry * 1000),
        }

    def xoxoday_access_expiry(self, now: float, token: str) -> float | None:
        """Return the expiry (epoch seconds) of a valid Xoxoday access token, else ``None``."""
        expiry = self._xx_access.get(token)
        return expiry if expiry is not None and now < expiry else None

    def xoxoday_refresh_expiry(self) -> float:
        """Return the expiry (epoch seconds) of the current Xoxoday refresh token."""
        return self._xx_refresh_expiry

    def refresh_xoxoday(
        self, now: float, cfg: SandboxConfig, refresh_token: str, *, expired: bool = False
    ) -> dict[str, Any] | None:
        """Rotate the Xoxoday pair if ``refresh_token`` is usable; return the TokenResponse or ``None``.

        :param expired: the new access token is expired already (the answer gives its usual expiry).
        """
        current = refresh_token == self._xx_refresh and now < self._xx_refresh_expiry
        in_grace = now < self._xx_old_refresh.get(refresh_token, 0.0)
        if not (current or in_grace):
            return None
        self._xx_old_refresh = {tok: exp for tok, exp in self._xx_old_refresh.items() if exp > now}
        if cfg.xoxoday_refresh_grace > 0:
            grace_end = min(now + cfg.xoxoday_refresh_grace, self._xx_refresh_expiry)
            self._xx_old_refresh[self._xx_refresh] = grace_end
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        access_expiry = now + cfg.xoxoday_token_ttl
        self._xx_access = {tok: exp for tok, exp in self._xx_access.items() if exp > now}
        self._xx_access[access] = 0.0 if expired else access_expiry
        self._xx_refresh = refresh
        self._xx_refresh_expiry = now + cfg.xoxoday_refresh_token_ttl
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": int(cfg.xoxoday_token_ttl),
            "refresh_token": refresh,
            "access_token_expiry": int(access_expiry * 1000),
            "refresh_token_expiry": int(self._xx_refresh_expiry * 1000),
        }

    # ------------------------------------------------------------------ Capillary
    def add_capillary(self, token: str, expiry: float) -> None:
        """Register an issued Capillary OAuth token valid until ``expiry`` (epoch seconds)."""
        self._cap_tokens[token] = expiry

    def capillary_issued(self) -> list[str]:
        """Return every Capillary OAuth token issued so far."""
        return list(self._cap_tokens)

    def capillary_expiry(self, token: str) -> float | None:
        """Return the expiry of a Capillary OAuth token ever issued (even expired), else ``None``."""
        return self._cap_tokens.get(token)

    def expire_capillary(self) -> None:
        """Expire every Capillary OAuth token issued so far (requests then get 498)."""
        for token in self._cap_tokens:
            self._cap_tokens[token] = 0.0
