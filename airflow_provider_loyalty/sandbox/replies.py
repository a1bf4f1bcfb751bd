"""What every sandbox handler shares: the reply tuple and its builders, and the request it reads.

The vendor APIs (``xoxoday_api``, ``capillary_api``), the admin API (``admin_api``) and the HTTP server
(``server``) all speak these types; the handlers see the request only through ``Request`` so that they do
not depend on the server module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from email.message import Message

    from airflow_provider_loyalty.sandbox.config import SandboxConfig
    from airflow_provider_loyalty.sandbox.limits import RateLimited
    from airflow_provider_loyalty.sandbox.state import SandboxState

# (status, body, content type, extra headers): the server writes it in one go.
Reply = tuple[int, bytes, str, tuple[tuple[str, str], ...]]
JSON_TYPE = "application/json"
INVALID_JSON = object()  # stands for a vendor request body that is not valid JSON


def json_reply(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """Return a compact JSON reply."""
    return status, json.dumps(obj, separators=(",", ":")).encode(), JSON_TYPE, headers


def html_error(status: int) -> Reply:
    """Return the HTML page a gateway in front of a vendor (nginx) answers a 502/503 with."""
    phrase = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}.get(status, "Error")
    body = (
        f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return status, body.encode(), "text/html", ()


class Served(Protocol):
    """The running sandbox as handlers see it."""

    @property
    def config(self) -> SandboxConfig:
        """Return the live settings."""
        ...

    @property
    def state(self) -> SandboxState:
        """Return the vendors' state."""
        ...


class Request(Protocol):
    """The HTTP request being served, as handlers see it."""

    headers: Message

    @property
    def sandbox(self) -> Served:
        """Return the sandbox serving the request."""
        ...

    def is_json(self) -> bool:
        """Tell whether the request declares a JSON body."""
        ...


# A vendor endpoint: (request, parsed JSON body or None or INVALID_JSON) -> (reply, reached vendor logic).
VendorHandler = Callable[[Request, Any], tuple[Reply, bool]]


@dataclass(frozen=True)
class VendorApi:
    """Everything the server needs to serve one vendor.

    :param vendor: the vendor's name (``vendors.XOXODAY`` or ``vendors.CAPILLARY``).
    :param routes: ``path -> method -> (endpoint name, handler)``; endpoint names label the request log.
    :param item_count: how many items (recipients, earn ids) a rate-limited API body carries, any shape.
    :param limited_reply: the vendor's answer to a request its rate limit refused.
    """

    vendor: str
    routes: Mapping[str, Mapping[str, tuple[str, VendorHandler]]]
    item_count: Callable[[Any], int]
    limited_reply: Callable[[SandboxConfig, RateLimited], Reply]
