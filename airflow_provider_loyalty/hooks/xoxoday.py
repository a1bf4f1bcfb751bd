"""Xoxoday Plum: bearer auth with a rotating refresh token, and the cancel points call."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

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
from airflow_provider_loyalty.hooks._retry import RetryPolicy, ThrottleHint
from airflow_provider_loyalty.hooks._token_store import (
    REFRESH_MARGIN_SECONDS,
    TokenPair,
    TokenStore,
    VariableTokenStore,
    fingerprint,
    newer_stored_pair,
)
from airflow_provider_loyalty.hooks._urls import allows_http, base_url, url_path
from airflow_provider_loyalty.hooks.errors import (
    CredentialsMissingError,
    VendorAuthError,
    VendorConfigError,
    VendorError,
    VendorRequestError,
    VendorResponseError,
)
from airflow_provider_loyalty.hooks.xoxoday_answers import interpret_cancel
from airflow_provider_loyalty.items import PointItem, point_items
from airflow_provider_loyalty.vendors import XOXODAY

if TYPE_CHECKING:
    from airflow_provider_loyalty.models import CancelPointsResult

VENDOR = XOXODAY.name
DEFAULT_HOST = XOXODAY.default_host
DEFAULT_API_PATH = "/chef/v1/oauth/api"
DEFAULT_TOKEN_PATH = "/chef/v1/oauth/token/company"  # noqa: S105 - a URL path
RATE_LIMIT_MESSAGE = "auth.request_limit_exceeded"
#: OAuth error codes of the refresh endpoint meaning "client_id/client_secret refused" (RFC 6749 5.2).
CLIENT_REFUSED = frozenset({"invalid_client", "unauthorized_client"})
#: Fields of a token answer that hold a token (masked in the logs even when the answer is unreadable).
SECRETS = ("access_token", "refresh_token")


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``; the token never appears in ``repr``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sign ``request``."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


@dataclass(frozen=True)
class XoxodayCredentials:
    """What a ``xoxoday`` connection holds, validated."""

    base_url: str
    client_id: str
    client_secret: str
    access_token: str | None
    refresh_token: str | None
    api_path: str
    token_path: str

    def __repr__(self) -> str:
        return f"XoxodayCredentials(base_url={self.base_url!r}, client_id={self.client_id!r})"

    @property
    def validate_path(self) -> str:
        """``GET`` token validation path: the parent of the refresh path (``/chef/v1/oauth/token``)."""
        return self.token_path.rsplit("/", 1)[0] or self.token_path


def penalty_seconds(response: requests.Response) -> float | None:
    """Read Xoxoday's rate-limit answer (``auth.request_limit_exceeded``), whatever its status."""
    if response.status_code < 400 and b"request_limit" not in response.content[:500]:
        return None  # fast path: a normal answer
    from pydantic import ValidationError

    from airflow_provider_loyalty.models import XoxodayErrorBody

    try:
        body = XoxodayErrorBody.model_validate(response.json())
    except (ValueError, ValidationError):
        return None
    for error in body.errors or ():
        if error.message == RATE_LIMIT_MESSAGE:
            return max(0.0, error.penaltySeconds if error.penaltySeconds is not None else 60.0)
    return None


class XoxodayHook(VendorHook):
    """Talks to Xoxoday Plum's points API with a rotating bearer token pair.

    Connection: ``host`` = base URL, ``login`` = client_id, ``password`` = client_secret, extras
    ``access_token`` and ``refresh_token`` (the first pair, from the dashboard), optional
    ``api_path`` and ``refresh_path`` (``token_path`` is read too). On a 401 the hook refreshes once and retries; the rotated
    pair is persisted (see :mod:`airflow_provider_loyalty.hooks._token_store`) and preferred over the
    connection's extras from then on.

    :param xoxoday_conn_id: connection id.
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
    :param token_store: where rotated pairs live; an Airflow Variable by default.
    :param clock: time source (tests inject a fake one).
    """

    vendor = VENDOR
    conn_name_attr = "xoxoday_conn_id"
    default_conn_name = "xoxoday_default"
    conn_type = "xoxoday"
    hook_name = "Xoxoday Plum"

    def __init__(
        self,
        xoxoday_conn_id: str = default_conn_name,
        *,
        max_requests_per_minute: float | str | None = None,
        max_concurrency: int | None = None,
        max_requests_per_minute_cap: float | None = None,
        rate_store: RateStore | None = None,
        rate_limit_timeout: float | None = None,
        rate_budget_conn_id: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        token_store: TokenStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(
            xoxoday_conn_id,
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
        self.xoxoday_conn_id = xoxoday_conn_id
        self.token_store: TokenStore = token_store or VariableTokenStore(xoxoday_conn_id)
        self._pair: TokenPair | None = None
        self._token_lock = threading.Lock()
        self.refreshes = 0

    # ------------------------------------------------------------------------------ connection
    @cached_property
    def credentials(self) -> XoxodayCredentials:
        """The connection's fields, checked; raises :class:`CredentialsMissingError` naming what is missing."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.xoxoday_conn_id)
        extra = conn.extra_dejson
        if conn.password:
            mask_secret(conn.password)
        access_token = _token(extra, "access_token", self.xoxoday_conn_id)
        refresh_token = _token(extra, "refresh_token", self.xoxoday_conn_id)
        missing = [
            name
            for name, value in (("login (client_id)", conn.login), ("password (client_secret)", conn.password))
            if not value
        ]
        if not access_token and not refresh_token:
            missing.append("extra access_token or refresh_token")
        if missing:
            raise CredentialsMissingError(
                VENDOR, f"Connection {self.xoxoday_conn_id!r} (xoxoday) lacks: {', '.join(missing)}"
            )
        return XoxodayCredentials(
            base_url=base_url(
                conn.host, conn.port, DEFAULT_HOST, XOXODAY.paths, vendor=VENDOR, allow_http=allows_http(extra, VENDOR)
            ),
            client_id=str(conn.login),
            client_secret=str(conn.password),
            access_token=access_token,
            refresh_token=refresh_token,
            api_path=url_path(_unmasked(extra.get("api_path")), DEFAULT_API_PATH),
            token_path=url_path(
                _unmasked(extra.get("refresh_path")) or _unmasked(extra.get("token_path")), DEFAULT_TOKEN_PATH
            ),
        )

    def throttle_hint(self) -> ThrottleHint:
        """Xoxoday's rate-limit answer (``auth.request_limit_exceeded``) comes with any status."""
        return penalty_seconds

    def rate_key_identity(self) -> str:
        """Who the vendor counts requests against (the budget key's identity; never the secret)."""
        return self.credentials.client_id

    def prepare(self) -> None:
        """Resolve connection, client and the token pair now (in the calling thread), not in senders."""
        _ = self.client
        self._current_pair()

    # ------------------------------------------------------------------------------- tokens
    def _initial_pair(self) -> TokenPair:
        creds = self.credentials
        origin = fingerprint(creds.refresh_token)
        stored = self.token_store.load()
        if stored is not None and (stored.origin == origin or creds.refresh_token is None):
            stored.mask()
            self.log.debug("Using the stored Xoxoday token pair (descends from the connection's)")
            return stored
        if stored is not None:
            self.log.info("The connection holds a new Xoxoday token pair; it replaces the stored one")
        return TokenPair(creds.access_token or "", creds.refresh_token, origin=origin)

    def _current_pair(self) -> TokenPair:
        with self._token_lock:
            if self._pair is None:
                self._pair = self._initial_pair()
            return self._pair

    def access_token(self) -> tuple[str, TokenPair]:
        """Return a usable access token (refreshing it first when missing or about to expire)."""
        pair = self._current_pair()
        due = pair.refresh_after
        if due is None and pair.access_token_expiry is not None:
            due = pair.access_token_expiry - REFRESH_MARGIN_SECONDS
        if not pair.access_token or (due is not None and self.clock.time() >= due):
            pair = self.refresh(pair)
        return pair.access_token, pair

    def refresh(self, stale: TokenPair) -> TokenPair:
        """Exchange ``stale``'s refresh token for a new pair, persist it and return it.

        Threads of one hook refresh once: whoever comes second finds a newer pair and uses it.
        Another task may have rotated the pair already: the store is read first, and again after a
        refusal (for a short while, in case that task is still saving it); a newer stored pair is
        used instead of spending a refresh token.

        :param stale: the pair whose access token was refused or is expiring.
        """
        from pydantic import ValidationError

        from airflow_provider_loyalty.models import XoxodayRefreshRequest, XoxodayTokenResponse

        with self._token_lock:
            if self._pair is not None and self._pair is not stale:
                return self._pair  # another thread refreshed meanwhile
            newer = newer_stored_pair(self.token_store, stale)
            if newer is not None:
                self.log.info("Another task rotated the Xoxoday token pair; using the stored one")
                self._pair = newer
                return newer
            creds = self.credentials
            if not stale.refresh_token:
                raise VendorAuthError(
                    VENDOR,
                    f"no refresh token for connection {self.xoxoday_conn_id!r}; "
                    "add extra refresh_token from the Xoxoday dashboard",
                    token_exchange=True,
                )
            body = XoxodayRefreshRequest(
                refresh_token=stale.refresh_token, client_id=creds.client_id, client_secret=creds.client_secret
            ).model_dump()
            what = "Xoxoday token refresh"
            response = token_exchange.send(self.client, "POST", creds.token_path, what, json=body)
            if response.ok:
                answer = token_exchange.json_of(VENDOR, what, response, SECRETS)
                try:
                    token = XoxodayTokenResponse.model_validate(answer)
                    token_exchange.usable_token(VENDOR, what, response, "access_token", token.access_token)
                except ValidationError as exc:
                    self._keep_rotation(stale, answer)
                    raise token_exchange.unreadable(VENDOR, what, response, token_exchange.fields(exc)) from None
                except VendorResponseError:
                    self._keep_rotation(stale, answer)
                    raise
                pair = stale.rotated(token, now=self.clock.time())
                pair.mask()
                self._pair = pair  # in use at once, even if storing it fails below
                self.refreshes += 1
                self.token_store.save(pair)
                self.log.info("Refreshed the Xoxoday access token; the rotated pair is stored")
                return pair
            # The refusal's body is never quoted (see _token_exchange): its code only, if it looks like one.
            code = token_exchange.safe_code(_error_code(response))
            if code in CLIENT_REFUSED:
                # The client id/secret are wrong: no other task's rotation can fix that, so don't wait
                # for one, and don't blame the refresh token.
                raise VendorAuthError(
                    VENDOR,
                    f"Xoxoday refused the client credentials ({code}): check login (client_id) and "
                    f"password (client_secret) of connection {self.xoxoday_conn_id!r}",
                    status_code=response.status_code,
                    code=code,
                    token_exchange=True,
                )
            newer = self._await_newer_stored_pair(stale)
            if newer is not None:
                self.log.info("Xoxoday refused the refresh; another task had rotated the pair: using the stored one")
                self._pair = newer
                return newer
            raise VendorAuthError(
                VENDOR,
                f"token refresh refused (HTTP {response.status_code}); the refresh token was used or has "
                f"expired: put a new pair from the Xoxoday dashboard into connection {self.xoxoday_conn_id!r}",
                status_code=response.status_code,
                code=code,
                token_exchange=True,
            )

    def _keep_rotation(self, stale: TokenPair, answer: Any) -> None:
        """Keep the new refresh token of a refresh answer that cannot be used otherwise.

        Xoxoday rotated the pair when it answered 200, and the old refresh token died at once: an
        answer refused for another field (or for an access token no header can carry) still holds
        the only refresh token that works. Kept (in use, and stored) with no access token, the next
        attempt refreshes with it instead of failing until a new pair is pasted into the connection.
        """
        refresh = answer.get("refresh_token") if isinstance(answer, dict) else None
        if not isinstance(refresh, str) or not token_exchange.TOKEN_CHARS.fullmatch(refresh):
            return
        if refresh == stale.refresh_token:
            return
        pair = TokenPair("", refresh, origin=stale.origin)
        pair.mask()
        self._pair = pair
        try:
            self.token_store.save(pair)
        except Exception as exc:  # noqa: BLE001 - the refresh's own failure is what the task reports
            self.log.error("Could not store the rotated Xoxoday refresh token (%s)", type(exc).__name__)
            return
        self.log.warning(
            "Xoxoday's refresh answer could not be used, but it rotated the pair: its new refresh token is "
            "stored for the next attempt"
        )

    def _await_newer_stored_pair(self, stale: TokenPair, attempts: int = 4, pause: float = 1.0) -> TokenPair | None:
        """A pair another task may still be saving: look a few times before giving up."""
        for attempt in range(attempts):
            newer = newer_stored_pair(self.token_store, stale)
            if newer is not None:
                return newer
            if attempt < attempts - 1:
                self.clock.sleep(pause)
        return None

    # ------------------------------------------------------------------------------ requests
    def _credential(self) -> tuple[requests.auth.AuthBase, Renewal | None]:
        token, pair = self.access_token()
        return BearerAuth(token), lambda status: self.refresh(pair)

    def _credential_refused(self, response: requests.Response, *, renewed: bool) -> VendorError:
        return VendorAuthError(
            VENDOR,
            "access token refused right after a refresh",
            status_code=response.status_code,
            code=_error_code(response),
            response=response,
        )

    def cancel_points(
        self, unique_ids: Sequence[PointItem | int], *, before_send: Callable[[], object] | None = None
    ) -> CancelPointsResult:
        """Cancel points issuances in one request.

        :param unique_ids: :class:`~airflow_provider_loyalty.items.PointItem` (as the operator
            batches them) or ids, judged by the same rules as the operator's input
            (:mod:`airflow_provider_loyalty.items`); the caller batches them (at most 500).
        :param before_send: called right before the request (and each resend) leaves.
        :return: one :class:`~airflow_provider_loyalty.outcomes.Outcome` per id, in request order:
            succeeded, failed ``refused`` (permanent), or transient ``unknown`` when the answer did
            not clearly settle it.
        :raises ValueError: an id is invalid or given twice (nothing is sent).
        """
        from pydantic import ValidationError

        from airflow_provider_loyalty.models import CancelPointsRequest, CancelPointsResponse, cancel_points_body

        items = point_items(unique_ids)
        body = cancel_points_body([item.unique_id for item in items])
        CancelPointsRequest.model_validate(body)  # what we send validates against the published schema

        def read(response: requests.Response) -> CancelPointsResult:
            if not response.ok:
                raise VendorRequestError(
                    VENDOR,
                    response_snippet(response),
                    status_code=response.status_code,
                    code=_error_code(response),
                    response=response,
                )
            try:
                parsed = CancelPointsResponse.model_validate(reversal_body(VENDOR, response))
            except ValidationError:
                raise VendorResponseError(
                    VENDOR, f"unreadable cancel answer: {response_snippet(response)}", status_code=response.status_code
                ) from None
            balance = parsed.data.cancelBalance if parsed.data else None
            if balance is None:
                raise VendorResponseError(
                    VENDOR,
                    f"cancel answer lacks data.cancelBalance: {response_snippet(response)}",
                    status_code=response.status_code,
                )
            return interpret_cancel(items, balance)

        return self._exchange("POST", self.credentials.api_path, json=body, before_send=before_send, read=read)

    def validate_token(self) -> dict[str, Any]:
        """Ask Xoxoday whether the current access token is valid (``GET /chef/v1/oauth/token``).

        Never refreshes: a refresh outside a task could not be persisted. Returns the token's
        expiry fields (no token).
        """
        token = self._current_pair().access_token
        if not token:
            raise VendorAuthError(VENDOR, "no access token in the connection or the stored pair", token_exchange=True)
        what = "Xoxoday token validation"
        response = token_exchange.send(
            self.client, "GET", self.credentials.validate_path, what, auth=BearerAuth(token), max_attempts=2
        )
        if response.status_code == 401:
            raise VendorAuthError(
                VENDOR,
                "access token refused (expired or revoked); the next task run refreshes it",
                status_code=401,
                token_exchange=True,
            )
        if not response.ok:
            code = token_exchange.safe_code(_error_code(response))
            raise VendorRequestError(
                VENDOR, f"{what} failed", status_code=response.status_code, code=code, token_exchange=True
            )
        body = token_exchange.json_of(VENDOR, what, response, SECRETS)
        if not isinstance(body, dict):
            raise token_exchange.unreadable(VENDOR, what, response, "not a JSON object")
        return {k: body.get(k) for k in ("token_type", "expires_in", "access_token_expiry", "refresh_token_expiry")}

    def test_connection(self) -> tuple[bool, str]:
        """Validate the token without side effects; report clearly (used by the UI's Test button)."""
        try:
            info = self.validate_token()
        except (VendorError, CredentialsMissingError) as exc:
            return False, str(exc)
        except Exception as exc:  # an unforeseen error's text may quote a header: name its type only
            self.log.exception("Testing connection %r failed", self.xoxoday_conn_id)
            return False, f"{type(exc).__name__} testing the Xoxoday connection (see the log)"
        return True, f"Xoxoday token is valid (expires_in={info.get('expires_in')})"


def _token(extra: dict[str, Any], name: str, conn_id: str) -> str | None:
    """A token from the connection's extra, surrounding blanks dropped (a pasted trailing newline).

    :raises VendorConfigError: not text, or holding a character no token has; the message names the
        field and the connection, never the value.
    """
    from airflow.sdk.log import mask_secret

    value = extra.get(name)
    if value is None or value == "":
        return None
    mask_secret(str(value))  # as written too: a message may quote the raw form
    if not isinstance(value, str):
        raise VendorConfigError(
            VENDOR, f"Connection {conn_id!r} (xoxoday): extra {name} must be a string, got a {type(value).__name__}"
        )
    token = value.strip()
    if token and not token_exchange.TOKEN_CHARS.fullmatch(token):
        raise VendorConfigError(
            VENDOR,
            f"Connection {conn_id!r} (xoxoday): extra {name} holds a character no token has "
            "(a space, a line break or a non-ASCII character inside it?); paste the token alone",
        )
    if token:
        mask_secret(token)
    return token or None


def _unmasked(value: object) -> object:
    """Treat the UI's redaction placeholder as unset (a form saved unchanged may store ``***``)."""
    return None if isinstance(value, str) and value.strip() == "***" else value


def _error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        for key in ("error", "code"):
            if isinstance(body.get(key), str):
                return body[key]
    return None
