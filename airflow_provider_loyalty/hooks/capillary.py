"""Capillary: md5 Basic or OAuth authentication, and the revokeEarn call."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import requests

from airflow_provider_loyalty.hooks import _token_exchange as token_exchange
from airflow_provider_loyalty.hooks._auto_rate import RateStore
from airflow_provider_loyalty.hooks._base import Renewal, VendorHook
from airflow_provider_loyalty.hooks._client import (
    DEFAULT_TIMEOUT,
    response_snippet,
    reversal_body,
)
from airflow_provider_loyalty.hooks._clock import SYSTEM_CLOCK, Clock
from airflow_provider_loyalty.hooks._retry import RetryPolicy
from airflow_provider_loyalty.hooks._urls import allows_http, base_url, url_path
from airflow_provider_loyalty.hooks.capillary_answers import interpret_revoke
from airflow_provider_loyalty.hooks.errors import (
    CredentialsMissingError,
    VendorAuthError,
    VendorError,
    VendorRequestError,
    VendorResponseError,
)
from airflow_provider_loyalty.items import EarnItem, earn_items
from airflow_provider_loyalty.vendors import CAPILLARY

if TYPE_CHECKING:
    from airflow_provider_loyalty.models import RevokeEarnResult

VENDOR = CAPILLARY.name
REVOKE_PATH = "/api_gateway/v1/promotions/revokeEarn"
TOKEN_PATH = "/v3/oauth/token/generate"  # noqa: S105 - a URL path
OAUTH_HEADER = "X-CAP-API-OAUTH-TOKEN"
#: Status codes meaning "this token is no good": regenerate it once (498: Capillary's expired token).
TOKEN_REJECTED = (401, 498)
AuthType = Literal["basic", "oauth"]


class CapillaryBasicAuth(requests.auth.AuthBase):
    """``Authorization: Basic base64(till:md5(password))`` — Capillary hashes the password first."""

    def __init__(self, till: str, password: str) -> None:
        from airflow.sdk.log import mask_secret

        digest = hashlib.md5(password.encode()).hexdigest()  # noqa: S324 - the vendor's scheme, not our choice
        credentials = base64.b64encode(f"{till}:{digest}".encode()).decode()
        mask_secret(digest)  # the hash is as good as the password at Capillary
        mask_secret(credentials)
        self._header = f"Basic {credentials}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sign ``request``."""
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "CapillaryBasicAuth(***)"


class CapillaryOAuthToken(requests.auth.AuthBase):
    """``X-CAP-API-OAUTH-TOKEN: <token>``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sign ``request``."""
        request.headers[OAUTH_HEADER] = self._token
        return request

    def __repr__(self) -> str:
        return "CapillaryOAuthToken(***)"


@dataclass(frozen=True)
class CapillaryCredentials:
    """What a ``capillary`` connection holds, validated."""

    base_url: str
    auth_type: AuthType
    login: str
    password: str
    revoke_path: str

    def __repr__(self) -> str:
        return f"CapillaryCredentials(base_url={self.base_url!r}, auth_type={self.auth_type!r}, login={self.login!r})"


class CapillaryHook(VendorHook):
    """Talks to Capillary's promotions API.

    Connection: ``host`` = cluster base URL (``https://eu.api.capillarytech.com``); with extra
    ``auth_type`` ``basic`` (default) ``login``/``password`` are the till id and its password (sent
    md5-hashed), with ``oauth`` they are the OAuth client key and secret. An OAuth token is reused
    until shortly before ``ttlSeconds`` and regenerated once on 401/498.

    :param capillary_conn_id: connection id.
    :param max_requests_per_minute: request rate for this hook's threads (``None``: unlimited), or
        ``"auto"``: find the vendor's limit and hold just under it, starting from what earlier runs
        of this connection learned (see :mod:`airflow_provider_loyalty.hooks._auto_rate`).
    :param max_requests_per_minute_cap: never pace above this (requests per minute).
    :param rate_store: where ``"auto"`` keeps what it learned; an Airflow Variable by default.
    :param rate_limit_timeout: seconds one request may be held back by the vendor's rate-limit
        answers before the task gives up (its items are left not sent); 600 by default.
    :param max_concurrency: requests in flight at once (``None``: unbounded).
    :param timeout: ``(connect, read)`` timeouts in seconds.
    :param retry_policy: retry rules of the HTTP layer.
    :param clock: time source (tests inject a fake one).
    """

    vendor = VENDOR
    conn_name_attr = "capillary_conn_id"
    default_conn_name = "capillary_default"
    conn_type = "capillary"
    rejected_statuses = TOKEN_REJECTED
    hook_name = "Capillary"

    def __init__(
        self,
        capillary_conn_id: str = default_conn_name,
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
        super().__init__(
            capillary_conn_id,
            max_requests_per_minute=max_requests_per_minute,
            max_concurrency=max_concurrency,
            max_requests_per_minute_cap=max_requests_per_minute_cap,
            rate_store=rate_store,
            timeout=timeout,
            retry_policy=retry_policy,
            clock=clock,
            rate_limit_timeout=rate_limit_timeout,
            rate_budget_conn_id=rate_budget_conn_id,
        )
        self.capillary_conn_id = capillary_conn_id
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = threading.Lock()
        self.tokens_generated = 0

    @cached_property
    def credentials(self) -> CapillaryCredentials:
        """The connection's fields, checked; raises :class:`CredentialsMissingError` naming what is missing."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.capillary_conn_id)
        extra = conn.extra_dejson
        auth_type = str(extra.get("auth_type") or "basic").strip().lower()
        if auth_type not in ("basic", "oauth"):
            raise CredentialsMissingError(
                VENDOR,
                f"Connection {self.capillary_conn_id!r}: extra auth_type must be 'basic' or 'oauth', got {auth_type!r}",
            )
        names = ("till id", "till password") if auth_type == "basic" else ("OAuth client key", "OAuth client secret")
        missing = [
            f"{field} ({name})"
            for field, name, value in (("login", names[0], conn.login), ("password", names[1], conn.password))
            if not value
        ]
        if not conn.host:
            missing.insert(0, "host (cluster base URL, e.g. https://eu.api.capillarytech.com)")
        if missing:
            raise CredentialsMissingError(
                VENDOR, f"Connection {self.capillary_conn_id!r} (capillary) lacks: {', '.join(missing)}"
            )
        mask_secret(conn.password)
        return CapillaryCredentials(
            base_url=base_url(
                conn.host,
                conn.port,
                CAPILLARY.default_host,
                CAPILLARY.paths,
                vendor=VENDOR,
                allow_http=allows_http(extra, VENDOR),
            ),
            auth_type=auth_type,  # type: ignore[arg-type]
            login=str(conn.login),
            password=str(conn.password),
            revoke_path=url_path(extra.get("revoke_path"), REVOKE_PATH),
        )

    @cached_property
    def _basic_auth(self) -> CapillaryBasicAuth:
        return CapillaryBasicAuth(self.credentials.login, self.credentials.password)

    def rate_key_identity(self) -> str:
        """Who the vendor counts requests against (the budget key's identity; never the secret)."""
        return self.credentials.login

    def prepare(self) -> None:
        """Resolve connection, client and auth now (in the calling thread), not in the senders.

        With OAuth this generates the token, so refused credentials stop the task before any revoke.
        """
        _ = self.client
        self._auth()

    # --------------------------------------------------------------------------------- auth
    def oauth_token(self, *, force: bool = False, rejected: str | None = None) -> str:
        """Return a valid OAuth token, generating one when absent, near expiry, or ``rejected``.

        :param force: generate a new token even if the cached one looks valid.
        :param rejected: the token the vendor just refused; another thread may have replaced it.
        """
        from airflow.sdk.log import mask_secret
        from pydantic import ValidationError

        from airflow_provider_loyalty.models import CapillaryTokenRequest, CapillaryTokenResponse

        with self._token_lock:
            if self._token and rejected is not None and self._token != rejected:
                return self._token  # another thread already regenerated it
            if self._token and not force and rejected is None and self.clock.time() < self._token_expires_at:
                return self._token
            creds = self.credentials
            body = CapillaryTokenRequest(key=creds.login, secret=creds.password).model_dump()
            what = "Capillary OAuth token generation"
            response = token_exchange.send(self.client, "POST", TOKEN_PATH, what, json=body)
            # 5xx and rate limits were retried by the client; a final refusal is the key/secret's
            # fault (or the host's): fatal, no Airflow retry can fix it. Its body is never quoted
            # (see _token_exchange), a readable one included.
            refused = f"OAuth key/secret of connection {self.capillary_conn_id!r} refused by token generation"
            if not response.ok:
                code = token_exchange.safe_code(_first_error(response)[0])
                raise VendorAuthError(VENDOR, refused, status_code=response.status_code, code=code, token_exchange=True)
            try:
                parsed = CapillaryTokenResponse.model_validate(
                    token_exchange.json_of(VENDOR, what, response, ("accessToken",))
                )
            except ValidationError as exc:
                raise token_exchange.unreadable(VENDOR, what, response, token_exchange.fields(exc)) from None
            if parsed.data is None:
                refusal = next(iter(parsed.errors), None)
                if refusal is not None:  # a 200 carrying errors[] and no token is a refusal too
                    raise VendorAuthError(
                        VENDOR,
                        f"{refused}: no token issued",
                        status_code=response.status_code,
                        code=token_exchange.safe_code(refusal.code),
                        token_exchange=True,
                    )
                raise token_exchange.unreadable(VENDOR, what, response, "no data.accessToken")
            token = token_exchange.usable_token(VENDOR, what, response, "data.accessToken", parsed.data.accessToken)
            mask_secret(token)
            ttl = parsed.data.ttlSeconds or 3600.0
            # renew before expiry: 10% of the lifetime, at least 5 s, at most 5 min early
            self._token_expires_at = self.clock.time() + ttl - min(300.0, max(5.0, ttl * 0.1))
            self._token = token
            self.tokens_generated += 1
            return token

    def _auth(self) -> requests.auth.AuthBase:
        return self._credential()[0]

    def _credential(self) -> tuple[requests.auth.AuthBase, Renewal | None]:
        if self.credentials.auth_type == "basic":
            return self._basic_auth, None  # a till password cannot be renewed
        token = self.oauth_token()
        return CapillaryOAuthToken(token), lambda status: self.oauth_token(rejected=token)

    def _credential_refused(self, response: requests.Response, *, renewed: bool) -> VendorError:
        code, message = _first_error(response)
        what = "till id/password" if self.credentials.auth_type == "basic" else "a freshly generated OAuth token"
        return VendorAuthError(
            VENDOR,
            f"{what} of connection {self.capillary_conn_id!r} refused: {message}",
            status_code=response.status_code,
            code=code,
            response=response,
        )

    # ------------------------------------------------------------------------------ revoke
    def revoke_earn(
        self,
        customer_id: int,
        details: Sequence[EarnItem] | Mapping[str, Sequence[str]],
        *,
        before_send: Callable[[], object] | None = None,
    ) -> RevokeEarnResult:
        """Revoke a customer's cart-promotion earns in one request.

        :param customer_id: the customer's Capillary id.
        :param details: the earns: :class:`~airflow_provider_loyalty.items.EarnItem` of this
            customer (as the operator plans them), or ``{promotion_id: [earn_id, ...]}``; judged by
            the same rules as the operator's input (:mod:`airflow_provider_loyalty.items`), at most
            1000 earn ids in all (checked before sending).
        :param before_send: called right before the request (and each resend) leaves.
        :return: one :class:`~airflow_provider_loyalty.outcomes.Outcome` per earn, in order:
            succeeded, failed (the vendor's code; ``rejected`` when the whole request was refused),
            or transient ``unknown`` when the answer did not clearly settle it.
        :raises ValueError: the request would be invalid (nothing is sent).
        """
        from pydantic import ValidationError

        from airflow_provider_loyalty.models import EarnRevokeDetail, RevokeEarnRequest, RevokeEarnResponse

        items = earn_items(customer_id, details)
        grouped: dict[str, list[str]] = {}
        for item in items:
            grouped.setdefault(item.promotion_id, []).append(item.earn_id)
        try:
            request = RevokeEarnRequest(
                customerId=items[0].customer_id,
                earnRevokeDetails=[EarnRevokeDetail(promotionId=p, earnIds=e) for p, e in grouped.items()],
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            raise ValueError(f"invalid revokeEarn request for customer {customer_id!r}: {problems}") from None

        def read(response: requests.Response) -> RevokeEarnResult:
            if not response.ok:
                code, message = _first_error(response)
                raise VendorRequestError(
                    VENDOR, message, status_code=response.status_code, code=code, response=response
                )
            try:
                parsed = RevokeEarnResponse.model_validate(reversal_body(VENDOR, response))
            except ValidationError:
                raise VendorResponseError(
                    VENDOR,
                    f"unreadable revokeEarn answer: {response_snippet(response)}",
                    status_code=response.status_code,
                ) from None
            return interpret_revoke(items, parsed)

        return self._exchange(
            "POST", self.credentials.revoke_path, json=request.model_dump(), before_send=before_send, read=read
        )

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials without side effects (used by the UI's Test button).

        OAuth: generate a token. Basic: send a revokeEarn request that names no earn (Capillary
        rejects its body after authenticating it): 400 proves the credentials, 401 refutes them.
        """
        try:
            if self.credentials.auth_type == "oauth":
                self.oauth_token(force=True)
                return True, "Capillary OAuth token generated"
            response = self.client.request(
                "POST",
                self.credentials.revoke_path,
                json={"customerId": 0, "earnRevokeDetails": []},
                auth=self._basic_auth,
                max_attempts=2,
            ).response
        except (VendorError, CredentialsMissingError) as exc:
            return False, str(exc)
        except Exception as exc:  # an unforeseen error's text may quote a header: name its type only
            self.log.exception("Testing connection %r failed", self.capillary_conn_id)
            return False, f"{type(exc).__name__} testing the Capillary connection (see the log)"
        if response.status_code in TOKEN_REJECTED:
            return False, (
                f"Capillary refused the till id/password of connection {self.capillary_conn_id!r} "
                f"(HTTP {response.status_code})"
            )
        if response.status_code in (400, 200):
            return True, "Capillary accepted the till credentials"
        return False, f"Unexpected answer from Capillary: HTTP {response.status_code}"


def _first_error(response: requests.Response) -> tuple[str | None, str]:
    """Return the first ``(code, message)`` of a Capillary error body, or a snippet of it."""
    try:
        body = response.json()
    except ValueError:
        return None, response_snippet(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("code")
        return (str(code) if code is not None else None), str(first.get("message") or response_snippet(response))
    return None, response_snippet(response)
