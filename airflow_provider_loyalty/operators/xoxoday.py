"""CancelPointsOperator: cancel Xoxoday Plum points issuances whose ids come from XCom."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty._batches import batched
from airflow_provider_loyalty.items import PointItem
from airflow_provider_loyalty.operators._inputs import parse_unique_ids
from airflow_provider_loyalty.operators._reversal import ReversalOperator
from airflow_provider_loyalty.vendor_limits import XOXODAY_MAX_BATCH_SIZE as MAX_BATCH_SIZE
from airflow_provider_loyalty.vendors import XOXODAY

if TYPE_CHECKING:
    from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook
    from airflow_provider_loyalty.models import CancelPointsResult

__all__ = ["MAX_BATCH_SIZE", "CancelPointsOperator", "parse_unique_ids"]

#: One cancel request: a batch of items.
PointsBatch = Sequence[PointItem]


class CancelPointsOperator(ReversalOperator[PointsBatch]):
    """Cancel Xoxoday Plum points transactions (``storesAdmin.mutation.cancelBalance``), each once.

    :param unique_ids: (templated) the ids to cancel: an XComArg such as ``extract.output``, a
        Jinja ``xcom_pull`` string, or a list of ints / digit strings / 1-column rows / dicts with
        ``unique_id``; a single id is that one id.
    :param xoxoday_conn_id: the ``xoxoday`` connection.
    :param batch_size: unique_ids per request (1-500).
    :param kwargs: the shared settings of :class:`ReversalOperator` (``dry_run``, ``ledger_conn_id``,
        ``max_failed_ratio``, ``max_requests_per_minute`` — Xoxoday documents no limit, its
        rate-limit answers are honoured whatever the setting —, ``max_concurrency``, ``max_items``,
        ``already_reversed`` — default: a message saying "already cancelled/canceled/reversed" —,
        ``hook_params``, ``retry_refused``) and BaseOperator's.
    """

    template_fields: Sequence[str] = ("unique_ids", *ReversalOperator.template_fields)
    ui_color = "#f4d9ff"
    spec = XOXODAY

    def __init__(
        self,
        *,
        unique_ids: Any,
        xoxoday_conn_id: str = "xoxoday_default",
        batch_size: int = MAX_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size!r}")
        self.unique_ids = unique_ids
        self.xoxoday_conn_id = xoxoday_conn_id
        self.batch_size = int(batch_size)

    @cached_property
    def hook(self) -> XoxodayHook:
        """The Xoxoday hook, paced for this task."""
        from airflow_provider_loyalty.hooks.xoxoday import XoxodayHook

        return XoxodayHook(
            self.xoxoday_conn_id,
            max_requests_per_minute=self.max_requests_per_minute,
            max_concurrency=self.max_concurrency,
            max_requests_per_minute_cap=self.max_requests_per_minute_cap,
            rate_limit_timeout=self.rate_limit_timeout,
            rate_budget_conn_id=self.rate_budget_conn_id,
            **self.hook_params,
        )

    def parse(self) -> tuple[list[PointItem], int, int]:
        """Validate ``unique_ids``."""
        return parse_unique_ids(
            self.unique_ids, type(self).__name__, invalid=self._invalid, references=self._references
        )

    def plan(self, items: list[PointItem]) -> Iterator[PointsBatch]:
        """Batches of ``batch_size`` ids."""
        return batched(items, self.batch_size)

    def items_of(self, request: PointsBatch) -> PointsBatch:
        """A batch is its items."""
        return request

    def describe(self, request: PointsBatch) -> str:
        """Count of ids in a batch."""
        return f"{len(request)} unique_ids"

    def call(self, request: PointsBatch, before_send: Callable[[], object] | None) -> CancelPointsResult:
        """Cancel one batch."""
        return self.hook.cancel_points(request, before_send=before_send)
