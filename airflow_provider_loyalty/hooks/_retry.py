"""Retry policy of vendor calls: which failures are retried, how often, how long to wait."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests


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


#: The one error status after which the vendor may have applied the request.
GATEWAY_TIMEOUT = 504


def may_have_been_applied(error: BaseException | None, response: requests.Response | None) -> bool:
    """Whether a failed attempt may still have been processed by the vendor (so a resend is not clean).

    An attempt that failed while the connection was being opened sent nothing: a refused or
    unresolved connection, a connect timeout, a proxy that could not be reached or refused the
    tunnel, a failed TLS handshake or certificate check (a plain-HTTP port behind an ``https`` URL,
    an unknown CA). A read timeout, a dropped connection, a TLS error while reading the answer or a
    gateway timeout (504: the gateway gave up waiting on the vendor) may come after the vendor
    applied the request. Other error pages (500, 502, 503) are taken as "not processed": treating
    them as maybe-applied would let an "already reversed" answer to the resend — Capillary's 731
    also means "invalid earn" — pass for a success nobody confirmed. The ledger's cross-try rule
    (``outcomes.IN_DOUBT_CODES``) is the same.
    """
    if error is not None:
        return not sent_nothing(error)
    return response is not None and response.status_code == GATEWAY_TIMEOUT


#: Raised while the request is being prepared (a malformed URL or header, a body that is no JSON):
#: nothing left.
UNSENDABLE_REQUEST_ERRORS: tuple[type[requests.RequestException], ...] = (
    requests.exceptions.URLRequired,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
)

#: Functions of urllib3 (and :mod:`ssl`) that run before a byte of the request is written: opening
#: the connection, the proxy tunnel, the TLS handshake and the certificate checks.
_CONNECT_PHASE = frozenset({"_new_conn", "_validate_conn", "connect", "_tunnel", "_connect_tls_proxy", "do_handshake"})


def sent_nothing(error: BaseException) -> bool:
    """Whether a transport error certainly came before the request was sent (so it was not applied).

    Decided by what failed — a request that could not be prepared, a connect timeout, a connection
    never established, a proxy error (the connection to or through the proxy was never made) — or, for other errors, by where: an error
    raised while urllib3 was connecting (TLS handshake, certificate check, a reset during the
    handshake) sent nothing, one raised while sending or reading (``getresponse``) may follow an
    applied request. A TLS error that does not say where it came from counts as sent, unless it is
    a certificate verification failure (always part of the handshake).
    """
    from urllib3.exceptions import NewConnectionError

    if isinstance(error, (requests.ConnectTimeout, requests.exceptions.ProxyError, *UNSENDABLE_REQUEST_ERRORS)):
        return True
    wrapped = causes(error)
    if any(isinstance(cause, NewConnectionError) for cause in wrapped):
        return True
    if any(_raised_while_connecting(cause) for cause in wrapped):
        return True
    if isinstance(error, requests.exceptions.SSLError):
        return any(_certificate_refused(cause) for cause in wrapped)
    return False


def causes(error: BaseException, *, context: bool = False) -> list[BaseException]:
    """``error`` and what it wraps (urllib3's ``reason``, exceptions in ``args``, ``__cause__``), outermost first.

    ``context`` adds ``__context__`` (an exception being handled when this one was raised): useful
    for naming what went wrong, never for deciding whether a request left — an earlier, handled
    connect error must not make a read error look like one.
    """
    seen: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending and len(seen) < 10:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for inner in (
            getattr(current, "reason", None),
            *current.args,
            current.__cause__,
            current.__context__ if context else None,
        ):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return seen


def _raised_while_connecting(error: BaseException) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in _CONNECT_PHASE:
            return True
        tb = tb.tb_next
    return False


def _certificate_refused(error: BaseException) -> bool:
    import ssl

    from urllib3.util.ssl_match_hostname import CertificateError

    if isinstance(error, (ssl.SSLCertVerificationError, CertificateError)):
        return True
    return "CERTIFICATE_VERIFY_FAILED" in str(error).upper().replace(" ", "_")


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
