"""Vouchery's item, spec, hook and operator: everything a vendor brings."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import requests

from airflow_provider_loyalty._batches import batched
from airflow_provider_loyalty.operators._reversal import ReversalOperator
from airflow_provider_loyalty.outcomes import AlreadyReversed, FailureKind, Outcome
from airflow_provider_loyalty.vendors import IdColumn, VendorSpec

HOST = "https://api.vouchery.test"
VOID_URL = f"{HOST}/v1/void"


class VoucherItem(NamedTuple):
    """One voucher to void."""

    voucher_code: str

    @property
    def key(self) -> str:
        """The ledger's ``item_key``."""
        return self.voucher_code

    def ident(self) -> dict[str, Any]:
        """The item's fields as summaries show them."""
        return {"voucher_code": self.voucher_code}


SPEC = VendorSpec(
    name="vouchery",
    title="Vouchery",
    item_type=VoucherItem,
    identity=(IdColumn("voucher_code", "VARCHAR(64)", "voucher"),),
    key_sql="{voucher_code}",
    input_name="vouchers",
    conn_arg="vouchery_conn_id",
    operation="voidVoucher",
    default_host=HOST,
    paths=("/v1/",),
    already_reversed=AlreadyReversed(codes=("already_void",)),
    max_batch=2,
    operator="VoidVouchersOperator",
)


@dataclass(frozen=True)
class VoidResult:
    """The answer to one void request: an outcome per code, in order."""

    outcomes: list[Outcome]
    after_ambiguous_attempt: bool = False


class VoucheryHook:
    """A minimal hook: one session, no pacing (what the engine asks of a hook, and one call)."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.session = requests.Session()

    def prepare(self) -> None:
        """Nothing to check before the first request."""

    def close(self) -> None:
        self.session.close()

    def waited_seconds(self) -> float:
        return 0.0

    def pace_text(self) -> str:
        return "pace unlimited"

    def pace_report(self) -> dict[str, Any]:
        return {"mode": "unlimited", "waited_seconds": 0.0}

    def defer_rate_limits_after(self, seconds: float | None) -> None:
        """Vouchery answers no rate limits: nothing to hand to the triggerer."""

    def void(self, items: Sequence[VoucherItem], before_send: Callable[[], object] | None) -> VoidResult:
        """Void ``items``; an item succeeded only when the answer names it as voided."""
        if before_send is not None:
            before_send()
        response = self.session.post(VOID_URL, json={"codes": [i.voucher_code for i in items]}, timeout=10)
        response.raise_for_status()
        answers = {r["code"]: r for r in response.json()["results"]}
        outcomes = []
        for item in items:
            answer = answers.get(item.voucher_code)
            if answer is None:
                outcomes.append(Outcome.failed(item, "unknown", "not in the answer", FailureKind.TRANSIENT))
            elif answer["voided"]:
                outcomes.append(Outcome.succeeded(item))
            else:
                outcomes.append(Outcome.failed(item, answer["error"], answer["error"], FailureKind.PERMANENT))
        return VoidResult(outcomes)


class VoidVouchersOperator(ReversalOperator[Sequence[VoucherItem]]):
    """Void Vouchery vouchers, each once."""

    template_fields: Sequence[str] = ("vouchers", *ReversalOperator.template_fields)
    spec = SPEC

    def __init__(self, *, vouchers: Any, vouchery_conn_id: str = "vouchery_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vouchers = vouchers
        self.vouchery_conn_id = vouchery_conn_id

    @cached_property
    def hook(self) -> VoucheryHook:
        return VoucheryHook(self.vouchery_conn_id)

    def parse(self) -> tuple[list[VoucherItem], int, int]:
        items = list(dict.fromkeys(VoucherItem(str(code)) for code in self.vouchers))
        return items, len(self.vouchers), len(self.vouchers) - len(items)

    def plan(self, items: list[VoucherItem]) -> Iterator[Sequence[VoucherItem]]:
        return batched(items, SPEC.max_batch)

    def items_of(self, request: Sequence[VoucherItem]) -> Sequence[VoucherItem]:
        return request

    def describe(self, request: Sequence[VoucherItem]) -> str:
        return f"{len(request)} vouchers"

    def call(self, request: Sequence[VoucherItem], before_send: Callable[[], object] | None) -> VoidResult:
        return self.hook.void(request, before_send)
