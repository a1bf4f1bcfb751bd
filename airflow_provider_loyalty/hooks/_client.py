"""One vendor's HTTP access: a session, timeouts, user agent, retries, pacing; and the texts of its errors.

One :class:`VendorHTTPClient` per hook instance owns one :class:`requests.Session`. Every request
goes through a :class:`~airflow_provider_loyalty.hooks._pacing.RequestPacer` shared by all threads
of the task. Redirects are never followed (credentials stay with their origin).
"""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from airflow_provider_loyalty import __version__
from airflow_provider_loyalty import _metrics as metrics
from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock
from airflow_provider_loyalty.hooks._pacing import RequestPacer
from airflow_provider_loyalty.hooks._retry import RetryDecision, RetryPolicy, ThrottleHint, may_have_been_applied
from airflow_provider_loyalty.hooks._retry import causes as wrapped_errors
from airflow_provider_loyalty.hooks.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimitError,
    VendorResponseError,
    VendorUnavailableError,
)
from airflow_provider_loyalty.hooks.errors import shorten as _shorten

log = logging.getLogger(__name__)

#: Connect and read timeouts (seconds) used when a hook is not given its own.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)


def user_agent() -> str:
    """Return the versioned ``User-Agent`` sent with every vendor request."""
    from airflow import __version__ as airflow_version

    return f"airflow-provider-loyalty/{__version__} apache-airflow/{airflow_version} requests/{requests.__version__}"


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

    def _stop_if_given_up(self, ambiguous: bool) -> None:
        """Raise once any thread stopped waiting for the vendor (time budget, or a deferral): nothing more leaves."""
        if self.pacer.gave_up is not None:
            stop = VendorRateLimitError(self.vendor, self.pacer.gave_up, may_have_been_applied=ambiguous)
            stop.resume_after = self.pacer.deferred
            raise stop

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: requests.auth.AuthBase | None = None,
        headers: Mapping[str, str] | None = None,
        max_attempts: int | None = None,
        before_send: Callable[[], object] | None = None,
    ) -> Answer:
        """Send one request with retries; return the final answer, whatever its status.

        Retryable trouble is retried per the policy. A rate-limit answer is no error: the request
        waits the vendor's window and goes again, without spending an attempt, until the pacer's
        ``rate_limit_timeout`` says stop (:class:`VendorRateLimitError`, nothing more is sent by
        any thread). Errors left after the attempt budget raise :class:`VendorUnavailableError`. A final 4xx answer is
        returned for the caller to interpret (the hooks turn 401 into a refresh, others into
        :class:`VendorRequestError`).

        :param method: HTTP method.
        :param path: path below the base URL, starting with ``/``.
        :param json: JSON body.
        :param auth: per-request auth (the hooks' :class:`requests.auth.AuthBase`).
        :param headers: extra headers.
        :param max_attempts: override of the policy's attempt budget (1 = no retry).
        :param before_send: called right before each attempt goes over the wire, after pacing (the
            operators record their intent there, so that an intent means "sent, or about to be");
            what it raises propagates, and nothing is sent.
        """
        url = f"{self.base_url}{path}"
        budget = max_attempts or self.retry_policy.max_attempts
        policy = self.retry_policy
        attempt = 0  # every attempt (the backoff grows with them)
        errors = 0  # attempts that met an error: the budget counts these, never rate-limit answers
        limited_since: float | None = None  # the first rate-limit answer to this request
        served_until = -math.inf  # end of a vendor window this thread already slept through
        ambiguous = False  # an earlier attempt may have reached the vendor and been applied
        while True:
            attempt += 1
            response: requests.Response | None = None
            error: BaseException | None = None
            throttle_wait: float | None = None
            deadline = -math.inf
            gave_up: str | None = None
            defer: float | None = None
            # Checked before a rate slot is taken too: after a deferral the next slot lies past the
            # vendor's window, and waiting for it would hold the worker slot through the window.
            self._stop_if_given_up(ambiguous)
            with self.pacer.slot(served_until) as status:
                self._stop_if_given_up(ambiguous)  # another thread stopped while this one waited for its slot
                if before_send is not None:
                    before_send()
                try:
                    # Never follow a redirect: requests would resend the body and any header not
                    # named Authorization (X-CAP-API-OAUTH-TOKEN) to wherever Location points.
                    # The body is read below, not by requests, so that an answer whose body cannot
                    # be read keeps its status: the vendor answered it.
                    response = self.session.request(
                        method,
                        url,
                        json=json,
                        auth=auth,
                        headers=headers,
                        timeout=self.timeout,
                        allow_redirects=False,
                        stream=True,
                    )
                except requests.RequestException as exc:
                    error = exc
                if response is not None and 300 <= response.status_code < 400:
                    response.close()
                    # 303 See Other answers a POST that was processed; after an unanswered attempt
                    # any redirect may follow an applied request.
                    raise redirect_error(
                        self.vendor, response, may_have_been_applied=ambiguous or response.status_code == SEE_OTHER
                    )
                if response is not None:
                    try:
                        response.content  # noqa: B018 - reads the body
                    except requests.exceptions.ContentDecodingError as exc:
                        raise self._unreadable(response, exc, ambiguous) from None
                    except requests.RequestException as exc:  # cut off, timed out or reset while reading
                        response, error = None, exc
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
                if decision.throttled:
                    metrics.incr(self.vendor, "rate_limited")
                    # The vendor is pacing us: wait its window and go again, within the time budget.
                    if limited_since is None:
                        limited_since = self.clock.monotonic()
                    if decision.retry:  # a long window goes to the triggerer (when the task can resume)
                        defer = self.pacer.defer_for(decision.wait)
                    gave_up = self.pacer.gave_up if defer is not None else None
                    gave_up = gave_up or self.pacer.rate_limit_exhausted(
                        limited_since, decision.wait if decision.retry else math.inf
                    )
                if decision.throttled and (
                    gave_up is None or defer is not None
                ):  # windows waited out (here or deferred)
                    status["throttled"] = True
                    deadline, new_window = self.pacer.open_window(decision.wait)
                    if new_window:
                        status["notice"] = f"{self.vendor}: {decision.reason}"
                # What max_requests_per_minute="auto" learns from: a clean answer or a rate-limit one
                # (transport failures and 5xx say nothing about the rate).
                status["answered"] = response is not None and (decision.throttled or response.status_code < 500)
                status["rate_limited"] = decision.throttled
                status["wait"] = decision.wait if decision.throttled else 0.0
            if decision.throttled:
                if gave_up is not None:
                    stop = VendorRateLimitError(
                        self.vendor,
                        gave_up,
                        status_code=response.status_code if response is not None else None,
                        response=response,
                        may_have_been_applied=ambiguous,
                    )
                    stop.resume_after = defer
                    raise stop
                # The thread that got the vendor's answer waits exactly what it said; the others are
                # held back by the shared window until its end. No attempt of the budget is spent.
                self.clock.sleep(decision.wait)
                served_until = deadline
                continue
            if not decision.retry and error is None:
                assert response is not None
                return Answer(response, ambiguous)  # success, or a final answer for the caller to read
            errors += 1
            ambiguous = ambiguous or may_have_been_applied(error, response)
            if not decision.retry or errors >= budget:
                raise self._give_up(decision, response, error, errors, ambiguous)
            log.warning(
                "%s %s %s: %s; attempt %d of %d, next in %.1f s",
                self.vendor,
                method,
                path,
                transport_failure(error, url) if error is not None else decision.reason,
                errors,
                budget,
                decision.wait,
            )
            self.clock.sleep(decision.wait)

    def _give_up(
        self,
        decision: RetryDecision,
        response: requests.Response | None,
        error: BaseException | None,
        attempts: int,
        ambiguous: bool = False,
    ) -> VendorError:
        status = response.status_code if response is not None else None
        if error is not None:
            if not decision.retry:  # a malformed URL, a bad header...: sending again cannot help
                return VendorConfigError(
                    self.vendor, f"{type(error).__name__}: {_shorten(str(error))}", may_have_been_applied=ambiguous
                )
            cause = transport_failure(error, f"{self.base_url}/")
            return VendorUnavailableError(
                self.vendor, f"{cause} (after {attempts} attempt(s))", may_have_been_applied=ambiguous
            )
        earlier = "; an earlier attempt got no answer" if ambiguous else ""
        return VendorUnavailableError(
            self.vendor,
            f"{decision.reason} after {attempts} attempt(s){earlier}: {response_snippet(response)}",
            status_code=status,
            response=response,
            may_have_been_applied=ambiguous,
        )

    def _unreadable(self, response: requests.Response, error: BaseException, ambiguous: bool) -> VendorResponseError:
        """The error for an answer whose body cannot be decoded (labelled gzip, and not gzip).

        The request left and the vendor answered: after a 2xx its items were processed, outcome
        unknown (the operators keep them in doubt). Not retried: the resend of a processed request
        would only meet its own echo. Whether an earlier attempt may have been applied is kept.
        """
        status = response.status_code
        encoding = response.headers.get("Content-Encoding", "none")
        return VendorResponseError(
            self.vendor,
            f"answer unreadable (Content-Encoding {encoding}): {type(error).__name__}: {_shorten(str(error))[:160]}",
            status_code=status,
            response=response,
            transient=True,
            may_have_been_applied=ambiguous or may_have_been_applied(None, response),
        )


#: After a POST: "processed, see there" — the vendor applied the request.
SEE_OTHER = 303


def redirect_error(
    vendor: str, response: requests.Response, *, may_have_been_applied: bool = False
) -> VendorConfigError:
    """The error for a 3xx answer: a configuration problem (wrong host or scheme), never followed.

    The message names where the vendor pointed (scheme, host and path of ``Location``; user info,
    query and fragment left out, as they may carry tokens).

    :param may_have_been_applied: an earlier attempt got no answer, or the redirect says the request
        was processed (303): the items stay in doubt although the task stops.
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
        may_have_been_applied=may_have_been_applied,
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
    causes = wrapped_errors(error, context=True)
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
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        raise VendorResponseError(
            vendor,
            f"expected JSON, got {response.headers.get('Content-Type', 'no content type')}: "
            f"{response_snippet(response)}",
            status_code=response.status_code,
            response=response,
            transient=response.status_code >= 500,
        ) from None


def reversal_body(vendor: str, response: requests.Response) -> Any:
    """The JSON body of a reversal's 2xx answer; only a ``200`` is one.

    Both vendors answer a processed reversal with 200. Any other 2xx says something else about the
    request — ``202 Accepted`` "not processed yet", ``204`` nothing at all — so its body, whatever it
    claims, confirms nothing: an unreadable answer (the items stay in doubt).
    """
    if response.status_code != 200:
        raise VendorResponseError(
            vendor,
            f"HTTP {response.status_code} to a reversal is no answer (only 200 confirms one): "
            f"{response_snippet(response)}",
            status_code=response.status_code,
            response=response,
        )
    return json_body(vendor, response)
