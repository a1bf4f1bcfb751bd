"""Thread-safe, compact in-memory state of both emulated vendors, plus the request log and stats."""

from __future__ import annotations

import math
import secrets
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_loyalty.sandbox.config import (
    XOXODAY_ACCESS_TOKEN,
    XOXODAY_REFRESH_TOKEN,
    SandboxConfig,
)

XOXODAY = "xoxoday"
CAPILLARY = "capillary"
VENDORS = (XOXODAY, CAPILLARY)

# Point transaction status.
ISSUED = 0
CANCELLED = 1
POINT_STATUS_NAMES = ("issued", "cancelled")

# Earn state.
UNREDEEMED = 0
REDEEMED = 1
REVOKED = 2
EARN_STATE_NAMES = ("unredeemed", "redeemed", "revoked")

REVOCABLE_PROMOTION_TYPES = frozenset({"CART"})
PROMOTION_TYPES = frozenset({"CART", "POS", "CODE"})

MSG_CANCELLED = "Points cancelled successfully"
MSG_ALREADY_CANCELLED = "Points already cancelled"
MSG_NOT_FOUND = "Transaction not found"

CODE_REDEEMED = 729
CODE_NOT_REVOCABLE = 730
CODE_INVALID_EARN = 731
ERROR_MESSAGES = {
    CODE_REDEEMED: "Earn already redeemed",
    CODE_NOT_REVOCABLE: "Promotion of type POS/CODE cannot be revoked",
    CODE_INVALID_EARN: "Invalid earn id",
}

# Endpoints that the vendors' rate limits apply to.
API_ENDPOINTS = {XOXODAY: "cancel_points", CAPILLARY: "revoke_earn"}


class RateLimited:
    """Outcome of a refused rate-limit check: seconds to wait and whether a penalty was already running."""

    __slots__ = ("in_penalty", "remaining")

    def __init__(self, remaining: float, in_penalty: bool) -> None:
        self.remaining = remaining
        self.in_penalty = in_penalty

    @property
    def wait_seconds(self) -> int:
        """Return the remaining wait rounded up to whole seconds (at least 1)."""
        return max(1, math.ceil(self.remaining - 1e-9))


class _Limiter:
    """Sliding-window limiter with a penalty window, as both vendors describe it."""

    __slots__ = ("accepted", "penalty_until")

    def __init__(self) -> None:
        self.accepted: deque[float] = deque()
        self.penalty_until = 0.0


class SandboxState:
    """All mutable vendor state behind one lock; per-item data lives in dicts of ints and flat arrays.

    Point transactions: ``unique_id -> index`` into ``bytearray``/``array`` columns (status, attempts,
    cancellations). Earns: ``earn_id -> index`` into columns (customer id, promotion index, state,
    attempts, revocations). One million of each takes roughly 300 MB.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.lock = threading.Lock()
        # Xoxoday point transactions.
        self._point_index: dict[int, int] = {}
        self._point_status = bytearray()
        self._point_attempts = array("I")
        self._point_cancels = array("I")
        self._unknown_point_attempts: dict[int, int] = {}
        # Capillary promotions and earns.
        self._promo_index: dict[str, int] = {}
        self._promo_ids: list[str] = []
        self._promo_types: list[str] = []
        self._earn_index: dict[str, int] = {}
        self._earn_customer = array("q")
        self._earn_promo = array("I")
        self._earn_state = bytearray()
        self._earn_attempts = array("I")
        self._earn_revokes = array("I")
        self._unknown_earn_attempts: dict[str, int] = {}
        # Rate limiters and fault injection.
        self._limiters = {vendor: _Limiter() for vendor in VENDORS}
        self._fault_seed: int | None = None
        self._fault_rng: Any = None
        # Tokens.
        self._xx_access: dict[str, float] = {}
        self._xx_refresh = ""
        self._xx_refresh_expiry = 0.0
        self._xx_old_refresh: dict[str, float] = {}
        self._cap_tokens: dict[str, float] = {}
        self.reset_tokens()
        self._init_stats()

    # ------------------------------------------------------------------ loading
    def add_points(self, unique_ids: Iterable[int], status: int = ISSUED) -> int:
        """Register issued point transactions; return how many were new (known ids keep their state)."""
        added = 0
        with self.lock:
            index = self._point_index
            for uid in unique_ids:
                if uid in index:
                    continue
                index[uid] = len(self._point_status)
                self._point_status.append(status)
                added += 1
            self._point_attempts.extend(_zeros(added))
            self._point_cancels.extend(_zeros(added))
        return added

    def add_promotions(self, promotions: Mapping[str, str]) -> None:
        """Register promotions as ``promotion_id -> type`` (``CART``, ``POS`` or ``CODE``)."""
        with self.lock:
            for promo_id, promo_type in promotions.items():
                self._promotion(promo_id, promo_type.upper())

    def add_earns(self, earns: Iterable[tuple[int, str, str, bool]]) -> int:
        """Register earns ``(customer_id, promotion_id, earn_id, redeemed)``; return how many were new.

        Unknown promotions are registered as ``CART``.
        """
        added = 0
        with self.lock:
            index = self._earn_index
            promo_index = self._promo_index
            customers = self._earn_customer
            promos = self._earn_promo
            states = self._earn_state
            for customer_id, promo_id, earn_id, redeemed in earns:
                if earn_id in index:
                    continue
                pidx = promo_index.get(promo_id)
                if pidx is None:
                    pidx = self._promotion(promo_id, "CART")
                index[earn_id] = len(states)
                customers.append(customer_id)
                promos.append(pidx)
                states.append(REDEEMED if redeemed else UNREDEEMED)
                added += 1
            self._earn_attempts.extend(_zeros(added))
            self._earn_revokes.extend(_zeros(added))
        return added

    def _promotion(self, promo_id: str, promo_type: str) -> int:
        if promo_type not in PROMOTION_TYPES:
            raise ValueError(f"unknown promotion type {promo_type!r}")
        pidx = self._promo_index.get(promo_id)
        if pidx is None:
            pidx = len(self._promo_ids)
            self._promo_index[promo_id] = pidx
            self._promo_ids.append(promo_id)
            self._promo_types.append(promo_type)
        else:
            self._promo_types[pidx] = promo_type
        return pidx

    # ------------------------------------------------------------------ queries
    def point_status(self, unique_id: int) -> str | None:
        """Return ``issued``/``cancelled`` for a known point transaction, else ``None``."""
        with self.lock:
            idx = self._point_index.get(unique_id)
            return None if idx is None else POINT_STATUS_NAMES[self._point_status[idx]]

    def earn(self, earn_id: str) -> tuple[int, str, str] | None:
        """Return ``(customer_id, promotion_id, state)`` of a known earn, else ``None``."""
        with self.lock:
            idx = self._earn_index.get(earn_id)
            if idx is None:
                return None
            return (
                self._earn_customer[idx],
                self._promo_ids[self._earn_promo[idx]],
                EARN_STATE_NAMES[self._earn_state[idx]],
            )

    def promotion_type(self, promotion_id: str) -> str | None:
        """Return the type of a known promotion, else ``None``."""
        with self.lock:
            pidx = self._promo_index.get(promotion_id)
            return None if pidx is None else self._promo_types[pidx]

    def point_attempts(self, unique_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Return, per id, the cancel attempts received, successful cancellations and current status."""
        out: dict[int, dict[str, Any]] = {}
        with self.lock:
            for uid in unique_ids:
                idx = self._point_index.get(uid)
                if idx is None:
                    out[uid] = {
                        "attempts": self._unknown_point_attempts.get(uid, 0),
                        "cancelled": 0,
                        "status": None,
                    }
                else:
                    out[uid] = {
                        "attempts": self._point_attempts[idx],
                        "cancelled": self._point_cancels[idx],
                        "status": POINT_STATUS_NAMES[self._point_status[idx]],
                    }
        return out

    def earn_attempts(self, earn_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return, per earn id, the revoke attempts received, successful revocations and current state."""
        out: dict[str, dict[str, Any]] = {}
        with self.lock:
            for earn_id in earn_ids:
                idx = self._earn_index.get(earn_id)
                if idx is None:
                    out[earn_id] = {
                        "attempts": self._unknown_earn_attempts.get(earn_id, 0),
                        "revoked": 0,
                        "state": None,
                    }
                else:
                    out[earn_id] = {
                        "attempts": self._earn_attempts[idx],
                        "revoked": self._earn_revokes[idx],
                        "state": EARN_STATE_NAMES[self._earn_state[idx]],
                    }
        return out

    def counts(self) -> dict[str, int]:
        """Return how many point transactions and earns are known, and in which state."""
        with self.lock:
            return {
                "points": len(self._point_status),
                "points_cancelled": self._point_status.count(CANCELLED),
                "promotions": len(self._promo_ids),
                "earns": len(self._earn_state),
                "earns_redeemed": self._earn_state.count(REDEEMED),
                "earns_revoked": self._earn_state.count(REVOKED),
            }

    # ------------------------------------------------------------------ vendor operations
    def cancel_points(self, unique_ids: Sequence[int]) -> list[tuple[int, bool, str]]:
        """Cancel each id in order (duplicates processed one by one); return ``(id, success, message)``."""
        results: list[tuple[int, bool, str]] = []
        with self.lock:
            index = self._point_index
            status = self._point_status
            attempts = self._point_attempts
            for uid in unique_ids:
                idx = index.get(uid)
                if idx is None:
                    seen = self._unknown_point_attempts.get(uid, 0) + 1
                    self._unknown_point_attempts[uid] = seen
                    results.append((uid, False, MSG_NOT_FOUND))
                else:
                    seen = attempts[idx] + 1
                    attempts[idx] = seen
                    if status[idx] == ISSUED:
                        status[idx] = CANCELLED
                        self._point_cancels[idx] += 1
                        self._items_done[XOXODAY] += 1
                        results.append((uid, True, MSG_CANCELLED))
                    else:
                        results.append((uid, False, MSG_ALREADY_CANCELLED))
                if seen == 1:
                    self._attempted_ids[XOXODAY] += 1
                elif seen == 2:
                    self._duplicate_ids[XOXODAY] += 1
        return results

    def revoke_earns(
        self, customer_id: int, details: Sequence[tuple[str, Sequence[str]]]
    ) -> tuple[dict[str, list[str]], dict[str, int], dict[tuple[int, str], list[str]]]:
        """Revoke earns of one customer, promotion by promotion, in request order.

        :return: ``(revoked, requested, errors)``: revoked earn ids per promotion, earn ids requested per
            promotion, and failed earn ids grouped by ``(error code, promotion id)`` in first-seen order.
        """
        revoked: dict[str, list[str]] = {}
        requested: dict[str, int] = {}
        errors: dict[tuple[int, str], list[str]] = {}
        with self.lock:
            index = self._earn_index
            customers = self._earn_customer
            promos = self._earn_promo
            states = self._earn_state
            attempts = self._earn_attempts
            for promo_id, earn_ids in details:
                pidx = self._promo_index.get(promo_id)
                revocable = pidx is None or self._promo_types[pidx] in REVOCABLE_PROMOTION_TYPES
                owner = (customer_id, pidx)
                requested[promo_id] = requested.get(promo_id, 0) + len(earn_ids)
                for earn_id in earn_ids:
                    idx = index.get(earn_id)
                    if idx is None:
                        seen = self._unknown_earn_attempts.get(earn_id, 0) + 1
                        self._unknown_earn_attempts[earn_id] = seen
                    else:
                        seen = attempts[idx] + 1
                        attempts[idx] = seen
                    if seen == 1:
                        self._attempted_ids[CAPILLARY] += 1
                    elif seen == 2:
                        self._duplicate_ids[CAPILLARY] += 1
                    if not revocable:
                        code = CODE_NOT_REVOCABLE
                    elif idx is None or states[idx] == REVOKED or (customers[idx], promos[idx]) != owner:
                        code = CODE_INVALID_EARN
                    elif states[idx] == REDEEMED:
                        code = CODE_REDEEMED
                    else:
                        assert idx is not None
                        states[idx] = REVOKED
                        self._earn_revokes[idx] += 1
                        self._items_done[CAPILLARY] += 1
                        revoked.setdefault(promo_id, []).append(earn_id)
                        continue
                    errors.setdefault((code, promo_id), []).append(earn_id)
        return revoked, requested, errors

    # ------------------------------------------------------------------ rate limits and faults
    def check_rate_limit(self, vendor: str, now: float) -> RateLimited | None:
        """Admit or refuse one API request of ``vendor`` arriving at monotonic time ``now``."""
        cfg = self.config
        rpm = cfg.xoxoday_rpm if vendor == XOXODAY else cfg.capillary_rpm
        penalty = cfg.xoxoday_penalty_seconds if vendor == XOXODAY else cfg.capillary_penalty_seconds
        window = cfg.rate_window_seconds
        with self.lock:
            limiter = self._limiters[vendor]
            if now < limiter.penalty_until:
                self._in_penalty[vendor] += 1
                self._rate_limited[vendor] += 1
                return RateLimited(limiter.penalty_until - now, True)
            if rpm is None:
                return None
            limit = max(1, math.ceil(rpm * window / 60.0 - 1e-9))
            accepted = limiter.accepted
            horizon = now - window
            while accepted and accepted[0] <= horizon:
                accepted.popleft()
            if len(accepted) >= limit:
                self._rate_limited[vendor] += 1
                if penalty > 0:
                    limiter.penalty_until = now + penalty
                    return RateLimited(penalty, False)
                return RateLimited(accepted[0] + window - now, False)
            accepted.append(now)
            return None

    def draw_fault(self) -> int | None:
        """Return 503/502 when this vendor request must fail (``fail_next`` first, then ``error_rate``)."""
        cfg = self.config
        with self.lock:
            if cfg.fail_next > 0:
                cfg.fail_next -= 1
                return 503
            if cfg.error_rate <= 0:
                return None
            if self._fault_rng is None or self._fault_seed != cfg.seed:
                import random

                self._fault_seed = cfg.seed
                self._fault_rng = random.Random(cfg.seed)
            rng = self._fault_rng
            if rng.random() < cfg.error_rate:
                return 502 if rng.random() < 0.5 else 503
            return None

    # ------------------------------------------------------------------ tokens
    def reset_tokens(self) -> None:
        """Restore the initial Xoxoday pair (fresh expiries) and forget every other token."""
        now = time.time()
        cfg = self.config
        with self.lock:
            self._xx_access = {XOXODAY_ACCESS_TOKEN: now + cfg.xoxoday_token_ttl}
            self._xx_refresh = XOXODAY_REFRESH_TOKEN
            self._xx_refresh_expiry = now + cfg.xoxoday_refresh_token_ttl
            self._xx_old_refresh = {}
            self._cap_tokens = {}

    def set_xoxoday_tokens(self, access_token: str | None = None, refresh_token: str | None = None) -> None:
        """Make ``access_token`` valid (for one TTL) and/or ``refresh_token`` the current refresh token."""
        now = time.time()
        cfg = self.config
        with self.lock:
            if access_token:
                self._xx_access[access_token] = now + cfg.xoxoday_token_ttl
            if refresh_token:
                self._xx_refresh = refresh_token
                self._xx_refresh_expiry = now + cfg.xoxoday_refresh_token_ttl
                self._xx_old_refresh.pop(refresh_token, None)

    def expire_xoxoday_access_tokens(self) -> None:
        """Expire every Xoxoday access token issued so far (requests then get 401)."""
        with self.lock:
            for token in self._xx_access:
                self._xx_access[token] = 0.0

    def expire_capillary_tokens(self) -> None:
        """Expire every Capillary OAuth token issued so far (requests then get 498)."""
        with self.lock:
            for token in self._cap_tokens:
                self._cap_tokens[token] = 0.0

    def xoxoday_tokens(self) -> dict[str, Any]:
        """Return the current Xoxoday pair: the newest valid access token and the current refresh token."""
        now = time.time()
        with self.lock:
            access, expiry = max(self._xx_access.items(), key=lambda item: item[1], default=("", 0.0))
            return {
                "access_token": access if expiry > now else None,
                "refresh_token": self._xx_refresh,
                "access_token_expiry": int(expiry * 1000),
                "refresh_token_expiry": int(self._xx_refresh_expiry * 1000),
            }

    def xoxoday_access_expiry(self, token: str) -> float | None:
        """Return the expiry (epoch seconds) of a valid Xoxoday access token, else ``None``."""
        now = time.time()
        with self.lock:
            expiry = self._xx_access.get(token)
            return expiry if expiry is not None and now < expiry else None

    def xoxoday_refresh_expiry(self) -> float:
        """Return the expiry (epoch seconds) of the current Xoxoday refresh token."""
        with self.lock:
            return self._xx_refresh_expiry

    def refresh_xoxoday(self, refresh_token: str) -> dict[str, Any] | None:
        """Rotate the Xoxoday pair if ``refresh_token`` is usable; return the TokenResponse or ``None``."""
        now = time.time()
        cfg = self.config
        with self.lock:
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
            self._xx_access[access] = access_expiry
            self._xx_refresh = refresh
            self._xx_refresh_expiry = now + cfg.xoxoday_refresh_token_ttl
            self._token_events[XOXODAY] += 1
            return {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": int(cfg.xoxoday_token_ttl),
                "refresh_token": refresh,
                "access_token_expiry": int(access_expiry * 1000),
                "refresh_token_expiry": int(self._xx_refresh_expiry * 1000),
            }

    def new_capillary_token(self) -> tuple[str, int]:
        """Issue a Capillary OAuth token; return it with its TTL in seconds."""
        ttl = self.config.capillary_token_ttl
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._cap_tokens[token] = time.time() + ttl
            self._token_events[CAPILLARY] += 1
        return token, int(ttl)

    def capillary_token_status(self, token: str) -> str:
        """Return ``valid``, ``expired`` or ``unknown`` for a Capillary OAuth token."""
        with self.lock:
            expiry = self._cap_tokens.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if time.time() < expiry else "expired"

    # ------------------------------------------------------------------ request log and stats
    def _init_stats(self) -> None:
        self._log_wall = array("d")
        self._log_mono = array("d")
        self._log_vendor = bytearray()
        self._log_endpoint = bytearray()
        self._log_status = array("H")
        self._log_items = array("I")
        self._log_limited = bytearray()
        self._endpoints: list[str] = []
        self._endpoint_ids: dict[str, int] = {}
        self._by_status: dict[str, dict[int, int]] = {vendor: {} for vendor in VENDORS}
        self._by_endpoint: dict[str, dict[str, int]] = {vendor: {} for vendor in VENDORS}
        self._rate_limited = dict.fromkeys(VENDORS, 0)
        self._in_penalty = dict.fromkeys(VENDORS, 0)
        self._faults = dict.fromkeys(VENDORS, 0)
        self._items_received = dict.fromkeys(VENDORS, 0)
        self._items_done = dict.fromkeys(VENDORS, 0)
        self._attempted_ids = dict.fromkeys(VENDORS, 0)
        self._duplicate_ids = dict.fromkeys(VENDORS, 0)
        self._token_events = dict.fromkeys(VENDORS, 0)

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
            eid = self._endpoint_ids.get(endpoint)
            if eid is None:
                eid = self._endpoint_ids[endpoint] = len(self._endpoints)
                self._endpoints.append(endpoint)
            self._log_wall.append(wall)
            self._log_mono.append(mono)
            self._log_vendor.append(VENDORS.index(vendor))
            self._log_endpoint.append(eid)
            self._log_status.append(status)
            self._log_items.append(items)
            self._log_limited.append(limited)
            by_status = self._by_status[vendor]
            by_status[status] = by_status.get(status, 0) + 1
            by_endpoint = self._by_endpoint[vendor]
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + 1
            if fault:
                self._faults[vendor] += 1
            if processed:
                self._items_received[vendor] += items

    def request_log(self, vendor: str | None = None, since: int = 0, limit: int | None = None) -> list[dict]:
        """Return logged vendor requests (oldest first) from position ``since``, optionally for one vendor."""
        with self.lock:
            rows = []
            for i in range(since, len(self._log_mono)):
                name = VENDORS[self._log_vendor[i]]
                if vendor is not None and name != vendor:
                    continue
                rows.append(
                    {
                        "seq": i,
                        "wall": self._log_wall[i],
                        "monotonic": self._log_mono[i],
                        "vendor": name,
                        "endpoint": self._endpoints[self._log_endpoint[i]],
                        "status": self._log_status[i],
                        "items": self._log_items[i],
                        "rate_limited": bool(self._log_limited[i]),
                    }
                )
                if limit is not None and len(rows) >= limit:
                    break
            return rows

    def reset_stats(self) -> None:
        """Clear the request log, counters and per-item attempt counts (item states are kept)."""
        with self.lock:
            self._init_stats()
            self._point_attempts = array("I", _zeros(len(self._point_status)))
            self._point_cancels = array("I", _zeros(len(self._point_status)))
            self._unknown_point_attempts = {}
            self._earn_attempts = array("I", _zeros(len(self._earn_state)))
            self._earn_revokes = array("I", _zeros(len(self._earn_state)))
            self._unknown_earn_attempts = {}

    def stats(self, window_seconds: float | None = None) -> dict[str, Any]:
        """Return JSON-able per-vendor statistics.

        ``max_requests_in_window`` counts API requests (cancel points / revokeEarn, including refused ones)
        in the busiest sliding window of ``window_seconds`` (default: the configured rate window);
        ``max_accepted_in_window`` counts only those not refused by the rate limiter.
        """
        cfg = self.config
        window = cfg.rate_window_seconds if window_seconds is None else window_seconds
        limits = {XOXODAY: cfg.xoxoday_rpm, CAPILLARY: cfg.capillary_rpm}
        out: dict[str, Any] = {"window_seconds": window}
        with self.lock:
            counts = {
                XOXODAY: {
                    "points": len(self._point_status),
                    "points_cancelled": self._point_status.count(CANCELLED),
                },
                CAPILLARY: {
                    "earns": len(self._earn_state),
                    "earns_revoked": self._earn_state.count(REVOKED),
                },
            }
            for vno, vendor in enumerate(VENDORS):
                api_eid = self._endpoint_ids.get(API_ENDPOINTS[vendor])
                all_times: list[float] = []
                accepted_times: list[float] = []
                if api_eid is not None:
                    for i, mono in enumerate(self._log_mono):
                        if self._log_vendor[i] == vno and self._log_endpoint[i] == api_eid:
                            all_times.append(mono)
                            if not self._log_limited[i]:
                                accepted_times.append(mono)
                    all_times.sort()
                    accepted_times.sort()
                rpm = limits[vendor]
                done_key = "cancelled" if vendor == XOXODAY else "revoked"
                token_key = "token_refreshes" if vendor == XOXODAY else "tokens_generated"
                out[vendor] = {
                    "requests": sum(self._by_status[vendor].values()),
                    "api_requests": len(all_times),
                    "by_status": {str(k): v for k, v in sorted(self._by_status[vendor].items())},
                    "by_endpoint": dict(self._by_endpoint[vendor]),
                    "rate_limited": self._rate_limited[vendor],
                    "requests_in_penalty": self._in_penalty[vendor],
                    "faults": self._faults[vendor],
                    "items_received": self._items_received[vendor],
                    "attempted_ids": self._attempted_ids[vendor],
                    done_key: self._items_done[vendor],
                    "duplicate_attempts": self._duplicate_ids[vendor],
                    "max_requests_in_window": _max_in_window(all_times, window),
                    "max_accepted_in_window": _max_in_window(accepted_times, window),
                    "rate_limit": None if rpm is None else max(1, math.ceil(rpm * window / 60.0 - 1e-9)),
                    token_key: self._token_events[vendor],
                    **counts[vendor],
                }
        return out


def _zeros(n: int) -> array:
    return array("I", bytes(4 * n))


def _max_in_window(times: list[float], window: float) -> int:
    """Return the largest number of timestamps inside any half-open window ``(t - window, t]``."""
    best = 0
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
