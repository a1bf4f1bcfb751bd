"""The rate limiter of one task: evenly spaced slots, vendor windows every thread waits out, a window guard.

Slots are scheduled against absolute time, so a late thread does not push every later request back
and an idle period earns no burst. A window the vendor announced holds every thread back until it
ends. With ``"auto"``, the window guard keeps each vendor window within the count it was seen to
accept. With a shared budget (:mod:`airflow_provider_loyalty.coordination.budget`) the slots come
from the vendor key's budget instead, spaced across every task using the key.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections import deque

from airflow_provider_loyalty.coordination.budget import RateBudget
from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock

#: Slots are this much wider than ``60 / per_minute`` (see :class:`RateLimiter`).
PACING_MARGIN = 1.02
#: Seconds between two looks at the window guard while its windows are full of requests in flight.
GUARD_POLL_SECONDS = 0.005
#: A request leaves a guarded window this long after the window has passed since its answer: a
#: vendor's window that ends exactly at our clock's reading may still hold it (time is a float).
GUARD_EPSILON_SECONDS = 0.001


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
        #: the vendor key's budget shared with other tasks (slots and windows), ``None``: this task alone
        self.budget: RateBudget | None = None
        self._numbers: deque[tuple[float, int]] = deque()  # (when, the key's count) of our reservations
        #: window seconds -> most requests any such window may hold (what the vendor accepted in one
        #: before refusing); enforced on this task's requests alone (a shared budget paces the key)
        self.guards: dict[float, int] = {}
        # A request reaches the vendor after we send it and before its answer comes back. So a request
        # counts in the guarded windows from the moment it is sent, and leaves them one window after
        # its answer: then it has surely left the vendor's window too, whatever the delays.
        self._in_flight: dict[int, float] = {}  # ticket -> when sent
        self._answered: list[float] = []  # answer times of requests the vendor counted, sorted
        self._tickets = itertools.count()
        self._local = threading.local()
        self._stopped = threading.Event()

    def acquire(self, served_until: float = -math.inf) -> float:
        """Block until this thread may send; return the seconds waited.

        :param served_until: end of a vendor window this thread has already slept through itself
            (the thread that received the rate-limit answer); blocks ending by then are not waited
            again.
        """
        self._local.ticket = None
        if self.budget is not None:
            return self._acquire_shared(self.budget, served_until)
        waited = 0.0
        while True:
            if self._stopped.is_set():
                return waited  # no slot: the caller sends nothing (see stop)
            with self._lock:
                now = self._clock.monotonic()
                blocked = self._blocked_until if self._blocked_until > served_until else -math.inf
                next_slot = self._next_slot if self._next_slot > served_until else -math.inf
                slot = max(now, next_slot, blocked)
                if self.guards:
                    free = self._guard_free(slot)
                    slot = free if free is not None else max(slot, now + GUARD_POLL_SECONDS)
                if self.interval:
                    self._next_slot = slot + self.interval
                seen_block = self._blocked_until
                if slot <= now:
                    self._send()
                    return waited
            self._pause(slot - now)
            waited += slot - now
            if self._stopped.is_set():
                return waited
            with self._lock:
                # Only a window announced while we slept that reaches past our slot moves it.
                if self._blocked_until <= max(seen_block, slot):
                    woke = self._clock.monotonic()
                    if not self.guards or self._guard_free(woke) == woke:
                        self._send()
                        return waited
                    # an answer still out, or another thread took the room: look again
                else:
                    served_until = -math.inf

    def _guard_free(self, at: float) -> float | None:
        """The earliest time from ``at`` at which one more request fits every guarded window.

        ``None`` when requests in flight alone fill a window: only their answers can free room.
        """
        answered = self._answered
        # Forget by the clock, not by ``at``: a thread asking for a later slot must not drop what
        # still counts for an earlier one.
        drop = bisect.bisect_right(answered, self._clock.monotonic() - max(self.guards, default=0.0) - 1.0)
        if drop:
            del answered[:drop]
        flying = len(self._in_flight)
        when = at
        for _ in range(len(self.guards) + 1):
            moved = False
            for window, count in self.guards.items():
                if flying >= count:
                    return None
                first = bisect.bisect_right(answered, when - window)  # answers still inside the window
                leave = flying + len(answered) - first - count + 1  # how many of them must leave first
                if leave > 0:
                    free = answered[first + leave - 1] + window + GUARD_EPSILON_SECONDS
                    if free > when:
                        when, moved = free, True
            if not moved:
                break
        return when

    def _send(self) -> None:
        ticket = next(self._tickets)
        self._in_flight[ticket] = self._clock.monotonic()
        self._local.ticket = ticket

    def ticket(self) -> int | None:
        """The ticket of the request this thread's last :meth:`acquire` let go (``None`` with a shared budget)."""
        return getattr(self._local, "ticket", None)

    def done(self, ticket: int | None, *, counted: bool) -> None:
        """The request of ``ticket`` was answered: ``counted`` unless the vendor refused it (an unanswered one counts)."""
        if ticket is None:
            return
        with self._lock:
            if self._in_flight.pop(ticket, None) is not None and counted:
                bisect.insort(self._answered, self._clock.monotonic())

    def set_guards(self, guards: dict[float, int]) -> None:
        """Keep every window of ``guards`` (seconds -> count) within its count from now on."""
        with self._lock:
            self.guards = dict(guards)

    def _acquire_shared(self, budget: RateBudget, served_until: float) -> float:
        """Slots from the key's budget (every task's requests evenly spaced together), after any window."""
        waited = 0.0
        while True:
            if self._stopped.is_set():
                return waited  # no slot: the caller sends nothing (see stop)
            with self._lock:
                now = self._clock.monotonic()
                blocked = self._blocked_until if self._blocked_until > served_until else -math.inf
            if blocked > now:  # a window this task heard of: no need to ask the store
                self._pause(blocked - now)
                waited += blocked - now
                continue
            wait, number = budget.reserve_numbered(self.interval)  # after the key's window, if any
            self._count(number)
            if wait <= 0:
                return waited
            self._pause(wait)
            waited += wait
            if self._stopped.is_set():
                return waited
            # A window another task opened while we slept covers the slot we had: take a new one after it.
            if budget.blocked_for() <= 0:
                return waited
            served_until = -math.inf

    def stop(self) -> None:
        """Wake every thread waiting for a slot and give none out any more: the task stopped sending.

        :meth:`acquire` then returns without a slot; its caller checks why the task stopped before
        sending (``RequestPacer.gave_up``, which the HTTP client raises). Without this, threads that
        were waiting for a slot when a long vendor window was handed to the triggerer slept through
        that window in the worker slot first.
        """
        self._stopped.set()

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, cut short by :meth:`stop` (with a clock that can wait on an event)."""
        wait = getattr(self._clock, "wait", None)
        if wait is not None:
            wait(seconds, self._stopped)
        else:  # a test's clock: it only sleeps
            self._clock.sleep(seconds)

    def _count(self, number: int) -> None:
        now = self._clock.monotonic()
        with self._lock:
            self._numbers.append((now, number))
            while self._numbers and self._numbers[0][0] <= now - 60.0:
                self._numbers.popleft()

    def key_share(self) -> float:
        """The key's reservations over this task's in the last minute (1.0 alone or without a budget).

        What the vendor accepted from the key is about this many times what it accepted from us: the
        rate a rate-limit answer teaches is the key's, not our share of it.
        """
        with self._lock:
            if len(self._numbers) < 2:
                return 1.0
            ours = len(self._numbers)
            theirs = self._numbers[-1][1] - self._numbers[0][1] + 1
        return max(1.0, theirs / ours)

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
        """Let no thread send before monotonic time ``deadline``; slots restart evenly after it.

        With a shared budget the window is the key's: every task using it waits it out.
        """
        with self._lock:
            if deadline > self._blocked_until:
                self._blocked_until = deadline
            if self._next_slot < deadline:
                self._next_slot = deadline
        if self.budget is not None:
            self.budget.penalize(max(0.0, deadline - self._clock.monotonic()))

    @property
    def blocked_until(self) -> float:
        """Monotonic time before which no request is sent."""
        return self._blocked_until
