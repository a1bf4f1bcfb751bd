"""Base URL and path settings of a connection."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


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
