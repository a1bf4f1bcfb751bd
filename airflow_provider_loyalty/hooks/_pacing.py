"""Request pacing shared by all threads of a task.

Evenly spaced slots (a per-minute limit may be enforced by the vendor over much shorter windows, so
no bursts), vendor-announced rate-limit windows every thread waits out, and a bound on requests in
flight that halves after a rate-limit answer so in-flight requests don't land inside the next window.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from airflow_provider_loyalty.hooks._auto_rate import AutoRate

#: Slots are this much wider than ``60 / per_minute`` (see :class:`RateLimiter`).
PACING_MARGIN = 1.02


class RateLimiter:
    """Evenly spaced request slots shared by all threads, plus vendor-announced blocking windows.

    Slots are scheduled against absolute time (``next = previous slot + interval``), so a thread
    that wakes a little late does not push every later request back; an idle period earns no
    burst credit either. :meth:`block_until` holds every thread back until the vendor's window
    ends, including threads that had already reserved a slot inside it.

    :param per_minute: requests per minute, ``None`` for no limit.
    :param clock: time source.
    """

    def __init__(self, per_minute: float | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if per_minute is not None and per_minute <= 0:
            raise ValueError(f"per_minute must be positive or None, got {per_minute}")
        self.per_minute = per_minute
        # Paced 2 % under the configured rate: at exactly the vendor's limit, arrival jitter puts one
        # request too many into some window of the vendor's (measured: 101 in a window of 100).
        self.interval = 60.0 / per_minute * PACING_MARGIN if per_minute else 0.0
        self._clock = clock
        self._lock = threading.Lock()
        # The first request waits one interval too: whoever shared this limit before (the task that
        # held this pool slot) may have sent its last request just before this task started.
        self._next_slot = clock.monotonic() + self.interval if self.interval else -math.inf
        self._blocked_until = -math.inf

    def acquire(self, served_until: float = -math.inf) -> float:
        """Block until this thread may send; return the seconds waited.

        :param served_until: end of a vendor window this thread has already slept through itself
            (the thread that received the rate-limit answer); blocks ending by then are not waited
            again.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock.monotonic()
                blocked = self._blocked_until if self._blocked_until > served_until else -math.inf
                next_slot = self._next_slot if self._next_slot > served_until else -math.inf
                slot = max(now, next_slot, blocked)
                if self.interval:
                    self._next_slot = slot + self.interval
                seen_block = self._blocked_until
            if slot <= now:
                return waited
            self._clock.sleep(slot - now)
            waited += slot - now
            with self._lock:
                # Only a window announced while we slept that reaches past our slot moves it.
                if self._blocked_until <= max(seen_block, slot):
                    return waited
                served_until = -math.inf

    def set_rate(self, per_minute: float) -> None:
        """Change the pace (``max_requests_per_minute="auto"``); the next slot moves by the change of interval."""
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        with self._lock:
            interval = 60.0 / per_minute * PACING_MARGIN
            if self.interval and math.isfinite(self._next_slot):
                self._next_slot += interval - self.interval
            self.per_minute = per_minute
            self.interval = interval

    def block_until(self, deadline: float) -> None:
        """Let no thread send before monotonic time ``deadline``; slots restart evenly after it."""
        with self._lock:
            if deadline > self._blocked_until:
                self._blocked_until = deadline
            if self._next_slot < deadline:
                self._next_slot = deadline

    @property
    def blocked_until(self) -> float:
        """Monotonic time before which no request is sent."""
        return self._blocked_until


class ConcurrencyGate:
    """Bounds requests in flight; halves the bound after a rate-limit answer, regrows it slowly.

    :param limit: the most requests in flight, ``None`` for unbounded.
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"concurrency limit must be >= 1, got {limit}")
        self.max_limit = limit
        self.limit = limit
        self._in_flight = 0
        self._successes = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        """Wait for a free place."""
        with self._cond:
            while self.limit is not None and self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1

    def release(self, *, throttled: bool = False) -> None:
        """Free a place; ``throttled`` tells whether its request met a rate-limit answer."""
        with self._cond:
            self._in_flight -= 1
            if self.limit is not None and self.max_limit is not None:
                if throttled:
                    self.limit = max(1, self.limit // 2)
                    self._successes = 0
                elif self.limit < self.max_limit:
                    self._successes += 1
                    if self._successes >= self.limit:  # one step up per "round" of clean requests
                        self.limit += 1
                        self._successes = 0
            self._cond.notify_all()


class RequestPacer:
    """The rate limiter and the concurrency gate of one task, used around every request.

    :param per_minute: requests per minute, ``None`` for no limit (ignored with ``auto``).
    :param max_concurrency: requests in flight, ``None`` for unbounded.
    :param clock: time source.
    :param auto: the controller of ``max_requests_per_minute="auto"``, which then sets the pace.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        max_concurrency: int | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        auto: AutoRate | None = None,
    ) -> None:
        self.auto = auto
        self.limiter = RateLimiter(auto.pace if auto is not None else per_minute, clock=clock)
        self.gate = ConcurrencyGate(max_concurrency)
        self.clock = clock
        self._window_lock = threading.Lock()
        self._windows_until = -math.inf
        self._window_seconds = 0.0

    @contextmanager
    def slot(self, served_until: float = -math.inf) -> Iterator[dict[str, Any]]:
        """Hold a place in flight and a rate slot for one request; yields a mutable status dict.

        :param served_until: end of a vendor window the calling thread already slept through.
        """
        self.gate.acquire()
        status: dict[str, Any] = {"throttled": False}
        try:
            self.limiter.acquire(served_until)
            yield status
        finally:
            self.gate.release(throttled=status["throttled"])
            if self.auto is not None and status.get("answered"):
                limited = bool(status.get("rate_limited"))
                wait = status.get("wait", 0.0)
                pace = self.auto.answered(throttled=limited, wait=wait)
                if pace != self.limiter.per_minute:
                    self.limiter.set_rate(pace)
                if limited and self.auto.pause:  # the vendor's window is still full: hold back longer
                    self.penalize(wait + self.auto.pause)

    def penalize(self, seconds: float) -> float:
        """Open a vendor-announced window of ``seconds`` during which no thread sends; return its end."""
        now = self.clock.monotonic()
        deadline = now + seconds
        with self._window_lock:  # seconds covered by vendor windows, overlaps counted once
            self._window_seconds += max(0.0, deadline - max(now, self._windows_until))
            self._windows_until = max(self._windows_until, deadline)
        self.limiter.block_until(deadline)
        return deadline

    def waited_seconds(self) -> float:
        """Seconds the task was held back by vendor rate-limit windows so far (overlaps once)."""
        with self._window_lock:
            return self._window_seconds

    def pace_report(self) -> dict[str, Any]:
        """The pace in force and, with ``auto``, what was learned (the summary XCom's ``pace``)."""
        if self.auto is not None:
            report = self.auto.report()
        else:
            per_minute = self.limiter.per_minute
            report = {"mode": "fixed" if per_minute else "unlimited", "pace_per_minute": per_minute}
        report["waited_seconds"] = round(self.waited_seconds(), 1)
        return report

    def pace_text(self) -> str:
        """The pace in force for progress lines: ``pace 612/min (auto, limit hit at 640/min)``."""
        if self.auto is None:
            per_minute = self.limiter.per_minute
            return f"pace {per_minute:.0f}/min" if per_minute else "no pace limit"
        learned = self.auto.learned()
        hit = f", limit hit at {learned.limit_hit:.0f}/min" if learned.limit_hit else ""
        cap = f", cap {self.auto.cap:.0f}/min" if self.auto.cap else ""
        return f"pace {learned.pace or 0:.0f}/min (auto{hit}{cap})"

    def save_learned(self) -> None:
        """Store what ``auto`` learned (no-op for a fixed pace)."""
        if self.auto is not None:
            self.auto.save()
