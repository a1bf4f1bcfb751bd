"""Base URL and path settings of a connection."""

from __future__ import annotations

import logging
import urllib.parse

from airflow_provider_loyalty.hooks.errors import VendorConfigError

log = logging.getLogger(__name__)


def base_url(
    host: str | None, port: int | None, default: str, vendor_paths: tuple[str, ...] = (), *, vendor: str = "connection"
) -> str:
    """Build a base URL from a connection's ``host`` (scheme optional, ``https`` assumed) and ``port``.

    :param vendor_paths: path prefixes of the vendor's own endpoints: a host pasted with one of them
        (``https://accounts.xoxoday.com/chef/v1/oauth/api`` from the docs) is cut back to its origin,
        since the hooks add those paths themselves.
    :raises VendorConfigError: the host is no URL (unbalanced brackets, a bad port, a query or
        fragment the hooks' paths would be appended to).
    """
    if not host:
        return default
    url = host.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    try:
        parts = urllib.parse.urlsplit(url)
        written_port = parts.port
    except ValueError as exc:
        raise VendorConfigError(vendor, f"host {host!r} is not a URL: {exc}") from None
    if not parts.hostname:
        raise VendorConfigError(vendor, f"host {host!r} names no host")
    if parts.query or parts.fragment:
        raise VendorConfigError(
            "connection", f"host {host!r} holds a query or fragment; give the base URL only (scheme, host, port, path)"
        )
    path = parts.path
    if path and any(path.startswith(prefix) for prefix in vendor_paths):
        log.warning("Connection host %s includes an API path; using %s://%s", url, parts.scheme, parts.netloc)
        path = ""
    netloc = parts.netloc.rstrip(":")  # "host:" names no port
    if port and written_port is None:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


def url_path(value: object, default: str) -> str:
    """Return a configured URL path (leading ``/`` ensured) or ``default`` when unset."""
    if not value:
        return default
    text = str(value).strip()
    return text if text.startswith("/") else f"/{text}"
