"""Base URL and path settings of a connection."""

from __future__ import annotations

import logging
import urllib.parse

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
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    if path and any(path.startswith(prefix) for prefix in vendor_paths):
        log.warning("Connection host %s includes an API path; using %s://%s", url, parts.scheme, parts.netloc)
        path = ""
    netloc = parts.netloc
    try:
        has_port = parts.port is not None
    except ValueError:  # "host:abc": left as written; the request then fails as a configuration error
        has_port = True
    if port and not has_port:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


def url_path(value: object, default: str) -> str:
    """Return a configured URL path (leading ``/`` ensured) or ``default`` when unset."""
    if not value:
        return default
    text = str(value).strip()
    return text if text.startswith("/") else f"/{text}"
