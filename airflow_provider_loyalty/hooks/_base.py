"""What both vendor hooks share: construction, client, ``get_conn``, ``close``, and the renewing send.

:class:`VendorHook` is their base; :class:`RenewingSender` is the one "send; if the credential is
refused, renew it once and resend" loop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_loyalty.hooks._auto_rate import RateStore
from airflow_provider_loyalty.hooks._client import DEFAULT_TIMEOUT, VendorHTTPClient
from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock
from airflow_provider_loyalty.hooks._pace import build_pacer
from airflow_provider_loyalty.hooks._retry import RetryPolicy, ThrottleHint

if TYPE_CHECKING:
    import requests

    from airflow_provider_loyalty.hooks._client import Answer
    from airflow_provider_loyalty.hooks._pacing import RequestPacer
    from airflow_provider_loyalty.hooks.errors import VendorError

log = logging.getLogger(__name__)

#: Renews a refused credential (refresh, regenerate); called with the refusing HTTP status.
Renewal = Callable[[int], object]
#: A hook's reversal result (a dataclass with ``after_ambiguous_attempt``).
R = TypeVar("R")
T = TypeVar("T")


class RenewingSender:
    """Mixin of the vendor hooks: sends with the current credential, renews it once when refused.

    Subclasses say which statuses mean "credential refused", how to get the credential (and how
    to renew it, if it can be), and what error a final refusal raises. Whether an earlier attempt
    may have been applied is carried across the resend: the answer after a renewal is still an
    answer to a request that may already have been applied. Getting or renewing the credential is
    a token exchange: its failure never makes the request "may have been applied" by itself.
    """

    #: statuses meaning "this credential is no good" (renew once, then give up).
    rejected_statuses: ClassVar[tuple[int, ...]] = (401,)

    if TYPE_CHECKING:
        pacer: RequestPacer

        @property
        def client(self) -> VendorHTTPClient:
            """The hook's HTTP client."""

    def waited_seconds(self) -> float:
        """Seconds this hook's requests were held back by the vendor's rate-limit windows."""
        return self.pacer.waited_seconds()

    def pace_report(self) -> dict[str, Any]:
        """The pace in force and what ``"auto"`` learned (``mode``, ``pace_per_minute``, ``learned``...)."""
        return self.pacer.pace_report()

    def pace_text(self) -> str:
        """The pace in force, for progress lines."""
        return self.pacer.pace_text()

    def defer_rate_limits_after(self, seconds: float | None) -> None:
        """A vendor window longer than ``seconds`` is handed to the triggerer instead of waited out here."""
        self.pacer.defer_after = seconds

    def _credential(self) -> tuple[requests.auth.AuthBase, Renewal | None]:
        """Return the auth to send with, and how to renew it once refused (``None``: it cannot be)."""
        raise NotImplementedError

    def _credential_refused(self, response: requests.Response, *, renewed: bool) -> VendorError:
        """Return the error for a refusal that renewing did not (or could not) cure.

        :param response: the refusing answer.
        :param renewed: whether the credential had just been renewed.
        """
        raise NotImplementedError

    def _send_authorized(
        self, method: str, path: str, *, json: Any = None, before_send: Callable[[], object] | None = None
    ) -> Answer:
        """Send with the current credential; on a refusal renew it once and send again.

        ``before_send`` is called right before each attempt leaves (see ``VendorHTTPClient.request``).

        :return: the final answer whatever its status, except a credential refusal (raised).
        """
        from airflow_provider_loyalty.hooks._client import Answer
        from airflow_provider_loyalty.hooks.errors import VendorError

        ambiguous = False
        renewed = False
        try:
            while True:
                auth, renew = self._token_step(self._credential)
                answer = self.client.request(method, path, json=json, auth=auth, before_send=before_send)
                ambiguous = ambiguous or answer.after_ambiguous_attempt
                status = answer.response.status_code
                if status not in self.rejected_statuses:
                    return Answer(answer.response, ambiguous)
                if renewed or renew is None:
                    raise self._credential_refused(answer.response, renewed=renewed)
                log.info("%s answered HTTP %d; renewing the credential once", self.client.vendor, status)
                self._token_step(renew, status)
                renewed = True
        except VendorError as exc:
            exc.may_have_been_applied = exc.may_have_been_applied or ambiguous
            raise

    def _token_step(self, step: Callable[..., T], *args: Any) -> T:
        """Run a step that gets or renews the credential; whatever it raises is a token exchange's failure.

        Such a failure says nothing of the reversal request (see
        :mod:`~airflow_provider_loyalty.hooks._token_exchange`): its items are not applied by it.
        """
        from airflow_provider_loyalty.hooks._token_exchange import renewal_failed
        from airflow_provider_loyalty.hooks.errors import VendorError

        try:
            return step(*args)
        except VendorError as exc:
            raise renewal_failed(self.client.vendor, exc) from None
        except Exception as exc:
            log.exception("Getting or renewing the %s credential failed", self.client.vendor)
            raise renewal_failed(self.client.vendor, exc) from None

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        before_send: Callable[[], object] | None,
        read: Callable[[requests.Response], R],
    ) -> R:
        """Send a reversal request (:meth:`_send_authorized`) and ``read`` its final answer.

        Whatever ends the exchange — a refusal, an unreadable answer, a refused renewal — says
        whether an earlier attempt went unanswered (``may_have_been_applied`` on the error,
        ``after_ambiguous_attempt`` on the result): the vendor may have applied that one, so the
        caller keeps the items in doubt instead of taking the last answer for the whole story.
        """
        from airflow_provider_loyalty.hooks.errors import VendorError

        answer = self._send_authorized(method, path, json=json, before_send=before_send)
        try:
            result = read(answer.response)
        except VendorError as exc:
            exc.may_have_been_applied = exc.may_have_been_applied or answer.after_ambiguous_attempt
            raise
        if answer.after_ambiguous_attempt:
            result = dataclasses.replace(result, after_ambiguous_attempt=True)  # type: ignore[type-var]
        return result


class Credentials(Protocol):
    """What a hook's checked connection gives the HTTP client: where the vendor is."""

    @property
    def base_url(self) -> str:
        """Scheme, host and port of the vendor's API."""
        ...


class VendorHook(RenewingSender, BaseHook):
    """Base of the vendor hooks: what both do alike, once.

    The connection id and the HTTP settings (pace, concurrency, timeouts, retries, clock), the
    HTTP client built from the checked connection, ``get_conn`` and ``close``. A vendor's hook says
    which vendor it is (``vendor``), reads and checks its connection (``credentials``, with the
    ``base_url``), resolves everything a request needs before the first one (``prepare``), and
    gets and renews its credential (:class:`RenewingSender`).

    :param conn_id: the connection id.
    :param max_requests_per_minute: request rate for this hook's threads (``None``: unlimited), or
        ``"auto"``: find the vendor's limit and hold just under it, starting from what earlier runs
        of this connection learned (see :mod:`airflow_provider_loyalty.hooks._auto_rate`).
    :param max_concurrency: requests in flight at once (``None``: unbounded).
    :param max_requests_per_minute_cap: never pace above this (requests per minute).
    :param rate_store: where ``"auto"`` keeps what it learned; an Airflow Variable by default.
    :param rate_limit_timeout: seconds one request may be held back by the vendor's rate-limit
        answers before the task gives up (its items are left not sent); 600 by default.
    :param rate_budget_conn_id: a ``redis`` or ``postgres`` connection holding the vendor key's
        budget shared by every task (slots, penalty window, learned rate); ``None``: this task alone.
    :param timeout: ``(connect, read)`` timeouts in seconds.
    :param retry_policy: retry rules of the HTTP layer.
    :param clock: time source (tests inject a fake one).
    """

    #: the vendor's name (``xoxoday``, ``capillary``): errors, logs, metrics, the pace's key.
    vendor: ClassVar[str] = ""

    def __init__(
        self,
        conn_id: str,
        *,
        max_requests_per_minute: float | str | None = None,
        max_concurrency: int | None = None,
        max_requests_per_minute_cap: float | None = None,
        rate_store: RateStore | None = None,
        rate_limit_timeout: float | None = None,
        rate_budget_conn_id: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self.clock = clock
        self.pacer = build_pacer(
            self.vendor,
            conn_id,
            max_requests_per_minute,
            max_concurrency,
            cap=max_requests_per_minute_cap,
            store=rate_store,
            clock=clock,
            rate_limit_timeout=rate_limit_timeout,
        )
        self.rate_budget_conn_id = rate_budget_conn_id

    @property
    def credentials(self) -> Credentials:
        """The connection's fields, checked (each hook reads its own)."""
        raise NotImplementedError

    def throttle_hint(self) -> ThrottleHint | None:
        """How to read a vendor-specific rate-limit wait from an answer of any status (``None``: none)."""
        return None

    def rate_key_identity(self) -> str:
        """Who the vendor counts requests against, for the budget key (each hook names its client id or till)."""
        return self.conn_id

    @cached_property
    def client(self) -> VendorHTTPClient:
        """The HTTP client (session, retries, pacing) of this hook; joins the key's shared budget if one is set."""
        if self.rate_budget_conn_id:
            from airflow_provider_loyalty.coordination.budget import budget_key, open_budget

            key = budget_key(self.vendor, self.credentials.base_url, self.rate_key_identity())
            self.pacer.share(open_budget(self.rate_budget_conn_id, key))
        return VendorHTTPClient(
            self.vendor,
            self.credentials.base_url,
            timeout=self.timeout,
            retry_policy=self.retry_policy,
            pacer=self.pacer,
            throttle_hint=self.throttle_hint(),
            clock=self.clock,
        )

    def get_conn(self) -> VendorHTTPClient:
        """Return the HTTP client."""
        return self.client

    def prepare(self) -> None:
        """Resolve connection, client and credential now (in the calling thread), not in the senders.

        Refused credentials stop the task here, before any reversal request.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled connections and the shared budget; store what ``max_requests_per_minute="auto"`` learned."""
        self.pacer.close()
        if "client" in self.__dict__:
            self.client.close()
