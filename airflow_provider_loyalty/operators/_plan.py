"""A dry run: the requests a real run would send, logged and returned in the summary; nothing is sent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from airflow_provider_loyalty.items import Item
from airflow_provider_loyalty.operators._summary import MAX_LISTED, RunSummary

P = TypeVar("P")


def plan_only(
    items: list[Item],
    requests: Iterable[P],
    describe: Callable[[P], str],
    summary: RunSummary,
    what: str,
    max_items: int | None,
    log: logging.Logger | Any,
) -> dict[str, Any]:
    """Count and describe the planned ``requests`` for ``items``; return the dry run's summary XCom."""
    count = 0
    plan: list[str] = []
    for request in requests:
        count += 1
        description = describe(request)
        if len(plan) < MAX_LISTED:
            plan.append(description)
        log.debug("Dry run: would send %s", description)
    summary.requests = count
    over = max_items is not None and len(items) > max_items
    log.info(
        "Dry run: %d %s in %d request(s) would be sent; %d skipped as done. Nothing was sent.%s",
        len(items),
        what,
        count,
        summary.skipped,
        f" A real run would refuse: above max_items={max_items}." if over else "",
    )
    sample = [item.ident() for item in items[:MAX_LISTED]]
    return summary.as_xcom(planned=len(items), plan=plan, sample=sample, max_items_exceeded=over)
