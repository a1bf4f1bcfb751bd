"""VendorHook: what both hooks did alike lives once, and a hook built on it is what the engine needs."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cached_property

import requests

from airflow_provider_loyalty.hooks._base import Renewal, VendorHook
from airflow_provider_loyalty.hooks._retry import RetryPolicy
from airflow_provider_loyalty.hooks.capillary import CapillaryHook
from airflow_provider_loyalty.hooks.errors import VendorAuthError, VendorError
from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
from airflow_provider_loyalty.operators._hook import ReversalHook

URL = "https://third.test"


@dataclass(frozen=True)
class ThirdCredentials:
    base_url: str


class ThirdHook(VendorHook):
    """A test-only vendor: nothing but what VendorHook asks of a hook."""

    vendor = "third"

    @cached_property
    def credentials(self) -> ThirdCredentials:
        return ThirdCredentials(URL)

    def prepare(self) -> None:
        _ = self.client

    def _credential(self) -> tuple[requests.auth.AuthBase, Renewal | None]:
        return requests.auth.HTTPBasicAuth("u", "p"), None

    def _credential_refused(self, response: requests.Response, *, renewed: bool) -> VendorError:
        return VendorAuthError(self.vendor, "refused", status_code=response.status_code)


def test_both_hooks_are_vendor_hooks_and_copy_none_of_it() -> None:
    for hook in (CapillaryHook, XoxodayHook):
        assert issubclass(hook, VendorHook)
        for shared in ("client", "get_conn", "close", "waited_seconds", "pace_report", "pace_text"):
            assert shared not in vars(hook), f"{hook.__name__} defines {shared} again"


def test_a_vendor_hook_offers_everything_the_engine_asks_of_a_hook() -> None:
    wanted = {name for name in vars(ReversalHook) if not name.startswith("_")} - set(typing.Protocol.__dict__)
    assert wanted and all(callable(getattr(VendorHook, name, None)) for name in wanted), wanted


def test_a_third_vendor_on_the_base_gets_client_pacing_and_close(requests_mock) -> None:
    requests_mock.post(f"{URL}/reverse", json={"ok": True})
    hook = ThirdHook("third_default", max_requests_per_minute=6000, retry_policy=RetryPolicy(max_attempts=1))
    hook.prepare()
    assert hook.get_conn() is hook.client and hook.client.vendor == "third"
    answer = hook._send_authorized("POST", "/reverse", json={"id": 1})
    assert answer.response.json() == {"ok": True} and not answer.after_ambiguous_attempt
    assert requests_mock.last_request.headers["Authorization"].startswith("Basic ")
    assert hook.pace_report()["pace_per_minute"] == 6000
    hook.close()
    assert "client" in vars(hook) and hook.client._session is None  # pooled connections released
