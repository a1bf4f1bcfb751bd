"""Counters and timers through Airflow's own ``Stats`` (StatsD / OpenTelemetry when configured).

Every metric is ``loyalty.<vendor>.<name>``; the README lists them.
"""

from __future__ import annotations

from typing import Any


def incr(vendor: str, name: str, count: int = 1) -> None:
    """Add ``count`` to the counter ``loyalty.<vendor>.<name>`` (nothing for 0)."""
    stats = _stats()
    if stats is not None and count:
        stats.incr(f"loyalty.{vendor}.{name}", count)


def timing(vendor: str, name: str, seconds: float) -> None:
    """Record ``seconds`` in the timer ``loyalty.<vendor>.<name>`` (in milliseconds, as Stats expects)."""
    stats = _stats()
    if stats is not None:
        stats.timing(f"loyalty.{vendor}.{name}", seconds * 1000.0)


def _stats() -> Any:
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # pragma: no cover - Airflow < 3.2
        return None
    return Stats
