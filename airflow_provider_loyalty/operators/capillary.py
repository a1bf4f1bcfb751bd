"""RevokeEarnOperator: revoke Capillary cart-promotion earns whose ids come from XCom."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.items import EarnItem
from airflow_provider_loyalty.operators._inputs import parse_earns
from airflow_provider_loyalty.operators._reversal import ReversalOperator
from airflow_provider_loyalty.vendor_limits import CAPILLARY_DEFAULT_REQUESTS_PER_MINUTE as DEFAULT_REQUESTS_PER_MINUTE
from airflow_provider_loyalty.vendor_limits import CAPILLARY_MAX_EARN_IDS as MAX_EARN_IDS_PER_REQUEST
from airflow_provider_loyalty.vendors import CAPILLARY

if TYPE_CHECKING:
    from airflow_provider_loyalty.hooks.capillary import CapillaryHook
    from airflow_provider_loyalty.models import RevokeEarnResult

__all__ = ["RevokeEarnOperator", "RevokeRequest", "parse_earns", "plan_requests"]


@dataclass(frozen=True, slots=True)
class RevokeRequest:
    """One planned revokeEarn call: one customer's earns, grouped by promotion, at most 1000 in all."""

    customer_id: int
    items: tuple[EarnItem, ...]

    @property
    def details(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """``(promotion_id, earn_ids)`` pairs in first-seen order, as the request body lists them."""
        grouped: dict[str, list[str]] = {}
        for item in self.items:
            grouped.setdefault(item.promotion_id, []).append(item.earn_id)
        return tuple((promotion, tuple(earns)) for promotion, earns in grouped.items())

    @property
    def size(self) -> int:
        """Number of earn ids."""
        return len(self.items)


def plan_requests(earns: Sequence[EarnItem], max_earn_ids: int = MAX_EARN_IDS_PER_REQUEST) -> Iterator[RevokeRequest]:
    """One request per customer with all its promotions, split so none carries more than ``max_earn_ids``."""
    by_customer: dict[int, dict[str, list[EarnItem]]] = {}
    for item in earns:
        by_customer.setdefault(item.customer_id, {}).setdefault(item.promotion_id, []).append(item)
    for customer_id, promotions in by_customer.items():
        batch: list[EarnItem] = []
        for promotion_items in promotions.values():
            for item in promotion_items:
                batch.append(item)
                if len(batch) == max_earn_ids:
                    yield RevokeRequest(customer_id, tuple(batch))
                    batch = []
        if batch:
            yield RevokeRequest(customer_id, tuple(batch))


class RevokeEarnOperator(ReversalOperator[RevokeRequest]):
    """Revoke Capillary cart-promotion earns (``revokeEarn``), each once.

    :param earns: (templated) the earns to revoke: an XComArg such as ``extract.output``, a Jinja
        ``xcom_pull`` string, or a list of ``(customer_id, promotion_id, earn_id)`` rows or dicts.
    :param capillary_conn_id: the ``capillary`` connection.
    :param max_requests_per_minute: request rate of this task: Capillary's limit per API key
        (1000/min on demo clusters, brand-specific in production) divided by the tasks sharing it.
    :param kwargs: the shared settings of :class:`ReversalOperator` (``dry_run``, ``ledger_conn_id``,
        ``max_failed_ratio``, ``max_concurrency``, ``max_items``, ``already_reversed`` — default:
        code 731 or a message saying "already revoked" —, ``hook_params``, ``retry_refused``) and
        BaseOperator's.
    """

    template_fields: Sequence[str] = ("earns", *ReversalOperator.template_fields)
    ui_color = "#d9ecff"
    spec = CAPILLARY

    def __init__(
        self,
        *,
        earns: Any,
        capillary_conn_id: str = "capillary_default",
        max_requests_per_minute: float | str | None = DEFAULT_REQUESTS_PER_MINUTE,
        **kwargs: Any,
    ) -> None:
        super().__init__(max_requests_per_minute=max_requests_per_minute, **kwargs)
        self.earns = earns
        self.capillary_conn_id = capillary_conn_id

    @cached_property
    def hook(self) -> CapillaryHook:
        """The Capillary hook, paced for this task."""
        from airflow_provider_loyalty.hooks.capillary import CapillaryHook

        return CapillaryHook(
            self.capillary_conn_id,
            max_requests_per_minute=self.max_requests_per_minute,
            max_concurrency=self.max_concurrency,
            max_requests_per_minute_cap=self.max_requests_per_minute_cap,
            rate_limit_timeout=self.rate_limit_timeout,
            rate_budget_conn_id=self.rate_budget_conn_id,
            **self.hook_params,
        )

    def parse(self) -> tuple[list[EarnItem], int, int]:
        """Validate ``earns``."""
        return parse_earns(self.earns, type(self).__name__, invalid=self._invalid, references=self._references)

    def plan(self, items: list[EarnItem]) -> Iterator[RevokeRequest]:
        """Per customer, requests of at most 1000 earn ids."""
        return plan_requests(items)

    def items_of(self, request: RevokeRequest) -> tuple[EarnItem, ...]:
        """The request's earns."""
        return request.items

    def describe(self, request: RevokeRequest) -> str:
        """Customer and counts of a request."""
        return f"customer {request.customer_id}, {len(request.details)} promotion(s), {request.size} earn ids"

    def call(self, request: RevokeRequest, before_send: Callable[[], object] | None) -> RevokeEarnResult:
        """Revoke one request's earns."""
        return self.hook.revoke_earn(request.customer_id, request.items, before_send=before_send)
