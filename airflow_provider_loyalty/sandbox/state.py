"""The sandbox's whole mutable state behind one lock: it composes the per-concern parts.

Parts (each lock-free, each in its own module): ``points.PointBook`` (Xoxoday), ``earns.EarnBook``
(Capillary), ``limits.RateLimits``, ``faults.FaultDraw``, ``tokens.Tokens`` and ``stats.RequestStats``.
One lock guards them all because one vendor request touches several at once (an item's state, its attempt
counters and the vendor's statistics) and readers such as ``stats()`` must see them consistent.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_loyalty.sandbox.config import SandboxConfig
from airflow_provider_loyalty.sandbox.earns import EarnBook
from airflow_provider_loyalty.sandbox.faults import FaultDraw
from airflow_provider_loyalty.sandbox.limits import RateLimited, RateLimits
from airflow_provider_loyalty.sandbox.points import ISSUED, PointBook
from airflow_provider_loyalty.sandbox.stats import RequestStats
from airflow_provider_loyalty.sandbox.stats import _max_in_window as _max_in_window  # re-export for tests
from airflow_provider_loyalty.sandbox.tokens import Tokens
from airflow_provider_loyalty.sandbox.vendors import CAPILLARY, VENDORS, XOXODAY


class SandboxState:
    """All mutable vendor state; every public method takes ``lock`` once around the parts it uses."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.lock = threading.Lock()
        self._points = PointBook()
        self._earns = EarnBook()
        self._limits = RateLimits(VENDORS)
        self._faults = FaultDraw()
        self._tokens = Tokens()
        self._stats = RequestStats()
        self.reset_tokens()

    # ------------------------------------------------------------------ loading
    def add_points(self, unique_ids: Iterable[int], status: int = ISSUED) -> int:
        """Register issued point transactions; return how many were new (known ids keep their state)."""
        with self.lock:
            return self._points.add(unique_ids, status)

    def add_promotions(self, promotions: Mapping[str, str]) -> None:
        """Register promotions as ``promotion_id -> type`` (``CART``, ``POS`` or ``CODE``)."""
        with self.lock:
            self._earns.add_promotions(promotions)

    def add_earns(self, earns: Iterable[tuple[int, str, str, bool]]) -> int:
        """Register earns ``(customer_id, promotion_id, earn_id, redeemed)``; return how many were new.

        Unknown promotions are registered as ``CART``.
        """
        with self.lock:
            return self._earns.add_earns(earns)

    # ------------------------------------------------------------------ queries
    def point_status(self, unique_id: int) -> str | None:
        """Return ``issued``/``cancelled`` for a known point transaction, else ``None``."""
        with self.lock:
            return self._points.status(unique_id)

    def earn(self, earn_id: str) -> tuple[int, str, str] | None:
        """Return ``(customer_id, promotion_id, state)`` of a known earn, else ``None``."""
        with self.lock:
            return self._earns.earn(earn_id)

    def promotion_type(self, promotion_id: str) -> str | None:
        """Return the type of a known promotion, else ``None``."""
        with self.lock:
            return self._earns.promotion_type(promotion_id)

    def point_attempts(self, unique_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Return, per id, the cancel attempts received, successful cancellations and current status."""
        with self.lock:
            return self._points.attempts(unique_ids)

    def earn_attempts(self, earn_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return, per earn id, the revoke attempts received, successful revocations and current state."""
        with self.lock:
            return self._earns.attempts(earn_ids)

    def counts(self) -> dict[str, int]:
        """Return how many point transactions and earns are known, and in which state."""
        with self.lock:
            return {**self._points.counts(), **self._earns.counts()}

    # ------------------------------------------------------------------ vendor operations
    def cancel_points(self, unique_ids: Sequence[int]) -> list[tuple[int, bool, str]]:
        """Cancel each id in order (duplicates processed one by one); return ``(id, success, message)``."""
        with self.lock:
            return self._points.cancel(unique_ids, self._stats.vendors[XOXODAY])

    def revoke_earns(
        self, customer_id: int, details: Sequence[tuple[str, Sequence[str]]]
    ) -> tuple[dict[str, list[str]], dict[str, int], dict[tuple[int, str], list[str]]]:
        """Revoke earns of one customer, promotion by promotion, in request order.

        :return: ``(revoked, requested, errors)``: revoked earn ids per promotion, earn ids requested per
            promotion, and failed earn ids grouped by ``(error code, promotion id)`` in first-seen order.
        """
        with self.lock:
            return self._earns.revoke(customer_id, details, self._stats.vendors[CAPILLARY])

    # ------------------------------------------------------------------ rate limits and faults
    def check_rate_limit(self, vendor: str, now: float) -> RateLimited | None:
        """Admit or refuse one API request of ``vendor`` arriving at monotonic time ``now``."""
        cfg = self.config
        rpm = cfg.xoxoday_rpm if vendor == XOXODAY else cfg.capillary_rpm
        penalty = cfg.xoxoday_penalty_seconds if vendor == XOXODAY else cfg.capillary_penalty_seconds
        window = cfg.rate_window_seconds
        with self.lock:
            limited = self._limits.check(vendor, now, rpm, window, penalty)
            if limited is not None:
                counters = self._stats.vendors[vendor]
                counters.rate_limited += 1
                if limited.in_penalty:
                    counters.in_penalty += 1
            return limited

    def draw_fault(self) -> int | None:
        """Return 503/502 when this vendor request must fail (``fail_next`` first, then ``error_rate``)."""
        with self.lock:
            return self._faults.draw(self.config)

    def next_token_fault(self) -> str:
        """Return how this token answer goes (the next ``token_faults`` entry, consumed; ``ok`` when none)."""
        with self.lock:
            faults = self.config.token_faults
            return faults.pop(0) if faults else "ok"

    # ------------------------------------------------------------------ tokens
    def reset_tokens(self) -> None:
        """Restore the initial Xoxoday pair (fresh expiries) and forget every other token."""
        now = time.time()
        with self.lock:
            self._tokens.reset(now, self.config)

    def set_xoxoday_tokens(self, access_token: str | None = None, refresh_token: str | None = None) -> None:
        """Make ``access_token`` valid (for one TTL) and/or ``refresh_token`` the current refresh token."""
        now = time.time()
        with self.lock:
            self._tokens.set_xoxoday(now, self.config, access_token, refresh_token)

    def expire_xoxoday_access_tokens(self) -> None:
        """Expire every Xoxoday access token issued so far (requests then get 401)."""
        with self.lock:
            self._tokens.expire_xoxoday_access()

    def expire_capillary_tokens(self) -> None:
        """Expire every Capillary OAuth token issued so far (requests then get 498)."""
        with self.lock:
            self._tokens.expire_capillary()

    def xoxoday_tokens(self) -> dict[str, Any]:
        """Return the current Xoxoday pair: the newest valid access token and the current refresh token."""
        now = time.time()
        with self.lock:
            return self._tokens.xoxoday_pair(now)

    def xoxoday_access_expiry(self, token: str) -> float | None:
        """Return the expiry (epoch seconds) of a valid Xoxoday access token, else ``None``."""
        now = time.time()
        with self.lock:
            return self._tokens.xoxoday_access_expiry(now, token)

    def xoxoday_refresh_expiry(self) -> float:
        """Return the expiry (epoch seconds) of the current Xoxoday refresh token."""
        with self.lock:
            return self._tokens.xoxoday_refresh_expiry()

    def refresh_xoxoday(self, refresh_token: str, *, expired: bool = False) -> dict[str, Any] | None:
        """Rotate the Xoxoday pair if ``refresh_token`` is usable; return the TokenResponse or ``None``.

        :param expired: issue an access token that is already expired (the answer does not say so).
        """
        now = time.time()
        with self.lock:
            tokens = self._tokens.refresh_xoxoday(now, self.config, refresh_token, expired=expired)
            if tokens is not None:
                self._stats.vendors[XOXODAY].token_events += 1
            return tokens

    def new_capillary_token(self, *, expired: bool = False) -> tuple[str, int]:
        """Issue a Capillary OAuth token; return it with its TTL in seconds.

        :param expired: issue it already expired (the TTL returned does not say so).
        """
        ttl = self.config.capillary_token_ttl
        token = secrets.token_urlsafe(32)  # drawn before taking the lock: it does not need it
        with self.lock:
            self._tokens.add_capillary(token, 0.0 if expired else time.time() + ttl)
            self._stats.vendors[CAPILLARY].token_events += 1
        return token, int(ttl)

    def capillary_tokens(self) -> list[str]:
        """Return every Capillary OAuth token issued so far (tests check that none leaked)."""
        with self.lock:
            return self._tokens.capillary_issued()

    def capillary_token_status(self, token: str) -> str:
        """Return ``valid``, ``expired`` or ``unknown`` for a Capillary OAuth token."""
        with self.lock:
            expiry = self._tokens.capillary_expiry(token)
        if expiry is None:
            return "unknown"
        return "valid" if time.time() < expiry else "expired"

    # ------------------------------------------------------------------ request log and stats
    def log_request(
        self,
        vendor: str,
        endpoint: str,
        status: int,
        items: int,
        wall: float,
        mono: float,
        *,
        limited: bool = False,
        fault: bool = False,
        processed: bool = False,
    ) -> None:
        """Append one vendor request to the log and update the per-vendor counters."""
        with self.lock:
            self._stats.log(vendor, endpoint, status, items, wall, mono, limited, fault, processed)

    def request_log(self, vendor: str | None = None, since: int = 0, limit: int | None = None) -> list[dict]:
        """Return logged vendor requests (oldest first) from position ``since``, optionally for one vendor."""
        with self.lock:
            return self._stats.rows(vendor, since, limit)

    def reset_stats(self) -> None:
        """Clear the request log, counters and per-item attempt counts (item states are kept)."""
        with self.lock:
            self._stats.reset()
            self._points.reset_attempts()
            self._earns.reset_attempts()

    def stats(self, window_seconds: float | None = None) -> dict[str, Any]:
        """Return JSON-able per-vendor statistics.

        ``max_requests_in_window`` counts API requests (cancel points / revokeEarn, including refused ones)
        in the busiest sliding window of ``window_seconds`` (default: the configured rate window);
        ``max_accepted_in_window`` counts only those not refused by the rate limiter.
        """
        cfg = self.config
        window = cfg.rate_window_seconds if window_seconds is None else window_seconds
        rpms = {XOXODAY: cfg.xoxoday_rpm, CAPILLARY: cfg.capillary_rpm}
        with self.lock:
            earns = self._earns.counts()
            item_counts = {
                XOXODAY: self._points.counts(),
                CAPILLARY: {"earns": earns["earns"], "earns_revoked": earns["earns_revoked"]},
            }
            return self._stats.summary(window, rpms, item_counts)
