"""Turning what an upstream task pushed to XCom into validated ids, safely.

An XComArg arrives as the native list; a Jinja ``xcom_pull`` arrives as its Python repr (or JSON)
unless the DAG renders native objects. Strings are parsed with ``json`` or a restricted literal
reader (``ast``, plus ``Decimal('…')`` as PostgreSQL numerics print) — never ``eval``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_loyalty.outcomes import EarnItem, PointItem

#: How many offending values an input error names.
MAX_REPORTED = 5


class InputErrors:
    """Collects bad input values (all of them counted, the first few kept) and raises once.

    :param what: name of the input in messages, e.g. ``unique_ids``.
    :param owner: operator class name prefixed to the message.
    """

    def __init__(self, what: str, owner: str) -> None:
        self.what = what
        self.owner = owner
        self.count = 0
        self.examples: list[str] = []

    def add(self, position: int, value: Any, reason: str) -> None:
        """Note that row ``position`` (0-based) holds ``value``, bad because ``reason``."""
        self.count += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(f"row {position}: {_show(value)} ({reason})")

    def raise_if_any(self) -> None:
        """Raise :class:`AirflowFailException` naming the first offenders, if any were added."""
        if self.count:
            more = f"; and {self.count - len(self.examples)} more" if self.count > len(self.examples) else ""
            raise AirflowFailException(
                f"{self.owner}: {self.count} invalid {self.what} value(s), nothing was sent: "
                f"{'; '.join(self.examples)}{more}"
            )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_rows(value: Any, what: str, owner: str) -> Sequence[Any]:
    """Return the rows of an XCom value: a list/tuple/sequence, or a string rendering of one.

    :param value: the rendered template field.
    :param what: the field's name, for messages.
    :param owner: operator class name, for messages.
    :raises AirflowFailException: the value is not a list of rows.
    """
    if isinstance(value, (str, bytes)):
        value = parse_rendered(value.decode() if isinstance(value, bytes) else value, what, owner)
    if value is None:
        raise AirflowFailException(
            f"{owner}: {what} is None — the upstream task pushed no XCom (did the extraction run, "
            "and does it return rows?)"
        )
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise AirflowFailException(
            f"{owner}: {what} must be a list of rows, got {type(value).__name__}: {_show(value)}"
        )
    if isinstance(value, (list, tuple)):
        return value
    return list(value)  # a lazy XCom sequence from mapped upstreams, a generator...


def parse_rendered(text: str, what: str, owner: str) -> Any:
    """Parse the string a non-native Jinja render produced (JSON, or a Python literal)."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:
        tree = ast.parse(stripped, mode="eval")
        return _literal(tree.body)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise AirflowFailException(
            f"{owner}: cannot read {what} from the rendered string {_show(stripped)} ({exc.__class__.__name__}). "
            "Pass the upstream task's output (an XComArg) or set render_template_as_native_obj=True on the DAG."
        ) from None


def _literal(node: ast.AST) -> Any:
    """``ast.literal_eval`` plus ``Decimal('…')``, which is how PostgreSQL NUMERIC rows print."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Decimal":
        if len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant):
            try:
                return Decimal(str(node.args[0].value))
            except InvalidOperation:
                raise ValueError("bad Decimal literal") from None
        raise ValueError("unsupported Decimal call")
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(element) for element in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    return ast.literal_eval(node)


def positive_int(value: Any) -> tuple[int | None, str]:
    """Return ``(id, "")`` for a positive integer id (int, digit string, integral Decimal/float), else ``(None, reason)``."""
    if isinstance(value, bool):
        return None, "a boolean, not an id"
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit() or not text.isascii():
            return None, "not an integer"
        number = int(text)
    elif isinstance(value, (Decimal, float)):
        if isinstance(value, float) and (value != value or abs(value) > 2**53):
            return None, "not an exact integer"
        if value != int(value):
            return None, "not an integer"
        number = int(value)
    elif value is None:
        return None, "missing"
    else:
        return None, f"a {type(value).__name__}, not an integer"
    if number <= 0:
        return None, "must be positive"
    return number, ""


def text_id(value: Any) -> tuple[str | None, str]:
    """Return ``(id, "")`` for a non-empty string id (ints are accepted and stringified), else ``(None, reason)``."""
    if isinstance(value, bool):
        return None, "a boolean, not an id"
    if isinstance(value, int):
        return str(value), ""
    if isinstance(value, str):
        text = value.strip()
        return (text, "") if text else (None, "empty")
    if value is None:
        return None, "missing"
    return None, f"a {type(value).__name__}, not a string id"


def normalised_keys(row: Mapping[Any, Any]) -> dict[str, Any]:
    """Map a dict row's keys to lower case without ``_``: ``unique_id``, ``uniqueId``, ``UNIQUE_ID`` all match."""
    return {str(k).replace("_", "").lower(): v for k, v in row.items()}


def parse_unique_ids(value: Any, owner: str = "CancelPointsOperator") -> tuple[list[PointItem], int, int]:
    """Validate an XCom of unique_ids; return ``(items in first-seen order, rows, duplicates)``.

    Accepts ints or digit strings, 1-column rows (``[(123,), (456,)]``), dicts with ``unique_id``,
    and the string a non-native Jinja render makes of any of these.

    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    rows = load_rows(value, "unique_ids", owner)
    errors = InputErrors("unique_ids", owner)
    ids: dict[int, None] = {}
    for position, row in enumerate(rows):
        raw = row
        if isinstance(row, (list, tuple)):
            if len(row) != 1:
                errors.add(position, row, f"a row of {len(row)} columns; expected 1 (unique_id)")
                continue
            raw = row[0]
        elif isinstance(row, dict):
            keys = normalised_keys(row)
            if "uniqueid" not in keys:
                errors.add(position, row, "a dict without unique_id")
                continue
            raw = keys["uniqueid"]
        number, reason = positive_int(raw)
        if number is None:
            errors.add(position, raw, reason)
        else:
            ids[number] = None
    errors.raise_if_any()
    return [PointItem(uid) for uid in ids], len(rows), len(rows) - len(ids)


def parse_earns(value: Any, owner: str = "RevokeEarnOperator") -> tuple[list[EarnItem], int, int]:
    """Validate an XCom of earns; return ``(items in first-seen order, rows, duplicates)``.

    Accepts rows ``(customer_id, promotion_id, earn_id)``, dicts with ``customer_id``/``promotion_id``/
    ``earn_id`` (camelCase too), and the string a non-native Jinja render makes of either.

    :raises AirflowFailException: naming the first offending rows, before anything is sent.
    """
    rows = load_rows(value, "earns", owner)
    errors = InputErrors("earns", owner)
    earns: dict[EarnItem, None] = {}
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
            earns[EarnItem(customer, promotion, earn)] = None
    errors.raise_if_any()
    return list(earns), len(rows), len(rows) - len(earns)
