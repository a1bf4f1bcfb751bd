"""Token and auth exchanges (Capillary's OAuth generation, Xoxoday's refresh and validation): their errors.

Two rules hold for every such exchange (DESIGN, "A verdict is about the items"):

- Its failure says nothing of a reversal. Whether a reversal request may have been applied is
  decided by that request's own exchange; a token exchange that failed while renewing a refused
  credential leaves the reversal's items not sent (``token_exchange`` on the error), unless an
  earlier attempt of the reversal itself went unanswered.
- Its answer is never quoted, whatever its shape: a body the model cannot read may still hold a live
  token (unmasked: the token was never read, so never registered with the log masker). Messages name
  the HTTP status, the vendor's error code when it looks like one, and which field was wrong — never
  a value, never the vendor's message. A pydantic ``ValidationError`` quotes the input, so only the
  location and type of each error are kept.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.hooks.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimitError,
    VendorResponseError,
)

if TYPE_CHECKING:
    import requests
    from pydantic import ValidationError

    from airflow_provider_loyalty.hooks._client import VendorHTTPClient

#: What a vendor's error code looks like (``invalid_grant``, ``auth.expired``, ``1401``); anything
#: else in that field is not repeated (it could be anything, a token included).
_CODE = re.compile(r"[a-z]+(?:[_.][a-z]+)*|\d{1,6}")
_MAX_CODE_CHARS = 40
#: A model's field name (a location part that is not from the input).
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}")
_MEDIA_TYPE = re.compile(r"[a-z]+/[a-z0-9.+-]{1,40}")
#: What a token sent in a request header may hold: visible ASCII, no blank (RFC 6750's ``b64token``
#: is a subset). Anything else the HTTP layer refuses only once the request is being sent, quoting
#: the header — the token — in its error.
TOKEN_CHARS = re.compile(r"[!-~]+")


def safe_code(code: object) -> str | None:
    """The vendor's error code of a token answer if it looks like a code, else ``None``."""
    text = str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else ""
    return text if len(text) <= _MAX_CODE_CHARS and _CODE.fullmatch(text) else None


def send(
    client: VendorHTTPClient,
    method: str,
    path: str,
    what: str,
    *,
    json: Any = None,
    auth: requests.auth.AuthBase | None = None,
    max_attempts: int | None = None,
) -> requests.Response:
    """Send a token exchange; what the HTTP layer gives up with is re-raised without the answer's body.

    :param what: the exchange, for messages (``"Capillary OAuth token generation"``).
    :return: the final answer, whatever its status.
    """
    try:
        return client.request(method, path, json=json, auth=auth, max_attempts=max_attempts).response
    except VendorError as exc:
        raise failed(exc, what) from None


def failed(exc: VendorError, what: str) -> VendorError:
    """``exc`` (raised by the HTTP layer for a token exchange) as a token exchange's error.

    Same class, status and transience. The message keeps the HTTP layer's own words where they
    quote no body — a transport failure (host, port and cause), a redirect (where to, without query),
    a rate limit — and is just the status otherwise (an error page after the retries, an answer
    that could not be decoded).
    """
    if isinstance(exc, (VendorConfigError, VendorRateLimitError)) or exc.http_status is None:
        reason = exc.message
    else:
        reason = f"answered HTTP {exc.http_status}"
    error = type(exc)(exc.vendor, f"{what} failed: {reason}", status_code=exc.http_status, token_exchange=True)
    error.transient = exc.transient
    return error


def renewal_failed(vendor: str, exc: BaseException) -> VendorError:
    """An unforeseen error while renewing a credential, as a token exchange's error (its type only)."""
    if isinstance(exc, VendorError):
        exc.token_exchange = True
        exc.may_have_been_applied = False  # a token exchange applies no reversal
        return exc
    return VendorConfigError(
        vendor, f"renewing the credential failed: {type(exc).__name__} (see the task log)", token_exchange=True
    )


def unreadable(vendor: str, what: str, response: requests.Response, problem: str) -> VendorResponseError:
    """A token answer that cannot be used: names the status and ``problem``, never the body.

    :param problem: which field was wrong (see :func:`fields`), or what the body was not.
    """
    return VendorResponseError(
        vendor,
        f"{what} answered HTTP {response.status_code} with a body that cannot be used ({problem})",
        status_code=response.status_code,
        token_exchange=True,
    )


def usable_token(vendor: str, what: str, response: requests.Response, field: str, value: object) -> str:
    """The token a token answer issued in ``field``, if a request header can carry it; else :func:`unreadable`.

    A token with a blank, a line break or a non-ASCII character (an answer the vendor garbled, or a
    proxy's) would make the reversal request fail inside the HTTP layer after it was handed over:
    its items would look possibly applied, and the error would quote the header. Refused here, it
    is a token exchange's failure: the items are not sent. Neither the value nor its length is named.
    """
    if isinstance(value, str) and TOKEN_CHARS.fullmatch(value):
        return value
    problem = "empty" if value in (None, "") else "not a token: a blank, control or non-ASCII character"
    raise unreadable(vendor, what, response, f"{field}: {problem}")


def fields(error: ValidationError) -> str:
    """Which fields of a token answer were wrong and how: ``data.ttlSeconds: float_parsing``, no values."""
    problems = [
        f"{'.'.join(_loc_part(part) for part in entry['loc']) or 'body'}: {entry['type']}"
        for entry in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    return ", ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")


def _loc_part(part: object) -> str:
    """A field name or list index of a location; a key taken from the input (a dict's) is not repeated."""
    if isinstance(part, int) or (isinstance(part, str) and _FIELD.fullmatch(part)):
        return str(part)
    return "?"


def json_of(vendor: str, what: str, response: requests.Response, secrets: tuple[str, ...]) -> Any:
    """The JSON body of a token answer, or :func:`unreadable` (never quoting what it was).

    Every text under one of the ``secrets`` field names (at any depth) is given to the log masker
    first, whether or not the body turns out readable: an answer the model refuses may hold a live
    token all the same.
    """
    try:
        body = response.json()
    except (ValueError, RecursionError):
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        shown = kind if _MEDIA_TYPE.fullmatch(kind) else "no readable content type"
        raise unreadable(vendor, what, response, f"not JSON: {shown}") from None
    _mask(body, frozenset(secrets), depth=0)
    return body


def _mask(value: object, names: frozenset[str], depth: int) -> None:
    from airflow.sdk.log import mask_secret

    if depth > 4:  # token answers are shallow; a deeper body is not searched
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key in names and isinstance(item, str) and item:
                mask_secret(item)
            else:
                _mask(item, names, depth + 1)
    elif isinstance(value, list):
        for item in value[:10]:
            _mask(item, names, depth + 1)
