"""``max_requests_per_minute="auto"``: find the vendor's real rate limit, hold just under it, remember it.

The controller (:class:`AutoRate`) only sets the pace of the task's :class:`RateLimiter`; vendor
windows (429 + ``Retry-After``, Xoxoday's ``penaltySeconds``) are still waited out by the pacer
first, exactly as with a fixed number. Its rules, in pace units (the number a user would have set):

* **Start**: the pace learned by earlier runs of this connection (:class:`LearnedRate`, in the
  Variable ``loyalty_rate__<vendor>__<conn_id>``), else a conservative :data:`START_PER_MINUTE`.
  Never above the cap.
* **Rise** only while the vendor answers cleanly *and* the task really sends at the pace in force
  (a latency-bound or idle task proves nothing), one step every :data:`STEP_SECONDS`:

  - before any limit is known: ×:data:`START_GROWTH` per step (a slow start, as TCP's);
  - once a limit is known: close :data:`CLIMB` of the gap to :data:`PLATEAU` × the last limit hit
    per step (a start below it), then hold there; only after :data:`PROBE_HOLD` clean seconds at
    the plateau probe :data:`PROBE_STEP` above the last limit hit and the window limits (the vendor
    may have raised them).

* **Cut** on a rate-limit answer: the vendor's window was full when the refused request arrived, so
  what it accepted from the key within its window before is its limit per window. Counted are the
  accepted requests sent after the refused one's answer less one window (they surely arrived within
  it: a lower bound, whatever the delays). Fewer than :data:`MIN_EVIDENCE` teach nothing (someone
  else's traffic filled the window, or too little to tell): the pace is halved and the search goes
  on. Otherwise the counts become the **window limits** (seconds -> requests), which the limiter
  enforces on its own requests (each counts from its sending until a window after its answer), the
  limit hit is the lowest of them per minute, and the pace goes straight to :data:`PLATEAU` of it.
  The window is the vendor's when told (``window_seconds`` in the learned state), else every one of
  :data:`CANDIDATE_WINDOWS` (one answer cannot tell them apart). Rate-limit answers within the
  vendor's wait plus :data:`EPISODE_SECONDS` of a cut are the same episode (requests already in
  flight, a window still draining): they learn nothing more, and every thread pauses 1, 2, 4... s
  (at most :data:`EPISODE_PAUSE_MAX`) beyond the vendor's wait. A limit met again (the vendor lowered
  it) keeps under what the windows held then and one less than before.
* **Remember**: the highest pace held a whole minute (:data:`CLEAN_HOLD`) without a rate-limit
  answer, the last limit hit with its time and the window limits; stored after each cut and when
  the hook closes. A run starts at :data:`PLATEAU` × the limit hit, with the same window limits.
  What is read and saved is clamped to :data:`MIN_PER_MINUTE` .. :data:`MAX_PER_MINUTE`.

Mapped tasks sharing one key without a shared budget each run their own controller from the same
learned state: each learns the window counts of its own share, so together they settle under the
limit. With a shared budget the counts are the key's (this task's times the key's share), and the
budget, not the window guard, paces the key.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

#: The setting's value that turns the controller on.
AUTO = "auto"
#: Pace of a first run with nothing learned (requests per minute): one a second.
START_PER_MINUTE = 60.0
#: The controller never paces below this (requests per minute).
MIN_PER_MINUTE = 1.0
#: Nor above this, cap or no cap: a thousand requests a second is beyond any vendor API we serve, and
#: a stored value above it (``1e300``) would otherwise start a run with no pacing at all.
MAX_PER_MINUTE = 60_000.0
#: Seconds of clean answers between two raises.
STEP_SECONDS = 5.0
#: Slow start: the pace is multiplied by this per step until the first rate-limit answer.
START_GROWTH = 1.5
#: Once a limit is known, share of the gap to the plateau closed per step.
CLIMB = 0.3
#: The pace held: this share of the last limit hit (the window guard, not this margin, keeps the
#: count of a vendor window under what it accepted: see :data:`CANDIDATE_WINDOWS`).
PLATEAU = 0.99
#: Clean seconds at the plateau before probing above the last limit hit, and by how much.
PROBE_HOLD = 300.0
PROBE_STEP = 1.03
#: Multiplicative cuts: after a steady pace, out of the slow start, and again within one episode.
CUT = 0.7
START_CUT = 0.5
EPISODE_CUT = 0.9
#: Seconds after the vendor's wait during which further rate-limit answers belong to the same cut.
EPISODE_SECONDS = 5.0
#: Longest pause of our own after repeated rate-limit answers within one episode (seconds).
EPISODE_PAUSE_MAX = 16.0
#: A pace counts as clean once held this long without a rate-limit answer (the longest window
#: vendors commonly enforce a per-minute limit over).
CLEAN_HOLD = 60.0
#: Raise only while the task sends at least this share of the pace in force.
BUSY = 0.8
#: Requests are spaced this much wider than the pace (the limiter's own margin, see _pacing).
_MARGIN = 1.02
#: The windows (seconds) a per-minute limit may be enforced over, when the vendor's is not told
#: (``window_seconds`` in the learned state): a minute, or 10 s. One rate-limit answer cannot tell
#: them apart (a rising pace fills both at once), so what is learned keeps within both.
CANDIDATE_WINDOWS = (10.0, 60.0)
#: Fewest requests the vendor accepted within its window before a rate-limit answer teaches a limit:
#: a refusal after one to three accepted requests is someone else's traffic or noise, not the limit.
MIN_EVIDENCE = 8
#: Longest window a vendor's limit is read over (seconds): a stored window above it is ignored.
MAX_WINDOW_SECONDS = 3600.0


def variable_key(vendor: str, conn_id: str) -> str:
    """``loyalty_rate__<vendor>__<conn_id>``: where a connection's learned rate is kept."""
    return f"loyalty_rate__{vendor}__{conn_id}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LearnedRate:
    """What earlier runs learned about one vendor key (requests per minute, pace units).

    :param best_clean: the highest pace held a whole minute without a rate-limit answer.
    :param limit_hit: the pace the vendor last answered "rate limited" to (its limit is below).
    :param limit_hit_at: when (ISO 8601, UTC).
    :param pace: the pace in force when this was stored.
    :param updated_at: when this was stored (ISO 8601, UTC).
    :param window_seconds: the vendor's window, when told (the one thing a first run may be given:
        vendors do not announce it); ``None``: any of :data:`CANDIDATE_WINDOWS`.
    :param window_limits: requests the vendor accepted within each window before its last
        rate-limit answer (window seconds, as text, to a count): no window is sent more.
    """

    best_clean: float | None = None
    limit_hit: float | None = None
    limit_hit_at: str | None = None
    pace: float | None = None
    updated_at: str | None = None
    window_seconds: float | None = None
    window_limits: dict[str, int] | None = None

    def to_json(self) -> str:
        """Serialise for the Variable."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)

    @classmethod
    def from_value(cls, value: Any) -> LearnedRate | None:
        """Read a stored value (JSON text or a dict); ``None`` when it is not one."""
        try:
            raw = json.loads(value) if isinstance(value, (str, bytes)) else value
            if not isinstance(raw, dict):
                return None

            def number(name: str) -> float | None:
                v = raw.get(name)
                if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                    return None  # ``true`` is no rate of 1/min; a list or an object no rate at all
                try:
                    rate = float(v)
                except OverflowError:  # an integer no float holds: beyond the ceiling, like 1e300
                    return MAX_PER_MINUTE if int(v) > 0 else None
                return _clamped(rate) if math.isfinite(rate) and rate > 0 else None

            at, updated = raw.get("limit_hit_at"), raw.get("updated_at")
            return cls(
                best_clean=number("best_clean"),
                limit_hit=number("limit_hit"),
                limit_hit_at=str(at) if at is not None else None,
                pace=number("pace"),
                updated_at=str(updated) if updated is not None else None,
                window_seconds=_window(raw.get("window_seconds")),
                window_limits=_window_limits(raw.get("window_limits")),
            )
        except (TypeError, ValueError):
            return None

    def guards(self) -> dict[float, int]:
        """:attr:`window_limits` by window seconds."""
        return {float(w): n for w, n in (self.window_limits or {}).items()}

    def start(self, cap: float | None = None) -> float | None:
        """The pace a new run starts at from this, ``None`` when nothing useful was learned."""
        if self.best_clean is not None:
            pace = self.best_clean
            if self.limit_hit is not None:
                pace = min(pace, self.limit_hit * PLATEAU)
        elif self.limit_hit is not None:
            # Learned from full windows (their counts kept): start just under it; a limit stored
            # without them (by an older version, from as little as one request) well below it.
            pace = self.limit_hit * (PLATEAU if self.window_limits else CUT)
        else:
            return None
        return min(pace, cap) if cap is not None else pace


def _window(value: Any) -> float | None:
    """A window length read from storage: seconds in (0, :data:`MAX_WINDOW_SECONDS`], else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and 0 < seconds <= MAX_WINDOW_SECONDS else None


def _window_limits(value: Any) -> dict[str, int] | None:
    """Counts per window read from storage, each clamped to 1 .. what :data:`MAX_PER_MINUTE` allows in it."""
    if not isinstance(value, dict):
        return None
    out: dict[str, int] = {}
    for key, count in value.items():
        seconds = _window(key)
        if seconds is None or isinstance(count, bool) or not isinstance(count, (int, float)):
            continue
        if not math.isfinite(count) or count < 1:
            continue
        key = f"{seconds:g}"  # six digits: the count is clamped for the window the key reads back as
        out[key] = _clamped_count(count, float(key))
    return out or None


def _clamped_count(count: float, seconds: float) -> int:
    """``count`` requests per window of ``seconds`` within 1 .. what :data:`MAX_PER_MINUTE` allows."""
    return int(max(1, min(math.floor(count), math.ceil(MAX_PER_MINUTE * seconds / 60.0))))


class RateStore(Protocol):
    """Somewhere the learned rate survives the task."""

    def load(self) -> LearnedRate | None:
        """Return what was learned, or ``None``."""

    def save(self, learned: LearnedRate) -> None:
        """Keep ``learned`` (never raises: losing it only costs the next run some time)."""


class MemoryRateStore:
    """A process-local store (tests, benchmarks, scripts)."""

    def __init__(self, learned: LearnedRate | None = None) -> None:
        self.learned = learned
        self.saves = 0
        self._lock = threading.Lock()

    def load(self) -> LearnedRate | None:
        """Return what was stored."""
        with self._lock:
            return self.learned

    def save(self, learned: LearnedRate) -> None:
        """Keep ``learned``."""
        with self._lock:
            self.learned = learned
            self.saves += 1


class VariableRateStore:
    """The learned rate in the Airflow Variable ``loyalty_rate__<vendor>__<conn_id>`` (JSON).

    Read and written like the Xoxoday token pair: through the Task SDK inside a task, the metadata
    database outside one. A Variable that cannot be read or written never fails the run: the
    controller starts conservatively, or the next run learns again.
    """

    def __init__(self, vendor: str, conn_id: str) -> None:
        self.key = variable_key(vendor, conn_id)

    def load(self) -> LearnedRate | None:
        """Read the Variable; ``None`` when unset, unreadable or not a learned rate."""
        from airflow_provider_loyalty._variables import get_variable

        try:
            value = get_variable(self.key)
        except Exception as exc:  # noqa: BLE001 - no API server, no metadata DB: start conservatively
            log.warning(
                "Could not read Variable %s (%s); starting from a conservative pace", self.key, type(exc).__name__
            )
            return None
        if value is None:
            return None
        learned = LearnedRate.from_value(value)
        if learned is None:
            log.warning("Variable %s does not hold a learned rate; ignoring it", self.key)
        return learned

    def save(self, learned: LearnedRate) -> None:
        """Write the Variable; log a warning when it cannot be written."""
        from airflow_provider_loyalty._variables import set_variable

        try:
            set_variable(self.key, learned.to_json(), "Vendor rate learned by max_requests_per_minute='auto'")
        except Exception as exc:  # noqa: BLE001 - the run goes on; the next one learns again
            log.warning("Could not store the learned rate in Variable %s (%s)", self.key, type(exc).__name__)


class BudgetRateStore:
    """The learned rate kept in a vendor key's shared budget (:mod:`airflow_provider_loyalty.coordination.budget`).

    :param budget: anything with ``load_learned()`` / ``save_learned(text)``.
    """

    def __init__(self, budget: Any) -> None:
        self.budget = budget

    def load(self) -> LearnedRate | None:
        """Read the key's learned rate; ``None`` when unset or unreadable (never raises)."""
        try:
            value = self.budget.load_learned()
        except Exception as exc:  # noqa: BLE001 - the store is down: start conservatively
            log.warning("Could not read the learned rate from the rate budget (%s)", type(exc).__name__)
            return None
        return None if value is None else LearnedRate.from_value(value)

    def save(self, learned: LearnedRate) -> None:
        """Store ``learned`` for the key (a failure is logged, never raised)."""
        try:
            self.budget.save_learned(learned.to_json())
        except Exception as exc:  # noqa: BLE001 - the next run learns again
            log.warning("Could not store the learned rate in the rate budget (%s)", type(exc).__name__)


class AutoRate:
    """The pace of one task: rises while the vendor answers cleanly, cuts on rate-limit answers.

    Thread-safe; the pacer calls :meth:`answered` after every attempt that got an answer and reads
    :attr:`pace` and :attr:`window_limits` (the counts no vendor window may exceed, which the
    limiter enforces on its send times). See the module documentation for the rules.

    :param cap: never pace above this (requests per minute), ``None`` for no ceiling.
    :param store: where the learned rate is read at start and written after cuts and at the end.
    :param clock: time source.
    :param start: start at this pace instead of what was learned (a fixed setting, run by this
        controller with ``cap`` = ``start``: it steps down after rate-limit answers and climbs back).
    """

    def __init__(
        self,
        *,
        cap: float | None = None,
        store: RateStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
        start: float | None = None,
    ):
        if cap is not None and cap <= 0:
            raise ValueError(f"max_requests_per_minute_cap must be positive or None, got {cap}")
        self.cap = cap
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        #: the vendor key's traffic over this task's (a shared budget; 1.0 alone): what the vendor
        #: accepted from the key is this times what it accepted from the task
        self.share: Callable[[], float] = lambda: 1.0
        #: whether the task's own bound on requests in flight, not the vendor, keeps it under the pace
        #: (the pacer's; while the limit is unknown it lets one request at a time fly)
        self.gate_bound: Callable[[], bool] = lambda: False
        self._start_from(store.load() if store is not None else None, start)
        now = clock.monotonic()
        self._started = now
        self.hits = 0
        self._changed = now  # last change of the pace
        self._clean_since = now  # last rate-limit answer (or start)
        self._episode_end = -math.inf
        self._repeats = 0  # rate-limit answers within the current episode, after its first
        #: seconds to hold every thread after the vendor's wait (a window still full: see _cut)
        self.pause = 0.0
        self._accepted: deque[float] = deque()  # clean answers of the last minute
        self._evidence: deque[float] = deque()  # send times of the accepted requests, longest window
        self._sent: deque[float] = deque()  # answered attempts of the last step
        self._history: deque[tuple[float, float]] = deque([(now, self.pace)])  # pace changes, last minute

    def adopt(self, store: RateStore) -> None:
        """Read and keep what was learned in ``store`` from now on (a vendor key's shared budget), before any request."""
        with self._lock:
            self.store = store
            self._start_from(store.load(), None)
            self._history = deque([(self.clock.monotonic(), self.pace)])

    def _start_from(self, loaded: LearnedRate | None, start: float | None) -> None:
        cap = self.cap
        self.loaded = loaded
        learned = self.loaded or LearnedRate()
        if start is None:
            start = learned.start(cap)
            self.started_from = "learned" if start is not None else "default"
        else:
            self.started_from = "setting"
        pace = start if start is not None else START_PER_MINUTE
        self.pace = self._bounded(pace)
        self.best_clean = _clamped(learned.best_clean) if learned.best_clean is not None else None
        self.limit_hit = _clamped(learned.limit_hit) if learned.limit_hit is not None else None
        self.limit_hit_at = learned.limit_hit_at
        self.window_seconds = learned.window_seconds
        #: requests no vendor window (seconds) may hold more of: what it accepted before refusing
        self.window_limits: dict[float, int] = learned.guards() if self.limit_hit is not None else {}
        #: after this run's first cut, the pace the vendor had taken from us until it refused (see send_pace)
        self.drain_pace: float | None = None
        # Slow start until a limit is known (hit this run or learned).
        self.slow_start = self.limit_hit is None

    @property
    def windows(self) -> tuple[float, ...]:
        """The vendor's window when told, else every candidate (what is learned keeps within each)."""
        return (self.window_seconds,) if self.window_seconds else CANDIDATE_WINDOWS

    @property
    def send_pace(self) -> float:
        """The pace the limiter spaces requests at: :attr:`pace`, or faster within the window limits.

        A run that found the limit by ramping up has filled the vendor's windows unevenly: the last
        seconds before the answer hold most of them, and a penalty shorter than the window ends
        with them still there. Sent at the new, even pace, that room would
        come back more slowly than it drains (a minute's window, after a 1 s penalty, refills at a
        fraction of the limit for a minute). So for the rest of the run requests go as fast as the
        vendor took them before it refused, and the window limits, not the pace, keep every window
        within what it accepted. What is stored, and where the next run starts, is :attr:`pace`.
        """
        if self.drain_pace is None or not self.window_limits:
            return self.pace
        return self._bounded(max(self.pace, self.drain_pace))

    @property
    def discovering(self) -> bool:
        """Looking for an unknown limit (``"auto"`` with nothing learned, no rate-limit answer yet)."""
        return self.slow_start and self.started_from != "setting"

    # --------------------------------------------------------------------------- observations
    def answered(self, *, throttled: bool, wait: float = 0.0, sent_at: float | None = None) -> float:
        """Record one answered attempt; return the pace in force afterwards.

        :param throttled: the vendor answered "rate limited" (429, Retry-After, penaltySeconds).
        :param wait: the window the vendor announced, seconds.
        :param sent_at: when the attempt left (monotonic; default: now). The vendor counts requests
            by arrival: send times, not answer times, say what its window held.
        """
        with self._lock:
            now = self.clock.monotonic()
            sent = now if sent_at is None else min(sent_at, now)
            self._sent.append(now)
            if throttled:
                cut = self._cut(now, wait, sent)
            else:
                self._accepted.append(now)
                self._evidence.append(sent)
                self._trim(now)
                self._learn_clean(now)
                self._raise(now)
                cut = False
            pace = self.pace
        if cut:
            self.save()
        return pace

    def _trim(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - 60.0:
            self._accepted.popleft()
        longest = max(max(self.windows), 60.0) + 1.0
        while self._evidence and self._evidence[0] <= now - longest:
            self._evidence.popleft()
        while self._sent and self._sent[0] <= now - STEP_SECONDS:
            self._sent.popleft()
        while len(self._history) > 1 and self._history[1][0] <= now - CLEAN_HOLD:
            self._history.popleft()

    def _accepted_per_minute(self, now: float, seconds: float) -> float:
        """Clean answers over the last ``seconds``, per minute, in pace units."""
        count = sum(1 for t in self._accepted if t > now - seconds)
        return count * self.share() * 60.0 / seconds * _MARGIN  # the key's, with a shared budget

    def _set(self, now: float, pace: float) -> None:
        pace = self._bounded(pace)
        if pace != self.pace:
            self.pace = pace
            self._history.append((now, pace))
        self._changed = now

    def _bounded(self, pace: float) -> float:
        pace = _clamped(pace)
        return min(pace, self.cap) if self.cap is not None else pace

    def _busy(self, now: float) -> bool:
        """Whether the task sent at (nearly) the pace in force over the last step."""
        self._trim(now)
        sent = len(self._sent) * self.share() * 60.0 / STEP_SECONDS * _MARGIN
        # While looking for the limit, requests in flight are bounded by the pacer, not the vendor:
        # that bound grows with the pace, so it must not stop the pace from growing.
        return sent >= BUSY * self.pace or (self.discovering and self.gate_bound())

    def _learn_clean(self, now: float) -> None:
        if now - self._clean_since < CLEAN_HOLD:
            return
        # Every pace in force over the last minute was answered cleanly: the lowest of them held a minute.
        held = min(p for _, p in self._history)
        if self._accepted_per_minute(now, CLEAN_HOLD) < BUSY * held:
            return  # not really sent at that pace (idle or latency-bound): proves nothing
        if self.best_clean is None or held > self.best_clean:
            self.best_clean = held

    def _raise(self, now: float) -> None:
        if now - self._changed < STEP_SECONDS or not self._busy(now):
            return
        if self.cap is not None and self.pace >= self.cap:
            return
        if self.slow_start or self.limit_hit is None:
            self._set(now, self.pace * START_GROWTH)
            return
        plateau = self.limit_hit * PLATEAU
        if self.pace < plateau * 0.999:
            self._set(now, min(plateau, self.pace + max(1.0, (plateau - self.pace) * CLIMB)))
        elif now - self._clean_since >= PROBE_HOLD and now - self._changed >= PROBE_HOLD:
            # Held the plateau cleanly for long: the vendor may allow more now (its windows too).
            self.limit_hit = self.limit_hit * PROBE_STEP
            self.window_limits = {w: math.ceil(n * PROBE_STEP) for w, n in self.window_limits.items()}
            self._set(now, self.limit_hit * PLATEAU)

    def window_counts(self, sent_at: float, answered_at: float) -> dict[float, int]:
        """Requests the vendor surely held in each window when it refused the one sent at ``sent_at``.

        That request reached the vendor before ``answered_at``; one sent after ``answered_at`` minus
        the window reached it within the window before it, whatever the delays (a lower bound).
        """
        share = self.share()
        return {
            w: int(sum(1 for t in self._evidence if answered_at - w < t < sent_at) * share + 1e-9) for w in self.windows
        }

    def _cut(self, now: float, wait: float, sent_at: float) -> bool:
        self._trim(now)
        floor = self._accepted_per_minute(now, 60.0) * 0.97
        self._clean_since = now
        if now < self._episode_end:  # the same episode: in flight before the cut, or a window draining
            if not self.window_limits:  # nothing learned (no guard): slow down a little more
                self._set(now, max(min(self.pace, floor), self.pace * EPISODE_CUT))
            # A window still full after the vendor's wait: pause on our own, twice as long each time,
            # rather than knock every second.
            self._repeats += 1
            self.pause = min(EPISODE_PAUSE_MAX, 2.0 ** (self._repeats - 1)) if wait < EPISODE_PAUSE_MAX else 0.0
            self._episode_end = max(self._episode_end, now + wait + self.pause + EPISODE_SECONDS)
            return False
        self._repeats = 0
        self.pause = 0.0
        self.hits += 1
        before = self.pace
        counts = self.window_counts(sent_at, now)
        if max(counts.values()) < MIN_EVIDENCE:
            # Refused before the vendor accepted enough from this task within a window to say what
            # the window holds: someone else's requests filled it (another task on the key, an
            # earlier run), or too few to tell. Slow down, learn nothing, keep looking.
            self._set(now, self.pace * START_CUT)
            self._episode_end = now + wait + EPISODE_SECONDS
            log.debug(
                "Rate limited after %d accepted request(s): pace cut to %.0f requests/min (no limit learned)",
                max(counts.values()),
                self.pace,
            )
            return False
        # The vendor's window was full when this request arrived: what it accepted within its window
        # before is its limit per window. Its window is not told, so every candidate window keeps at
        # most what it held (a rising pace filled them all at once); a limit met again (the vendor
        # lowered it) keeps under both what it held now and one less than before.
        limits = {w: max(1, n) for w, n in counts.items()}
        for w, n in self.window_limits.items():
            if w in limits:
                limits[w] = min(limits[w], max(1, n - 1))
        self.window_limits = limits
        hit = min(n * 60.0 / w for w, n in limits.items())
        self.limit_hit = _clamped(hit)
        self.limit_hit_at = _iso(self.clock.time())
        self.slow_start = False
        if self.best_clean is not None and self.best_clean >= self.limit_hit:
            self.best_clean = None  # the vendor lowered its limit: learn again
        # Straight to just under the limit: the limiter's window guard keeps every window within what
        # the vendor accepted (after a short penalty, a window still full drains before we send more).
        self._set(now, self.limit_hit * PLATEAU)
        if self.drain_pace is None and wait < max(self.windows) and self.started_from != "setting":
            # A penalty shorter than the window: it is still full when it ends. (A fixed setting steps
            # down and stays a ceiling, as its users were told.)
            self.drain_pace = before
        self._episode_end = now + wait + EPISODE_SECONDS
        log.debug(  # the pacer logs one line per vendor window, naming the pace in force
            "Rate limited at a pace of %.0f requests/min: the vendor accepted %s; pace now %.0f/min",
            before,
            ", ".join(f"{n} per {w:g} s" for w, n in sorted(limits.items())),
            self.pace,
        )
        return True

    # ------------------------------------------------------------------------------ reporting
    def learned(self) -> LearnedRate:
        """What this run has learned so far (merged with what it started from)."""
        with self._lock:
            return LearnedRate(
                best_clean=_round(self.best_clean),
                limit_hit=_round(self.limit_hit),
                limit_hit_at=self.limit_hit_at,
                pace=_round(self.pace),
                updated_at=_iso(self.clock.time()),
                window_seconds=self.window_seconds,
                window_limits={f"{w:g}": n for w, n in sorted(self.window_limits.items())} or None,
            )

    def save(self) -> None:
        """Store what was learned (after each cut, and when the hook closes)."""
        if self.store is not None:
            self.store.save(self.learned())

    def report(self) -> dict[str, Any]:
        """The pace in force and what was learned, for the summary XCom."""
        learned = self.learned()
        return {
            "mode": AUTO,
            "pace_per_minute": learned.pace,
            "cap_per_minute": self.cap,
            "started_from": self.started_from,
            "rate_limit_cuts": self.hits,
            "learned": {k: v for k, v in asdict(learned).items() if k not in ("pace", "updated_at")},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(_clamped(value), 1)


def _clamped(per_minute: float) -> float:
    """``per_minute`` within :data:`MIN_PER_MINUTE` and :data:`MAX_PER_MINUTE` (what is read and saved)."""
    return min(MAX_PER_MINUTE, max(MIN_PER_MINUTE, per_minute))


def is_auto(value: Any) -> bool:
    """Whether a ``max_requests_per_minute`` value asks for the controller (``"auto"``, any case)."""
    return isinstance(value, str) and value.strip().lower() == AUTO
