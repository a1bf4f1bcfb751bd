"""The hooks' public exceptions: one family under :class:`VendorError`.

Each class declares whether a failure is ``fatal`` (no further request of the task can succeed:
credentials, configuration — the operators stop and don't let Airflow retry) and whether it is
``transient`` (trying again later may succeed: 5xx, 429, transport trouble).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:
    import requests

__all__ = [
    "CredentialsMissingError",
    "VendorAuthError",
    "VendorConfigError",
    "VendorError",
    "VendorRateLimitError",
    "VendorRequestError",
    "VendorResponseError",
    "VendorUnavailableError",
]

_MAX_MESSAGE_CHARS = 300


class VendorError(AirflowException):
    """A vendor call failed; carries what the vendor said, never what we sent.

    ``fatal`` and ``transient`` are declared by each class (an instance may say ``transient``
    when the same kind of failure can be either, e.g. an unreadable answer with a 5xx status).

    :param vendor: ``xoxoday`` or ``capillary``.
    :param message: human-readable reason (vendor message when there is one).
    :param status_code: HTTP status of the last answer, ``None`` when no answer arrived; read it
        back as :attr:`http_status` (or :attr:`status_code`).
    :param code: the vendor's own error code (``invalid_grant``, ``729``...), when given.
    :param response: the last :class:`requests.Response`, when there is one.
    :param transient: whether trying again later may succeed; the class's default when not given.
    :param may_have_been_applied: the request may have reached the vendor and been applied although
        no usable answer came back (a read timeout, a connection dropped after sending).
    :param token_exchange: the failure is a token or auth exchange's (Capillary's OAuth token
        generation, Xoxoday's refresh or validation), not the reversal request's: it says nothing of
        whether the reversal was applied, and its message never quotes the exchange's answer.
    """

    #: no further request of the task can succeed (credentials, configuration): stop, and don't
    #: let Airflow retry blindly.
    fatal: bool = False
    #: trying again later may succeed (5xx, 429, transport trouble).
    transient: bool = False

    def __init__(
        self,
        vendor: str,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        response: requests.Response | None = None,
        transient: bool | None = None,
        may_have_been_applied: bool = False,
        token_exchange: bool = False,
    ) -> None:
        self.vendor = vendor
        self.may_have_been_applied = may_have_been_applied
        self.token_exchange = token_exchange
        self.message = shorten(message)
        self.http_status: int | None = status_code
        self.code = code
        self.response = response
        if transient is not None:
            self.transient = transient
        where = f"HTTP {status_code}" if status_code is not None else "no response"
        # a vendor code equal to the HTTP status (Capillary's {"code": 401}) is not printed twice
        detail = f" [{code}]" if code and code != str(status_code) else ""
        super().__init__(f"{vendor}: {where}{detail}: {self.message}")

    # AirflowException declares a class-level ``status_code`` (the HTTP status the API server would
    # answer with); the vendor's status lives in ``http_status``. This read-only alias keeps callers'
    # ``exc.status_code`` working (mypy objects to narrowing HTTPStatus to int | None: by design).
    @property
    def status_code(self) -> int | None:  # type: ignore[override]
        """HTTP status of the vendor's last answer (alias of :attr:`http_status`)."""
        return self.http_status


class VendorRequestError(VendorError):
    """The vendor refused the request as a whole (4xx other than auth and rate limit)."""


class VendorAuthError(VendorError):
    """Credentials were refused (401/498, or a refused token refresh or generation)."""

    fatal = True


class VendorRateLimitError(VendorError):
    """Rate limited beyond what the task waits for in its slot (``rate_limit_timeout``, or a long window).

    :attr:`resume_after` is set when the task should hand the wait to the triggerer instead
    (seconds of the vendor's window): nothing was sent into it, and the task resumes from its ledger.
    """

    transient = True
    resume_after: float | None = None


class VendorUnavailableError(VendorError):
    """5xx, timeouts or connection errors left after the retry budget."""

    transient = True


class VendorResponseError(VendorError):
    """The vendor answered 2xx with a body we cannot read."""


class VendorConfigError(VendorError):
    """The request cannot be sent as configured (malformed URL, unsupported scheme, a redirect...)."""

    fatal = True


class CredentialsMissingError(VendorError):
    """A connection lacks a field the chosen authentication needs (nothing was sent).

    :param vendor: ``xoxoday`` or ``capillary``.
    :param message: what is missing, naming the connection id.
    """

    fatal = True

    def __init__(self, vendor: str, message: str) -> None:
        super().__init__(vendor, message)
        self.args = (f"{vendor}: {self.message}",)


def shorten(text: str) -> str:
    """Collapse whitespace and cut ``text`` to a length fit for an error message."""
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"
