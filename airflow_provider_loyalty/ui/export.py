"""The items of a search as CSV: columns, one line per item, and text that is safe to open in a spreadsheet."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from airflow_provider_loyalty import vendors
from airflow_provider_loyalty.ui.models import ItemHistory

#: Items a CSV export holds at most (read in batches, each a short read-only session).
MAX_EXPORT_ITEMS = 100_000
#: The columns before and after the registered vendors' identity columns (:func:`columns`).
LEADING = ("vendor", "item_key", "reference", "state")
TRAILING = (
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


#: What makes a spreadsheet read a cell as a formula (OWASP, CSV injection): ``= + - @``, TAB and CR,
#: plus LF and the full-width forms some spreadsheets fold to ASCII.
_TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
#: A trigger at the start of a cell, or right after a field separator a spreadsheet may split on
#: (``,`` ``;`` TAB, a line break), blanks and quotes in between allowed: the position gets a ``'``.
_RISKY = re.compile(f'(?:^|[,;\t\r\n])[ "]*(?=[{re.escape(_TRIGGERS)}])')
#: A cell holding any of these is quoted (RFC 4180 quoting, ``"`` doubled).
_NEEDS_QUOTES = re.compile("[,;\"\t\r\n']")


def _csv_line(values: list[Any]) -> str:
    r"""One CSV line (``,``-separated, ``\r\n``-ended) of :func:`_csv_safe` cells."""
    return ",".join(_csv_safe(v) for v in values) + "\r\n"


def _csv_safe(value: Any) -> str:
    """One cell, written so that no spreadsheet runs it as a formula (OWASP CSV injection rules).

    The rule, safe whether the file is opened with ``,`` or ``;`` as the list separator:

    - Numbers (ids, counts) are written as numbers, unquoted: a number is never a formula.
    - A text cell gets a ``'`` before every trigger (``= + - @``, TAB, CR, LF and their full-width
      forms) that starts the cell or follows a ``,``, ``;``, TAB or line break (blanks and ``"`` in
      between allowed): ``=1+1`` becomes ``'=1+1`` and ``Earn refused;=cmd|' /C calc'!A0`` becomes
      ``Earn refused;'=cmd|' /C calc'!A0``. A spreadsheet that splits the line at a separator other
      than the file's (a ``;`` locale opening this ``,`` file), even inside quotes, still finds no
      cell that starts with a trigger.
    - A text cell holding ``,``, ``;``, ``"``, ``'``, TAB or a line break — any neutralised one,
      then — is quoted, ``"`` doubled (RFC 4180), so a reader that honours quotes keeps it whole.

    Other text is written as is (ids, codes and plain messages stay readable and unquoted).
    """
    if value is None:
        return ""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    text = _RISKY.sub(lambda m: m.group() + "'", text)
    return '"' + text.replace('"', '""') + '"' if _NEEDS_QUOTES.search(text) else text


def columns() -> tuple[str, ...]:
    """The CSV's columns: the item, every registered identity column, then what became of it."""
    return (*LEADING, *(c.name for c in vendors.identity_columns()), *TRAILING)


def __getattr__(name: str) -> Any:
    if name == "CSV_COLUMNS":  # as of now: a vendor registered later adds its identity columns
        return columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def header() -> str:
    """The CSV's first line."""
    return _csv_line(list(columns()))


def line(item: ItemHistory) -> str:
    """One item's CSV line."""
    last = item.last
    return _csv_line(
        [
            item.vendor,
            item.item_key,
            item.reference,
            item.state,
            *(item.ids.get(c.name) for c in vendors.identity_columns()),
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
