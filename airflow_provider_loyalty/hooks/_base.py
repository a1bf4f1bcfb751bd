"""The one "send; if the credential is refused, renew it once and resend" loop both hooks share."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import requests

    from airflow_provider_loyalty.hooks._client import Answer, VendorHTTPClient
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
