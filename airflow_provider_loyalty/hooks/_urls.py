"""Base URL and path settings of a connection."""

from __future__ import annotations

import ipaddress
import logging
import re
import urllib.parse

from airflow_provider_loyalty._flags import as_bool
from airflow_provider_loyalty.hooks.errors import VendorConfigError

log = logging.getLogger(__name__)


#: Hosts a plain-HTTP base URL may name: this machine (the sandbox, a local proxy, tests).
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
#: What no host field holds: a backslash (urllib and urllib3 disagree on where the host ends),
#: blanks or control characters inside it.
_NOT_IN_A_HOST = re.compile(r"[\\\s\x00-\x1f\x7f]")


def _shown(host: str) -> str:
    """The host as messages show it: credentials written into it (``user:pw@``) masked."""
    return repr(re.sub(r"(?<=://)[^/@]*@", "***@", host.strip()))


def is_loopback(hostname: str) -> bool:
    """Whether ``hostname`` names this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if hostname.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def base_url(
    host: str | None,
    port: int | None,
    default: str,
    vendor_paths: tuple[str, ...] = (),
    *,
    vendor: str = "connection",
    allow_http: bool = False,
) -> str:
    """Build a base URL from a connection's ``host`` (scheme optional, ``https`` assumed) and ``port``.

    :param vendor_paths: path prefixes of the vendor's own endpoints: a host pasted with one of them
        (``https://accounts.xoxoday.com/chef/v1/oauth/api`` from the docs) is cut back to its origin,
        since the hooks add those paths themselves.
    :param allow_http: let ``http://`` name a host other than this machine (a TLS-terminating proxy
        on a trusted network); otherwise credentials only travel unencrypted over loopback.
    :raises VendorConfigError: the host is no URL (unbalanced brackets, a bad port, a query or
        fragment the hooks' paths would be appended to, credentials or a backslash in it, a scheme
        other than http/https), or plain HTTP to another machine without ``allow_http``. The
        message names the host, credentials in it masked.
    """
    if not host:
        return default
    url = host.strip().rstrip("/")
    if _NOT_IN_A_HOST.search(url):
        raise VendorConfigError(vendor, f"host {_shown(host)} holds a backslash, a blank or a control character")
    if "://" not in url:
        url = f"https://{url}"
    try:
        parts = urllib.parse.urlsplit(url)
        written_port = parts.port
    except ValueError as exc:
        raise VendorConfigError(vendor, f"host {_shown(host)} is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise VendorConfigError(vendor, f"host {_shown(host)}: the scheme must be https (or http on this machine)")
    if "@" in parts.netloc:
        raise VendorConfigError(
            vendor,
            f"host {_shown(host)} holds credentials (user:password@); put them in the connection's login and password",
        )
    if not parts.hostname:
        raise VendorConfigError(vendor, f"host {_shown(host)} names no host")
    if parts.query or parts.fragment:
        raise VendorConfigError(
            vendor, f"host {_shown(host)} holds a query or fragment; give the base URL only (scheme, host, port, path)"
        )
    if parts.scheme.lower() == "http" and not allow_http and not is_loopback(parts.hostname):
        raise VendorConfigError(
            vendor,
            f"host {_shown(host)} is plain HTTP to another machine: tokens and secrets would travel unencrypted. "
            'Use https, or set extra {"allow_http": true} for a TLS-terminating proxy on a trusted network',
        )
    path = parts.path
    if path and any(path.startswith(prefix) for prefix in vendor_paths):
        log.warning("Connection host %s includes an API path; using %s://%s", url, parts.scheme, parts.netloc)
        path = ""
    netloc = parts.netloc.rstrip(":")  # "host:" names no port
    if port and written_port is None:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


def allows_http(extra: dict[str, object], vendor: str = "connection") -> bool:
    """The connection's ``allow_http`` extra (``true``, ``"true"``, ``"1"``...; absent: false).

    :raises VendorConfigError: a value that is no flag (``"maybe"``), rather than guess.
    """
    value = extra.get("allow_http")
    if value is None:
        return False
    try:
        return as_bool(value, "extra allow_http")
    except ValueError as exc:
        raise VendorConfigError(vendor, str(exc)) from None


def url_path(value: object, default: str) -> str:
    """Return a configured URL path (leading ``/`` ensured) or ``default`` when unset."""
    if not value:
        return default
    text = str(value).strip()
    return text if text.startswith("/") else f"/{text}"
