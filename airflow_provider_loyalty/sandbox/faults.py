"""Fault injection: which vendor requests get a 502/503 instead of an answer.

Lock-free on purpose: ``SandboxState`` draws with its one lock held, so that concurrent requests consume
``fail_next`` and the random sequence one at a time (deterministic for a given request order).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_loyalty.sandbox.config import SandboxConfig


class FaultDraw:
    """The seeded generator behind ``error_rate``; re-seeded whenever the configured seed changes."""

    __slots__ = ("_rng", "_seed")

    def __init__(self) -> None:
        self._seed: int | None = None
        self._rng: Any = None

    def draw(self, cfg: SandboxConfig) -> int | None:
        """Return 503/502 when this vendor request must fail (``fail_next`` first, then ``error_rate``)."""
        if cfg.fail_next > 0:
            cfg.fail_next -= 1
            return 503
        if cfg.error_rate <= 0:
            return None
        if self._rng is None or self._seed != cfg.seed:
            import random

            self._seed = cfg.seed
            self._rng = random.Random(cfg.seed)
        rng = self._rng
        if rng.random() < cfg.error_rate:
            return 502 if rng.random() < 0.5 else 503
        return None
