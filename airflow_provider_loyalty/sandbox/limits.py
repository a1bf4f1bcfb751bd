"""Both vendors' rate limits: a sliding window of accepted requests plus a penalty once it is exceeded.

Lock-free on purpose: ``SandboxState`` checks a request with its one lock held and counts the refusals.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable


def window_limit(rpm: int, window: float) -> int:
    """Return how many requests ``rpm`` allows in a window of ``window`` seconds (at least one)."""
    # The epsilon keeps a product that float arithmetic lands just above an integer from rounding up.
    return max(1, math.ceil(rpm * window / 60.0 - 1e-9))


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


class RateLimits:
    """One limiter per vendor; its history survives ``reset_stats`` (a vendor does not forget either)."""

    __slots__ = ("_limiters",)

    def __init__(self, vendors: Iterable[str]) -> None:
        self._limiters = {vendor: _Limiter() for vendor in vendors}

    def check(self, vendor: str, now: float, rpm: int | None, window: float, penalty: float) -> RateLimited | None:
        """Admit (``None``) or refuse one API request of ``vendor`` arriving at monotonic time ``now``.

        :param rpm: requests per minute allowed; ``None`` = unlimited (a running penalty still refuses).
        :param window: length of the sliding window, seconds.
        :param penalty: seconds every request is refused once the limit is hit; 0 = refuse only until the
            oldest accepted request leaves the window.
        """
        limiter = self._limiters[vendor]
        if now < limiter.penalty_until:
            return RateLimited(limiter.penalty_until - now, True)
        if rpm is None:
            return None
        limit = window_limit(rpm, window)
        accepted = limiter.accepted
        horizon = now - window
        while accepted and accepted[0] <= horizon:
            accepted.popleft()
        if len(accepted) >= limit:
            if penalty > 0:
                limiter.penalty_until = now + penalty
                return RateLimited(penalty, False)
            return RateLimited(accepted[0] + window - now, False)
        accepted.append(now)
        return None
