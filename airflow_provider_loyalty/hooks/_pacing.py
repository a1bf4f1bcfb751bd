"""Request pacing shared by all threads of a task.

Evenly spaced slots (a per-minute limit may be enforced by the vendor over much shorter windows, so
no bursts), vendor-announced rate-limit windows every thread waits out, and a bound on requests in
flight that halves after a rate-limit answer so in-flight requests don't land inside the next window.

A rate-limit answer is the vendor pacing us, not a failure: the request waits for the window and goes
again, a fixed pace steps down (and climbs back towards the setting) as ``"auto"`` does, and only a
time budget (``rate_limit_timeout``) ends the wait, with a message naming the rate the vendor accepted.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow_provider_loyalty.coordination.budget import RateBudget
from airflow_provider_loyalty.hooks._auto_rate import AutoRate, BudgetRateStore
from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock
from airflow_provider_loyalty.hooks._limiter import RateLimiter

log = logging.getLogger(__name__)

#: Seconds a request may be held back by the vendor's rate-limit answers before the task gives up
#: (``rate_limit_timeout``; its items are left not sent, for a later try).
DEFAULT_RATE_LIMIT_TIMEOUT = 600.0


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
        #: a lower bound of the moment (``None``: none), set by the pacer while a limit is unknown
        self.ceiling: int | None = None

    def _bound(self) -> int | None:
        if self.ceiling is None:
            return self.limit
        return self.ceiling if self.limit is None else min(self.limit, self.ceiling)

    def acquire(self) -> None:
        """Wait for a free place."""
        with self._cond:
            while (bound := self._bound()) is not None and self._in_flight >= bound:
                self._cond.wait()
            self._in_flight += 1

    def set_ceiling(self, ceiling: int | None) -> None:
        """Bound requests in flight to ``ceiling`` as well (``None``: only the configured bound)."""
        with self._cond:
            if ceiling != self.ceiling:
                self.ceiling = ceiling
                self._cond.notify_all()

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

    :param per_minute: requests per minute, ``None`` for no limit (ignored with ``auto``). A fixed
        pace is the most ever sent: it steps down after rate-limit answers and climbs back towards it.
    :param max_concurrency: requests in flight, ``None`` for unbounded.
    :param clock: time source.
    :param auto: the controller of ``max_requests_per_minute="auto"``, which then sets the pace.
    :param rate_limit_timeout: seconds one request may be held back by rate-limit answers (from its
        first) before the task gives up; ``None`` for :data:`DEFAULT_RATE_LIMIT_TIMEOUT`.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        max_concurrency: int | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        auto: AutoRate | None = None,
        rate_limit_timeout: float | None = None,
    ) -> None:
        if rate_limit_timeout is not None and rate_limit_timeout < 0:
            raise ValueError(f"rate_limit_timeout must be >= 0 seconds, got {rate_limit_timeout}")
        self.auto = auto
        #: the setting of a fixed pace (``None`` with ``auto`` or no limit)
        self.setting = per_minute if auto is None else None
        # A fixed pace is run by the same controller, capped at the setting and learning nothing:
        # after rate-limit answers it steps down, then climbs back towards the setting.
        self.controller = auto or (AutoRate(cap=per_minute, start=per_minute, clock=clock) if per_minute else None)
        self.limiter = RateLimiter(auto.pace if auto is not None else per_minute, clock=clock)
        self.gate = ConcurrencyGate(max_concurrency)
        self._rtt: float | None = None  # seconds from sending to the answer, smoothed
        if self.controller is not None:
            self.controller.share = self.limiter.key_share
            self.controller.gate_bound = self._gate_bound
            self._follow_controller()
        self.clock = clock
        self.rate_limit_timeout = DEFAULT_RATE_LIMIT_TIMEOUT if rate_limit_timeout is None else rate_limit_timeout
        #: why the task stopped waiting for the vendor (set once; no request is sent after it)
        self.gave_up: str | None = None
        #: a vendor window longer than this (seconds) is waited out by the triggerer, not in a worker
        #: slot (the operator sets it when a ledger lets the task resume; ``None``: always wait here)
        self.defer_after: float | None = None
        #: seconds of the window handed to the triggerer, once one was
        self.deferred: float | None = None
        self._window_lock = threading.Lock()
        self._windows_until = -math.inf
        self._window_seconds = 0.0
        self._windows = 0
        self._accepted: deque[float] = deque()  # clean answers of the last minute (for the messages)

    @contextmanager
    def slot(self, served_until: float = -math.inf) -> Iterator[dict[str, Any]]:
        """Hold a place in flight and a rate slot for one request; yields a mutable status dict.

        :param served_until: end of a vendor window the calling thread already slept through.
        """
        self.gate.acquire()
        status: dict[str, Any] = {"throttled": False}
        sent_at, ticket = self.clock.monotonic(), None
        try:
            self.limiter.acquire(served_until)
            sent_at, ticket = self.clock.monotonic(), self.limiter.ticket()
            yield status
        finally:
            # A request refused for the rate was not counted by the vendor; any other may have been.
            self.limiter.done(ticket, counted=not (status.get("answered") and status.get("rate_limited")))
            self.gate.release(throttled=status["throttled"])
            if status.get("answered"):
                limited = bool(status.get("rate_limited"))
                if not limited:
                    self._note_accepted()
                self._note_rtt(self.clock.monotonic() - sent_at)
                if self.controller is not None:
                    wait = status.get("wait", 0.0)
                    self.controller.answered(throttled=limited, wait=wait, sent_at=sent_at)
                    self._follow_controller()
                    if limited and self.controller.pause:  # the vendor's window is still full: hold back longer
                        self.penalize(wait + self.controller.pause)
            notice = status.get("notice")
            if notice:
                self._announce(notice, status.get("wait", 0.0))

    def _follow_controller(self) -> None:
        """Take the controller's pace, window counts and, while it looks for the limit, one request in flight."""
        controller = self.controller
        assert controller is not None
        # The faster pace while a window drains needs the window guard, which a shared budget does
        # not run (it paces the key's slots instead).
        pace = controller.send_pace if self.limiter.budget is None else controller.pace
        if pace != self.limiter.per_minute:
            self.limiter.set_rate(pace)
        if controller.window_limits != self.limiter.guards:
            self.limiter.set_guards(controller.window_limits)
        self.gate.set_ceiling(self._discovery_ceiling() if controller.discovering else None)

    def _note_rtt(self, seconds: float) -> None:
        self._rtt = seconds if self._rtt is None else 0.8 * self._rtt + 0.2 * seconds

    def _discovery_ceiling(self) -> int:
        """Requests in flight while the limit is unknown: one, until one cannot carry half the pace.

        A request sent while another is on its way may reach the vendor after the other was refused:
        inside the penalty it opened, before we know of it. One at a time, the refusal is known first.
        """
        if self._rtt is None or self.limiter.per_minute is None:
            return 1
        return max(1, math.floor(self.limiter.per_minute / 60.0 * self._rtt / 2.0))

    def _gate_bound(self) -> bool:
        """Whether the discovery ceiling, not the vendor, holds the task under its pace."""
        ceiling = self.gate.ceiling
        if ceiling is None or self._rtt is None or self.limiter.per_minute is None:
            return False
        return self.limiter.per_minute / 60.0 * self._rtt >= 0.8 * ceiling

    def share(self, budget: RateBudget) -> None:
        """Pace with the vendor key's shared budget from now on (``rate_budget_conn_id``).

        Slots and penalty windows become the key's; with ``"auto"`` the learned rate is read from and
        stored in the budget (the key's, not the last task's), and the pace starts from it.
        """
        self.limiter.budget = budget
        if self.auto is not None:
            self.auto.adopt(BudgetRateStore(budget))
            self._follow_controller()

    def close(self) -> None:
        """Store what ``auto`` learned and release the shared budget's connection."""
        self.save_learned()
        budget, self.limiter.budget = self.limiter.budget, None
        if budget is not None:
            budget.close()

    def _note_accepted(self) -> None:
        now = self.clock.monotonic()
        with self._window_lock:
            self._accepted.append(now)
            while self._accepted and self._accepted[0] <= now - 60.0:
                self._accepted.popleft()

    def accepted_per_minute(self) -> int:
        """Requests the vendor accepted over the last minute."""
        now = self.clock.monotonic()
        with self._window_lock:
            return sum(1 for t in self._accepted if t > now - 60.0)

    def penalize(self, seconds: float) -> float:
        """Open a vendor-announced window of ``seconds`` during which no thread sends; return its end."""
        return self.open_window(seconds)[0]

    def open_window(self, seconds: float) -> tuple[float, bool]:
        """:meth:`penalize`, also telling whether this is a new window (none was running)."""
        now = self.clock.monotonic()
        deadline = now + seconds
        with self._window_lock:  # seconds covered by vendor windows, overlaps counted once
            new = now >= self._windows_until
            self._window_seconds += max(0.0, deadline - max(now, self._windows_until))
            self._windows_until = max(self._windows_until, deadline)
            self._windows += new
        self.limiter.block_until(deadline)
        return deadline, new

    def _announce(self, reason: str, wait: float) -> None:
        """The one line per vendor window (not one per held-back request)."""
        log.info(
            "%s; every request waits %.0f s. The vendor accepted %d requests over the last minute; %s",
            reason,
            wait,
            self.accepted_per_minute(),
            self.pace_text(),
        )

    def defer_for(self, wait: float) -> float | None:
        """Whether a vendor window of ``wait`` seconds goes to the triggerer; then every thread stops sending.

        Returns the seconds to defer for (the longest window announced so far), ``None`` to wait here.
        """
        if self.deferred is None and (self.defer_after is None or wait <= self.defer_after):
            return None
        self.deferred = max(self.deferred or 0.0, wait)
        self.gave_up = self.gave_up or (
            f"rate limited with a window of {wait:.0f} s: the task waits it out deferred (no worker slot held)"
        )
        self.limiter.stop()
        return self.deferred

    def rate_limit_exhausted(self, limited_since: float, wait: float) -> str | None:
        """Why a request rate limited since ``limited_since`` must stop waiting, or ``None`` to wait ``wait`` more.

        The reason names the rate the vendor accepted and what to set; once given, every thread of
        the task stops (:attr:`gave_up`).
        """
        if self.gave_up is not None:
            return self.gave_up
        held = self.clock.monotonic() - limited_since
        if held + wait <= self.rate_limit_timeout:
            return None
        accepted = self.accepted_per_minute()
        if self.auto is not None:
            setting = f'max_requests_per_minute="auto" ({self.pace_text()})'
        elif self.setting is not None:
            setting = f"max_requests_per_minute={self.setting:g} ({self.pace_text()})"
        else:
            setting = "no max_requests_per_minute"
        self.gave_up = (
            f"rate limited for {held:.0f} s and asked to wait {wait:.0f} s more, beyond "
            f"rate_limit_timeout={self.rate_limit_timeout:.0f} s; the vendor accepted {accepted} requests "
            f"over the last minute with {setting}: set max_requests_per_minute to 'auto' or to "
            f"{'below ' + str(accepted) if accepted else 'a lower rate'} (or raise rate_limit_timeout)"
        )
        self.limiter.stop()
        return self.gave_up

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
            report = {"mode": "fixed" if per_minute else "unlimited", "pace_per_minute": _round(per_minute)}
            if self.setting is not None:
                report["setting_per_minute"] = self.setting
        report["rate_limit_windows"] = self._windows
        report["waited_seconds"] = round(self.waited_seconds(), 1)
        return report

    def pace_text(self) -> str:
        """The pace in force for progress lines: ``pace 612/min (auto, limit hit at 640/min)``."""
        if self.auto is None:
            per_minute = self.limiter.per_minute
            if not per_minute:
                return "no pace limit"
            if self.setting is not None and per_minute < self.setting * 0.999:
                return f"pace {per_minute:.0f}/min (stepped down from {self.setting:.0f}/min after rate-limit answers)"
            return f"pace {per_minute:.0f}/min"
        learned = self.auto.learned()
        hit = f", limit hit at {learned.limit_hit:.0f}/min" if learned.limit_hit else ""
        cap = f", cap {self.auto.cap:.0f}/min" if self.auto.cap else ""
        return f"pace {learned.pace or 0:.0f}/min (auto{hit}{cap})"

    def save_learned(self) -> None:
        """Store what ``auto`` learned (no-op for a fixed pace)."""
        if self.auto is not None:
            self.auto.save()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
