"""RevokeEarnOperator: revoke Capillary cart-promotion earns whose ids come from XCom."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty.operators._inputs import InputErrors, load_rows, normalised_keys, positive_int, text_id
from airflow_provider_loyalty.operators._reversal import ItemResult, ReversalOperator

if TYPE_CHECKING:
    from airflow_provider_loyalty.hooks.capillary import CapillaryHook

from airflow_provider_loyalty.vendor_limits import CAPILLARY_DEFAULT_REQUESTS_PER_MINUTE as DEFAULT_REQUESTS_PER_MINUTE
from airflow_provider_loyalty.vendor_limits import CAPILLARY_MAX_EARN_IDS as MAX_EARN_IDS_PER_REQUEST

#: customer_id -> promotion_id -> earn ids (dict as an ordered set)
Earns = dict[int, dict[str, dict[str, None]]]


@dataclass(frozen=True, slots=True)
class RevokeRequest:
    """One planned revokeEarn call: one customer, earn ids per promotion, at most 1000 in all."""

    customer_id: int
    details: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def size(self) -> int:
        """Number of earn ids."""
        return sum(len(earns) for _, earns in self.details)


def earn_key(customer_id: int, promotion_id: str, earn_id: str) -> str:
    """Ledger key of one earn."""
    return f"{customer_id}/{promotion_id}/{earn_id}"


def parse_earns(value: Any, owner: str = "RevokeEarnOperator") -> tuple[Earns, int, int]:
    """Validate an XCom of earns; return ``(earns per customer and promotion, rows, duplicates)``.

    Accepts rows ``(customer_id, promotion_id, earn_id)``, dicts with ``customer_id``/``promotion_id``/
    ``earn_id`` (camelCase too), and the string a non-native Jinja render makes of either.

    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    rows = load_rows(value, "earns", owner)
    errors = InputErrors("earns", owner)
    earns: Earns = {}
    unique = 0
    for position, row in enumerate(rows):
        if isinstance(row, dict):
            keys = normalised_keys(row)
            fields = (keys.get("customerid"), keys.get("promotionid"), keys.get("earnid"))
        elif isinstance(row, (list, tuple)) and len(row) == 3:
            fields = (row[0], row[1], row[2])
        else:
            errors.add(position, row, "expected (customer_id, promotion_id, earn_id) or a dict with those keys")
            continue
        customer, why_customer = positive_int(fields[0])
        promotion, why_promotion = text_id(fields[1])
        earn, why_earn = text_id(fields[2])
        if customer is None:
            errors.add(position, row, f"customer_id {why_customer}")
        elif promotion is None:
            errors.add(position, row, f"promotion_id {why_promotion}")
        elif "/" in promotion:
            errors.add(position, row, "promotion_id contains '/'")
        elif earn is None:
            errors.add(position, row, f"earn_id {why_earn}")
        elif errors.count == 0:  # stop building once the input is known to be bad
            promo_earns = earns.setdefault(customer, {}).setdefault(promotion, {})
            if earn not in promo_earns:
                promo_earns[earn] = None
                unique += 1
    errors.raise_if_any()
    return earns, len(rows), len(rows) - unique


def plan_requests(earns: Earns, max_earn_ids: int = MAX_EARN_IDS_PER_REQUEST) -> Iterator[RevokeRequest]:
    """One request per customer with all its promotions, split so none carries more than ``max_earn_ids``."""
    for customer_id, promotions in earns.items():
        details: list[tuple[str, tuple[str, ...]]] = []
        room = max_earn_ids
        for promotion_id, earn_ids in promotions.items():
            pending = list(earn_ids)
            while pending:
                take, pending = pending[:room], pending[room:]
                details.append((promotion_id, tuple(take)))
                room -= len(take)
                if room == 0:
                    yield RevokeRequest(customer_id, tuple(details))
                    details, room = [], max_earn_ids
        if details:
            yield RevokeRequest(customer_id, tuple(details))


class RevokeEarnOperator(ReversalOperator[RevokeRequest]):
    """Revoke Capillary cart-promotion earns (``revokeEarn``), each once.

    :param earns: (templated) the earns to revoke: an XComArg such as ``extract.output``, a Jinja
        ``xcom_pull`` string, or a list of ``(customer_id, promotion_id, earn_id)`` rows or dicts.
    :param capillary_conn_id: the ``capillary`` connection.
    :param dry_run: plan and log only; no vendor call at all.
    :param ledger_conn_id: SQL connection of the outcomes ledger (skips what is done, records outcomes).
    :param ledger_table: ledger table name.
    :param max_failed_ratio: tolerated share of failed earns before the task fails.
    :param max_requests_per_minute: request rate of this task: Capillary's limit per API key
        (1000/min on demo clusters, brand-specific in production) divided by the tasks sharing it.
    :param max_concurrency: requests in flight at once.
    :param hook_params: extra keyword arguments of the hook (``timeout``, ``retry_policy``...).
    :param retry_refused: resend items the ledger records as refused for good (default: report them
        as failed again without sending).
    """

    template_fields: Sequence[str] = ("earns", *ReversalOperator.template_fields)
    ui_color = "#d9ecff"
    vendor = "capillary"
    what = "earns"

    def __init__(
        self,
        *,
        earns: Any,
        capillary_conn_id: str = "capillary_default",
        dry_run: bool = False,
        ledger_conn_id: str | None = None,
        ledger_table: str = "loyalty_reversal_ledger",
        max_failed_ratio: float = 0.0,
        max_requests_per_minute: float | None = DEFAULT_REQUESTS_PER_MINUTE,
        max_concurrency: int = 8,
        hook_params: dict[str, Any] | None = None,
        retry_refused: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            dry_run=dry_run,
            ledger_conn_id=ledger_conn_id,
            ledger_table=ledger_table,
            max_failed_ratio=max_failed_ratio,
            max_requests_per_minute=max_requests_per_minute,
            max_concurrency=max_concurrency,
            hook_params=hook_params,
            retry_refused=retry_refused,
            **kwargs,
        )
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
            **self.hook_params,
        )

    def parse(self) -> tuple[Earns, int, int]:
        """Validate ``earns``."""
        return parse_earns(self.earns, type(self).__name__)

    def item_keys(self, items: Earns) -> Iterator[str]:
        """Ledger keys ``customer/promotion/earn``."""
        for customer_id, promotions in items.items():
            for promotion_id, earn_ids in promotions.items():
                for earn_id in earn_ids:
                    yield earn_key(customer_id, promotion_id, earn_id)

    def ident(self, key: str) -> dict[str, Any]:
        """Identity of an item from its ledger key ``customer/promotion/earn``."""
        customer, promotion, earn = key.split("/", 2)
        return {"customer_id": int(customer), "promotion_id": promotion, "earn_id": earn}

    def drop_done(self, items: Earns, done: set[str]) -> Earns:
        """Remove earns the ledger records as done (in place) and empty groups."""
        for customer_id in list(items):
            promotions = items[customer_id]
            for promotion_id in list(promotions):
                earn_ids = promotions[promotion_id]
                for earn_id in [e for e in earn_ids if earn_key(customer_id, promotion_id, e) in done]:
                    del earn_ids[earn_id]
                if not earn_ids:
                    del promotions[promotion_id]
            if not promotions:
                del items[customer_id]
        return items

    def plan(self, items: Earns) -> Iterator[RevokeRequest]:
        """Per customer, requests of at most 1000 earn ids."""
        return plan_requests(items)

    def describe(self, request: RevokeRequest) -> str:
        """Customer and counts of a request."""
        return f"customer {request.customer_id}, {len(request.details)} promotion(s), {request.size} earn ids"

    def request_items(self, request: RevokeRequest, code: str, message: str, *, transient: bool) -> list[ItemResult]:
        """A failed result per earn of the request."""
        c = request.customer_id
        return [
            ItemResult(
                earn_key(c, p, e),
                {"customer_id": c, "promotion_id": p, "earn_id": e},
                False,
                code,
                message,
                transient,
                settles=False,
            )
            for p, earn_ids in request.details
            for e in earn_ids
        ]

    def send(self, request: RevokeRequest) -> list[ItemResult]:
        """Revoke one request's earns; vendor refusals are permanent, unknown outcomes transient."""
        result, failed = self.call_vendor(request, self.hook.revoke_earn, request.customer_id, request.details)
        if result is None:
            return failed
        c = request.customer_id
        doubt = result.after_ambiguous_attempt
        results = []
        for o in result.outcomes:
            key, ident = (
                earn_key(c, o.promotion_id, o.earn_id),
                {
                    "customer_id": c,
                    "promotion_id": o.promotion_id,
                    "earn_id": o.earn_id,
                },
            )
            if o.status == "revoked":
                results.append(ItemResult(key, ident, True, None, o.message))
            elif o.status == "unknown":
                results.append(ItemResult(key, ident, False, "unknown", o.message, transient=True))
            elif doubt:
                message = f"in doubt, an earlier attempt may have applied it: {o.message}"
                results.append(ItemResult(key, ident, False, o.code, message, settles=False))
            else:
                results.append(ItemResult(key, ident, False, o.code, o.message, settles=not o.whole_request))
        return results
