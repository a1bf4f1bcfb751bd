"""Shared HTTP plumbing of both hooks: session, retry policy and request pacing.

One :class:`VendorHTTPClient` per hook instance owns one :class:`requests.Session`. Every request
goes through a :class:`RequestPacer` shared by all threads of the task: it spaces requests evenly
(a per-minute limit may be enforced by the vendor over much shorter windows, so no bursts), holds
every thread back while a rate-limit window announced by the vendor is open, and lowers the number
of requests in flight after such an answer so that in-flight requests don't land inside the next
window.

Time is injectable (:class:`Clock`): tests assert the waits instead of sleeping.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from airflow_provider_loyalty import __version__

# The exceptions live in hooks/errors.py; re-exported here (``X as X``) for existing imports.
from airflow_provider_loyalty.hooks.errors import (
    CredentialsMissingError as CredentialsMissingError,
)
from airflow_provider_loyalty.hooks.errors import (
    VendorAuthError as VendorAuthError,
)
from airflow_provider_loyalty.hooks.errors import (
    VendorConfigError as VendorConfigError,
)
from airflow_provider_loyalty.hooks.errors import (
    VendorError as VendorError,
)
from airflow_provider_loyalty.hooks.errors import (
    VendorRateLimitError as VendorRateLimitError,
)
from airflow_provider_loyalty.hooks.errors import (
    VendorRequestError as VendorRequestError,
)
from airflow_provider_loyalty.hooks.errors import (
    VendorResponseError as VendorResponseError,
)
from airflow_provider_loyalty.hooks.errors import (
    VendorUnavailableError as VendorUnavailableError,
)
from airflow_provider_loyalty.hooks.errors import shorten as _shorten

log = logging.getLogger(__name__)

#: Connect and read timeouts (seconds) used when a hook is not given its own.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)


def user_agent() -> str:
    """Return the versioned ``User-Agent`` sent with every vendor request."""
    from airflow import __version__ as airflow_version

    return f"airflow-provider-loyalty/{__version__} apache-airflow/{airflow_version} requests/{requests.__version__}"


class Clock:
    """Wall clock, monotonic clock and sleep, injectable so tests never wait for real."""

    def monotonic(self) -> float:
        """Return a monotonic timestamp in seconds."""
        return time.monotonic()

    def time(self) -> float:
        """Return the wall-clock time as epoch seconds (for HTTP dates and token expiries)."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = Clock()


# -------------------------------------------------------------------------------------- retry policy
@dataclass(frozen=True)
class RetryDecision:
    """What to do after one attempt: retry or not, how long to wait, and why."""

    #: the failure is of a retryable kind (the caller checks its attempt budget).
    retry: bool
    wait: float = 0.0
    #: the vendor announced a rate-limit window: every thread must wait it out.
    throttled: bool = False
    reason: str = ""


#: Transport failures worth another attempt: the network, not the request, was the problem.
RETRYABLE_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def may_have_been_applied(error: BaseException | None, response: requests.Response | None) -> bool:
    """Whether a failed attempt may still have been processed by the vendor (so a resend is not clean).

    A connection that was never established or a connect timeout sent nothing; a read timeout, a
    dropped connection or a 5xx may come after the vendor applied the request.
    """
    if error is not None:
        if isinstance(error, requests.ConnectTimeout):
            return False
        reason = getattr(error.args[0], "reason", None) if error.args else None
        from urllib3.exceptions import NewConnectionError

        return not isinstance(reason, NewConnectionError)
    return response is not None and response.status_code >= 500


#: Extracts a vendor-specific rate-limit wait from any answer (e.g. Xoxoday's ``penaltySeconds``).
ThrottleHint = Callable[[requests.Response], "float | None"]


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, how often, and how long to wait in between.

    Retried: connection errors and timeouts, 5xx, 408 and 429, and any answer for which the
    vendor's throttle hint announces a wait. Waits: ``Retry-After`` (seconds or HTTP date) or the
    vendor's penalty exactly, otherwise exponential backoff with jitter. Other 4xx are final:
    sending the same request again cannot change the answer. 401 is the hook's business
    (refresh credentials once), not a blind retry.

    :param max_attempts: attempts per request, the first one included.
    :param backoff_initial: first backoff in seconds; doubled per attempt.
    :param backoff_max: cap of one backoff.
    :param max_wait: longest vendor-announced wait we accept; longer ones fail the request
        (transiently) instead of blocking a worker slot for hours.
    """

    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_wait: float = 900.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return the jittered exponential backoff after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
        return ceiling / 2 + rng.random() * ceiling / 2

    def decide(
        self,
        attempt: int,
        rng: random.Random,
        *,
        response: requests.Response | None = None,
        error: BaseException | None = None,
        throttle_wait: float | None = None,
        now: float | None = None,
    ) -> RetryDecision:
        """Classify one attempt's result.

        :param attempt: 1-based number of the attempt that just ended.
        :param rng: random source of the jitter.
        :param response: the answer, if one arrived.
        :param error: the transport exception, if none arrived.
        :param throttle_wait: wait announced by a vendor-specific throttle hint.
        :param now: wall-clock epoch seconds, for ``Retry-After`` given as an HTTP date.
        """
        if error is not None:
            if isinstance(error, RETRYABLE_TRANSPORT_ERRORS):
                return RetryDecision(True, self.backoff(attempt, rng), reason=type(error).__name__)
            return RetryDecision(False, reason=type(error).__name__)
        assert response is not None
        status = response.status_code
        if throttle_wait is None and status == 429:
            throttle_wait = retry_after_seconds(response.headers, now=now)
            if throttle_wait is None:
                throttle_wait = self.backoff(attempt, rng)
        if throttle_wait is not None:
            if throttle_wait > self.max_wait:
                return RetryDecision(False, throttle_wait, throttled=True, reason="rate limit wait too long")
            return RetryDecision(True, throttle_wait, throttled=True, reason=f"rate limited (HTTP {status})")
        if status >= 500 or status == 408:
            wait = retry_after_seconds(response.headers, now=now)
            if wait is None or wait > self.max_wait:
                wait = self.backoff(attempt, rng)
            return RetryDecision(True, wait, reason=f"HTTP {status}")
        return RetryDecision(False, reason=f"HTTP {status}")


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delta seconds or an HTTP date; ``None`` if absent or unreadable."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        from datetime import timezone

        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# ------------------------------------------------------------------------------------------- pacing
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

    :param per_minute: requests per minute, ``None`` for no limit.
    :param max_concurrency: requests in flight, ``None`` for unbounded.
    :param clock: time source.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        max_concurrency: int | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.limiter = RateLimiter(per_minute, clock=clock)
        self.gate = ConcurrencyGate(max_concurrency)
        self.clock = clock

    @contextmanager
    def slot(self, served_until: float = -math.inf) -> Iterator[dict[str, bool]]:
        """Hold a place in flight and a rate slot for one request; yields a mutable status dict.

        :param served_until: end of a vendor window the calling thread already slept through.
        """
        self.gate.acquire()
        status = {"throttled": False}
        try:
            self.limiter.acquire(served_until)
            yield status
        finally:
            self.gate.release(throttled=status["throttled"])

    def penalize(self, seconds: float) -> float:
        """Open a vendor-announced window of ``seconds`` during which no thread sends; return its end."""
        deadline = self.clock.monotonic() + seconds
        self.limiter.block_until(deadline)
        return deadline


# ------------------------------------------------------------------------------------------- client
@dataclass(frozen=True)
class Answer:
    """The final answer to one request, and whether an earlier attempt of it may have been applied.

    :param response: the last answer (any status the client does not retry or raise for).
    :param after_ambiguous_attempt: an earlier attempt timed out or met a 5xx after it may have
        reached the vendor: a refusal such as "already cancelled" may be the echo of that attempt.
    """

    response: requests.Response
    after_ambiguous_attempt: bool = False


class VendorHTTPClient:
    """One vendor's HTTP access: a session, timeouts, user agent, retries and pacing.

    :param vendor: vendor name used in errors and logs.
    :param base_url: scheme and host, e.g. ``https://eu.api.capillarytech.com``.
    :param timeout: ``(connect, read)`` timeouts in seconds, always applied.
    :param retry_policy: what to retry and how long to wait.
    :param pacer: rate limiter + concurrency gate; share one per task.
    :param throttle_hint: reads a vendor-specific rate-limit wait from an answer of any status.
    :param clock: time source.
    :param rng: random source of the backoff jitter.
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        pacer: RequestPacer | None = None,
        throttle_hint: ThrottleHint | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self.pacer = pacer or RequestPacer(clock=clock)
        self.throttle_hint = throttle_hint
        self.clock = clock
        self._rng = rng or random.Random()
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """The client's session, created on first use with a pool sized for its concurrency."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    session = requests.Session()
                    pool = max(10, self.pacer.gate.max_limit or 10)
                    adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
                    session.mount("https://", adapter)
                    session.mount("http://", adapter)
                    session.headers["User-Agent"] = user_agent()
                    session.headers["Accept"] = "application/json"
                    # Read proxy and CA settings from the environment once, not on every request
                    # (11-19 % of the client's CPU per request otherwise).
                    settings = session.merge_environment_settings(self.base_url, {}, None, None, None)
                    session.proxies.update(settings.get("proxies") or {})
                    session.verify = settings.get("verify", True)
                    session.trust_env = False
                    self._session = session
        return self._session

    def close(self) -> None:
        """Close the session's pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: requests.auth.AuthBase | None = None,
        headers: Mapping[str, str] | None = None,
        max_attempts: int | None = None,
    ) -> Answer:
        """Send one request with retries; return the final answer, whatever its status.

        Retryable trouble is retried per the policy. What is left after the budget raises:
        :class:`VendorRateLimitError` or :class:`VendorUnavailableError`. A final 4xx answer is
        returned for the caller to interpret (the hooks turn 401 into a refresh, others into
        :class:`VendorRequestError`).

        :param method: HTTP method.
        :param path: path below the base URL, starting with ``/``.
        :param json: JSON body.
        :param auth: per-request auth (the hooks' :class:`requests.auth.AuthBase`).
        :param headers: extra headers.
        :param max_attempts: override of the policy's attempt budget (1 = no retry).
        """
        url = f"{self.base_url}{path}"
        budget = max_attempts or self.retry_policy.max_attempts
        policy = self.retry_policy
        attempt = 0
        served_until = -math.inf  # end of a vendor window this thread already slept through
        ambiguous = False  # an earlier attempt may have reached the vendor and been applied
        while True:
            attempt += 1
            response: requests.Response | None = None
            error: BaseException | None = None
            throttle_wait: float | None = None
            deadline = -math.inf
            with self.pacer.slot(served_until) as status:
                try:
                    # Never follow a redirect: requests would resend the body and any header not
                    # named Authorization (X-CAP-API-OAUTH-TOKEN) to wherever Location points.
                    response = self.session.request(
                        method,
                        url,
                        json=json,
                        auth=auth,
                        headers=headers,
                        timeout=self.timeout,
                        allow_redirects=False,
                    )
                except requests.RequestException as exc:
                    error = exc
                if response is not None and 300 <= response.status_code < 400:
                    raise redirect_error(self.vendor, response)
                if response is not None and self.throttle_hint is not None:
                    throttle_wait = self.throttle_hint(response)
                decision = policy.decide(
                    attempt,
                    self._rng,
                    response=response,
                    error=error,
                    throttle_wait=throttle_wait,
                    now=self.clock.time(),
                )
                if decision.throttled and decision.retry:  # open only windows we are willing to wait out
                    status["throttled"] = True
                    deadline = self.pacer.penalize(decision.wait)
            if not decision.retry and error is None and not decision.throttled:
                assert response is not None
                return Answer(response, ambiguous)  # success, or a final answer for the caller to read
            if not decision.retry or attempt >= budget:
                raise self._give_up(decision, response, error, attempt)
            ambiguous = ambiguous or (not decision.throttled and may_have_been_applied(error, response))
            log.warning(
                "%s %s %s: %s; attempt %d of %d, next in %.1f s",
                self.vendor,
                method,
                path,
                transport_failure(error, url) if error is not None else decision.reason,
                attempt,
                budget,
                decision.wait,
            )
            # The thread that got the vendor's answer waits exactly what it said; the others are
            # held back by the shared window until its end.
            self.clock.sleep(decision.wait)
            if decision.throttled:
                served_until = deadline

    def _give_up(
        self,
        decision: RetryDecision,
        response: requests.Response | None,
        error: BaseException | None,
        attempts: int,
    ) -> VendorError:
        status = response.status_code if response is not None else None
        if decision.throttled:
            return VendorRateLimitError(
                self.vendor,
                f"still rate limited after {attempts} attempt(s) ({decision.reason}, wait {decision.wait:.0f} s)",
                status_code=status,
                response=response,
            )
        if error is not None:
            if not decision.retry:  # a malformed URL, a bad header...: sending again cannot help
                return VendorConfigError(self.vendor, f"{type(error).__name__}: {_shorten(str(error))}")
            cause = transport_failure(error, f"{self.base_url}/")
            return VendorUnavailableError(self.vendor, f"{cause} (after {attempts} attempt(s))")
        return VendorUnavailableError(
            self.vendor,
            f"{decision.reason} after {attempts} attempt(s): {response_snippet(response)}",
            status_code=status,
            response=response,
        )


def redirect_error(vendor: str, response: requests.Response) -> VendorConfigError:
    """The error for a 3xx answer: a configuration problem (wrong host or scheme), never followed.

    The message names where the vendor pointed (scheme, host and path of ``Location``; user info,
    query and fragment left out, as they may carry tokens).
    """
    location = response.headers.get("Location")
    if location:
        target = urllib.parse.urlsplit(urllib.parse.urljoin(response.url or "", location))
        host = target.hostname or ""
        netloc = f"{host}:{target.port}" if target.port else host
        shown = urllib.parse.urlunsplit((target.scheme, netloc, target.path, "", ""))
        where = f"redirects to {shown}"
    else:
        where = "redirects without a Location"
    return VendorConfigError(
        vendor,
        f"{where}; vendor calls do not follow redirects (credentials stay with their origin): "
        "set the connection's host to the URL the vendor serves its API from",
        status_code=response.status_code,
        response=response,
    )


def transport_failure(error: BaseException, url: str) -> str:
    """Describe a transport failure by host, port and cause: ``connection refused to 127.0.0.1:8099``.

    :param error: the exception ``requests`` raised.
    :param url: the URL that was requested (for host and port).
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = "?"  # type: ignore[assignment]
    where = f"{host}:{port}"
    causes = _causes(error)
    if isinstance(error, requests.ConnectTimeout):
        return f"connect timeout to {where}"
    if isinstance(error, requests.ReadTimeout):
        return f"read timeout from {where} (no answer in time)"
    if isinstance(error, requests.exceptions.SSLError):
        return f"TLS handshake with {where} failed: {_shorten(str(causes[-1]))[:120]}"
    if isinstance(error, requests.exceptions.ProxyError):
        return f"proxy refused or failed the connection to {where}"
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused to {where}"
        if isinstance(cause, socket.gaierror):
            return f"host name {host} not resolved ({cause.strerror or cause})"
        if isinstance(cause, ConnectionResetError):
            return f"connection reset by {where}"
        if isinstance(cause, (ConnectionAbortedError, BrokenPipeError)):
            return f"connection to {where} dropped"
        if isinstance(cause, TimeoutError):
            return f"timeout talking to {where}"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return f"answer from {where} cut off"
    detail = next((str(c) for c in reversed(causes) if str(c)), type(error).__name__)
    return f"{type(error).__name__} with {where}: {_shorten(detail)[:160]}"


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps (urllib3's ``reason``, exceptions in ``args``, ``__cause__``), outermost first."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending and len(seen) < 10:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for inner in (getattr(current, "reason", None), *current.args, current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return seen


def base_url(host: str | None, port: int | None, default: str, vendor_paths: tuple[str, ...] = ()) -> str:
    """Build a base URL from a connection's ``host`` (scheme optional, ``https`` assumed) and ``port``.

    :param vendor_paths: path prefixes of the vendor's own endpoints: a host pasted with one of them
        (``https://accounts.xoxoday.com/chef/v1/oauth/api`` from the docs) is cut back to its origin,
        since the hooks add those paths themselves.
    """
    if not host:
        return default
    url = host.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    path = f"/{path}" if slash else ""
    if path and any(path.startswith(prefix) for prefix in vendor_paths):
        log.warning("Connection host %s includes an API path; using %s://%s", url, scheme, netloc)
        path = ""
    if port and ":" not in netloc:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{path}"


def url_path(value: object, default: str) -> str:
    """Return a configured URL path (leading ``/`` ensured) or ``default`` when unset."""
    if not value:
        return default
    text = str(value).strip()
    return text if text.startswith("/") else f"/{text}"


def response_snippet(response: requests.Response | None) -> str:
    """Return a short, single-line excerpt of an answer's body for error messages."""
    if response is None:
        return ""
    try:
        text = response.text
    except Exception:  # pragma: no cover - undecodable body
        return "<unreadable body>"
    return _shorten(text) if text else "<empty body>"


def json_body(vendor: str, response: requests.Response) -> Any:
    """Decode an answer's JSON body or raise :class:`VendorResponseError`."""
    try:
        return response.json()
    except ValueError:
        raise VendorResponseError(
            vendor,
            f"expected JSON, got {response.headers.get('Content-Type', 'no content type')}: "
            f"{response_snippet(response)}",
            status_code=response.status_code,
            response=response,
            transient=response.status_code >= 500,
        ) from None
