"""The request log and the per-vendor counters behind ``GET /_sandbox/stats`` and ``/_sandbox/requests``.

Lock-free on purpose: ``SandboxState`` calls every method with its one lock held, so that a request's log
row and the counters its handling bumped are seen together.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from typing import Any

from airflow_provider_loyalty.sandbox.limits import window_limit
from airflow_provider_loyalty.sandbox.vendors import API_ENDPOINTS, VENDORS, XOXODAY


def zeros(n: int) -> array:
    """Return ``n`` zeroed unsigned counters (an ``array('I')``), built without a Python-level loop."""
    return array("I", bytes(4 * n))


class VendorCounters:
    """What one vendor was asked and did since the last reset; bumped by the vendor models and the state."""

    __slots__ = (
        "attempted_ids",
        "by_endpoint",
        "by_status",
        "duplicate_ids",
        "faults",
        "in_penalty",
        "items_done",
        "items_received",
        "rate_limited",
        "token_events",
    )

    def __init__(self) -> None:
        self.by_status: dict[int, int] = {}
        self.by_endpoint: dict[str, int] = {}
        self.rate_limited = 0  # requests refused by the rate limiter, penalty included
        self.in_penalty = 0  # of which refused because a penalty was running
        self.faults = 0  # requests answered by fault injection
        self.items_received = 0  # ids in requests that reached the vendor logic
        self.items_done = 0  # ids cancelled / earns revoked
        self.attempted_ids = 0  # distinct ids ever attempted
        self.duplicate_ids = 0  # ids attempted more than once
        self.token_events = 0  # Xoxoday refreshes / Capillary tokens generated


class RequestStats:
    """Every vendor request as a row of flat columns (time, vendor, endpoint, status, items, limited)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the log and zero the counters."""
        self._log_wall = array("d")
        self._log_mono = array("d")
        self._log_vendor = bytearray()
        self._log_endpoint = bytearray()
        self._log_status = array("H")
        self._log_items = array("I")
        self._log_limited = bytearray()
        self._endpoints: list[str] = []
        self._endpoint_ids: dict[str, int] = {}
        self.vendors = {vendor: VendorCounters() for vendor in VENDORS}

    def log(
        self,
        vendor: str,
        endpoint: str,
        status: int,
        items: int,
        wall: float,
        mono: float,
        limited: bool,
        fault: bool,
        processed: bool,
    ) -> None:
        """Append one vendor request to the log and update the vendor's counters."""
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
        counters = self.vendors[vendor]
        by_status = counters.by_status
        by_status[status] = by_status.get(status, 0) + 1
        by_endpoint = counters.by_endpoint
        by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + 1
        if fault:
            counters.faults += 1
        if processed:
            counters.items_received += items

    def rows(self, vendor: str | None, since: int, limit: int | None) -> list[dict]:
        """Return logged requests (oldest first) from position ``since``, optionally for one vendor."""
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

    def summary(
        self,
        window: float,
        rpms: Mapping[str, int | None],
        item_counts: Mapping[str, Mapping[str, int]],
    ) -> dict[str, Any]:
        """Return JSON-able per-vendor statistics (see ``SandboxState.stats``).

        :param rpms: each vendor's configured requests per minute (``None`` = unlimited).
        :param item_counts: per vendor, the item counts appended to its entry.
        """
        out: dict[str, Any] = {"window_seconds": window}
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
            rpm = rpms[vendor]
            counters = self.vendors[vendor]
            done_key = "cancelled" if vendor == XOXODAY else "revoked"
            token_key = "token_refreshes" if vendor == XOXODAY else "tokens_generated"
            out[vendor] = {
                "requests": sum(counters.by_status.values()),
                "api_requests": len(all_times),
                "by_status": {str(k): v for k, v in sorted(counters.by_status.items())},
                "by_endpoint": dict(counters.by_endpoint),
                "rate_limited": counters.rate_limited,
                "requests_in_penalty": counters.in_penalty,
                "faults": counters.faults,
                "items_received": counters.items_received,
                "attempted_ids": counters.attempted_ids,
                done_key: counters.items_done,
                "duplicate_attempts": counters.duplicate_ids,
                "max_requests_in_window": _max_in_window(all_times, window),
                "max_accepted_in_window": _max_in_window(accepted_times, window),
                "rate_limit": None if rpm is None else window_limit(rpm, window),
                token_key: counters.token_events,
                **item_counts[vendor],
            }
        return out


def _max_in_window(times: list[float], window: float) -> int:
    """Return the largest number of timestamps inside any half-open window ``(t - window, t]``."""
    best = 0
    start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
