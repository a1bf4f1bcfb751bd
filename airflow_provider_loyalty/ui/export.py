"""The items of a search as CSV: columns, one line per item, and text that is safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from airflow_provider_loyalty.ui.models import ItemHistory

#: Items a CSV export holds at most (read in batches, each a short read-only session).
MAX_EXPORT_ITEMS = 100_000
CSV_COLUMNS = (
    "vendor",
    "item_key",
    "unique_id",
    "customer_id",
    "promotion_id",
    "earn_id",
    "reversed",
    "reversed_at",
    "in_doubt",
    "last_status",
    "last_failure_kind",
    "last_code",
    "last_message",
    "last_recorded_at",
    "last_dag_id",
    "last_run_id",
    "attempts",
)


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else _csv_safe(v) for v in values])
    return out.getvalue()


def _csv_safe(value: Any) -> Any:
    """Ledger text opened in a spreadsheet must not run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def header() -> str:
    """The CSV's first line."""
    return _csv_line(list(CSV_COLUMNS))


def line(item: ItemHistory) -> str:
    """One item's CSV line."""
    last = item.last
    return _csv_line(
        [
            item.vendor,
            item.item_key,
            item.unique_id,
            item.customer_id,
            item.promotion_id,
            item.earn_id,
            "yes" if item.reversed else "no",
            item.reversed_at,
            "yes" if item.in_doubt else "no",
            last.status,
            last.failure_kind,
            last.code,
            last.message,
            last.recorded_at,
            last.dag_id,
            last.run_id,
            item.attempt_count,
        ]
    )


def stopped(reason: str) -> str:
    """The last line of an export cut short (the ledger became unreadable mid-way)."""
    return _csv_line([f"# export stopped: {reason}"])
