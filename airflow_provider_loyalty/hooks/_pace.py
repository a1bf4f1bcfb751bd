"""The pacer a hook gets from its ``max_requests_per_minute`` setting: fixed, unlimited or ``"auto"``.

Apart from :mod:`._pacing` (the limiter and the gate) and :mod:`._auto_rate` (the controller), so
that neither of the two imports the other's module to build it.
"""

from __future__ import annotations

from airflow_provider_loyalty.hooks._auto_rate import AutoRate, RateStore, VariableRateStore, is_auto
from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock
from airflow_provider_loyalty.hooks._pacing import RequestPacer

__all__ = ["build_pacer"]


def build_pacer(
    vendor: str,
    conn_id: str,
    per_minute: float | str | None,
    max_concurrency: int | None,
    *,
    cap: float | None = None,
    store: RateStore | None = None,
    clock: Clock = SYSTEM_CLOCK,
    rate_limit_timeout: float | None = None,
) -> RequestPacer:
    """The pacer of a hook: a fixed pace (a ceiling, stepped down after rate-limit answers) or, for ``"auto"``, one set by :class:`AutoRate`.

    :param per_minute: a number, ``None`` (no limit) or ``"auto"``.
    :param cap: ceiling of the pace; a fixed number above it is lowered to it.
    :param store: where ``auto`` keeps what it learned; the Variable
        ``loyalty_rate__<vendor>__<conn_id>`` by default.
    :param rate_limit_timeout: seconds a request may be held back by rate-limit answers (see
        :class:`~airflow_provider_loyalty.hooks._pacing.RequestPacer`).
    """
    if is_auto(per_minute):
        auto = AutoRate(cap=cap, store=store if store is not None else VariableRateStore(vendor, conn_id), clock=clock)
        return RequestPacer(None, max_concurrency, clock=clock, auto=auto, rate_limit_timeout=rate_limit_timeout)
    if isinstance(per_minute, str):
        raise ValueError(f"max_requests_per_minute must be a number, None or 'auto', got {per_minute!r}")
    if cap is not None and per_minute is not None:
        per_minute = min(per_minute, cap)
    return RequestPacer(per_minute, max_concurrency, clock=clock, rate_limit_timeout=rate_limit_timeout)
