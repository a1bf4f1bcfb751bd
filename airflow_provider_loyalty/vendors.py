"""What the provider knows about each vendor, in one frozen descriptor per vendor, and their registry.

Generic code — the engine, the ledger, the Reversals page, lineage, summaries — reads a vendor's
facts from its :class:`VendorSpec` (:func:`get`, :func:`all_specs`) and names no vendor and no id
field itself. A vendor is its item type, its hook and its operator, plus one :func:`register` call.

At the bottom of the import graph: it imports the item vocabulary and the vendors' documented
limits only, so a DAG file, the ledger and the page may all import it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_loyalty import vendor_limits
from airflow_provider_loyalty.items import EARN_KEY_SQL, POINTS_KEY_SQL, EarnItem, PointItem
from airflow_provider_loyalty.outcomes import AlreadyReversed

__all__ = [
    "CAPILLARY",
    "XOXODAY",
    "IdColumn",
    "VendorSpec",
    "all_specs",
    "get",
    "identity_columns",
    "register",
    "unregister",
]

#: A vendor name: a ledger value, a metric and Variable name part, a CSS class.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")
#: An identity column: a ledger column name, an item field, a CSV header.
_COLUMN = re.compile(r"[a-z][a-z0-9_]{0,62}")
#: The SQL types an identity column may have (portable across the ledger's engines).
_SQL_TYPE = re.compile(r"BIGINT|INTEGER|VARCHAR\([1-9][0-9]{0,3}\)")


@dataclass(frozen=True)
class IdColumn:
    """One field of a vendor's item id, stored in a ledger column of its own.

    :param name: the item field and ledger column (``unique_id``).
    :param sql: its portable SQL type (``BIGINT``, ``INTEGER`` or ``VARCHAR(n)``).
    :param label: how the page names it (``customer``).
    """

    name: str
    sql: str
    label: str = ""

    def __post_init__(self) -> None:
        if not _COLUMN.fullmatch(self.name):
            raise ValueError(f"identity column {self.name!r}: lower-case letters, digits and _")
        if not _SQL_TYPE.fullmatch(self.sql):
            raise ValueError(f"identity column {self.name!r}: SQL type must be BIGINT, INTEGER or VARCHAR(n)")

    @property
    def numeric(self) -> bool:
        """Whether the column holds integers (a search term must be digits to match it)."""
        return self.sql in ("BIGINT", "INTEGER")

    @property
    def title(self) -> str:
        """The page's label, or the column name."""
        return self.label or self.name


@dataclass(frozen=True)
class VendorSpec:
    """The facts of one vendor that generic code needs.

    :param name: ``xoxoday``: the ledger's ``vendor`` value, metric and Variable name part.
    :param title: ``Xoxoday Plum``: how people call it.
    :param item_type: the item class (a ``NamedTuple`` with ``key`` and ``ident()``; its fields are
        the identity columns).
    :param identity: the item's fields as ledger columns, in order.
    :param key_sql: SQL of the ledger's ``item_key`` over an extraction's identity columns
        (``{column}`` placeholders), beside the item's Python ``key``.
    :param input_name: the operator argument holding the items (``unique_ids``).
    :param conn_arg: the operator argument naming its connection (``xoxoday_conn_id``).
    :param operation: the vendor's reversal in lineage (``cancelPoints``).
    :param default_host: base URL when the connection has none (``""``: the host is required).
    :param paths: path prefixes of the vendor's own endpoints (a host pasted with one is trimmed).
    :param already_reversed: the vendor's "already reversed" answers (the operator's default).
    :param max_batch: items in one request at most.
    :param default_requests_per_minute: the operator's default pace (``None``: no limit).
    :param operator: the vendor operator's class name: summaries written before they named their
        vendor are known by it (``""``: none such).
    """

    name: str
    title: str
    item_type: type
    identity: tuple[IdColumn, ...]
    key_sql: str
    input_name: str
    conn_arg: str
    operation: str
    default_host: str = ""
    paths: tuple[str, ...] = ()
    already_reversed: AlreadyReversed = field(default_factory=AlreadyReversed)
    max_batch: int = 1
    default_requests_per_minute: float | None = None
    operator: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"vendor name {self.name!r}: 1-16 lower-case letters, digits and _")
        fields = getattr(self.item_type, "_fields", None)
        if fields != tuple(c.name for c in self.identity):
            raise ValueError(f"vendor {self.name!r}: the identity columns must be {self.item_type.__name__}'s fields")

    @property
    def columns(self) -> tuple[str, ...]:
        """The identity column names, in order."""
        return tuple(c.name for c in self.identity)

    def key_sql_of(self, **columns: str) -> str:
        """SQL of ``item_key`` over an extraction's columns (``unique_id="r.uid"``); missing ones keep their name."""
        return self.key_sql.format(**{c: columns.get(c, c) for c in self.columns})

    def ids_of(self, item: Any) -> dict[str, Any]:
        """The identity columns' values of one of this vendor's items."""
        return {c: getattr(item, c) for c in self.columns}


XOXODAY = VendorSpec(
    name="xoxoday",
    title="Xoxoday Plum",
    item_type=PointItem,
    identity=(IdColumn("unique_id", "BIGINT", "unique_id"),),
    key_sql=POINTS_KEY_SQL,
    input_name="unique_ids",
    conn_arg="xoxoday_conn_id",
    operation="cancelPoints",
    default_host="https://stagingstores.xoxoday.com",
    paths=("/chef/",),
    already_reversed=vendor_limits.XOXODAY_ALREADY_REVERSED,
    max_batch=vendor_limits.XOXODAY_MAX_BATCH_SIZE,
    operator="CancelPointsOperator",
)
CAPILLARY = VendorSpec(
    name="capillary",
    title="Capillary",
    item_type=EarnItem,
    identity=(
        IdColumn("customer_id", "BIGINT", "customer"),
        IdColumn("promotion_id", "VARCHAR(200)", "promotion"),
        IdColumn("earn_id", "VARCHAR(200)", "earn"),
    ),
    key_sql=EARN_KEY_SQL,
    input_name="earns",
    conn_arg="capillary_conn_id",
    operation="revokeEarn",
    paths=("/api_gateway/", "/v3/oauth/"),
    already_reversed=vendor_limits.CAPILLARY_ALREADY_REVERSED,
    max_batch=vendor_limits.CAPILLARY_MAX_EARN_IDS,
    default_requests_per_minute=vendor_limits.CAPILLARY_DEFAULT_REQUESTS_PER_MINUTE,
    operator="RevokeEarnOperator",
)


def points_key_sql(unique_id_column: str) -> str:
    """SQL expression of a Xoxoday item key from the extraction's unique_id column."""
    return XOXODAY.key_sql_of(unique_id=unique_id_column)


def earn_key_sql(customer_column: str, promotion_column: str, earn_column: str) -> str:
    """SQL expression of a Capillary item key (``customer/promotion/earn``) from the extraction's columns."""
    return CAPILLARY.key_sql_of(customer_id=customer_column, promotion_id=promotion_column, earn_id=earn_column)


_lock = threading.Lock()
_specs: dict[str, VendorSpec] = {}
#: :func:`identity_columns` as of the last change of the registry (read per ledger row: kept ready)
_identity: tuple[IdColumn, ...] = ()


def _changed() -> None:
    global _identity
    seen: dict[str, IdColumn] = {}
    for spec in _specs.values():
        for column in spec.identity:
            seen.setdefault(column.name, column)
    _identity = tuple(seen.values())


def register(spec: VendorSpec) -> VendorSpec:
    """Add ``spec`` to the registry (again: a no-op for the same spec); return it.

    Refused: another spec under a registered name, and an identity column another vendor declares
    with another SQL type (they share the ledger's column).
    """
    with _lock:
        known = _specs.get(spec.name)
        if known is not None:
            if known != spec:
                raise ValueError(f"vendor {spec.name!r} is registered already, with other facts")
            return known
        types = {c.name: c.sql for other in _specs.values() for c in other.identity}
        for column in spec.identity:
            if types.get(column.name, column.sql) != column.sql:
                raise ValueError(
                    f"vendor {spec.name!r}: identity column {column.name} is {types[column.name]} for another vendor"
                )
        _specs[spec.name] = spec
        _changed()
        return spec


def get(name: str) -> VendorSpec:
    """The spec registered as ``name``; ``ValueError`` naming the registered vendors otherwise."""
    spec = _specs.get(name)
    if spec is None:
        raise ValueError(f"vendor must be one of {', '.join(map(repr, _specs))}, got {name!r}")
    return spec


def all_specs() -> tuple[VendorSpec, ...]:
    """The registered specs, in registration order."""
    return tuple(_specs.values())


def identity_columns() -> tuple[IdColumn, ...]:
    """The union of the registered vendors' identity columns, each once, in registration order."""
    return _identity


def unregister(name: str) -> None:
    """Forget vendor ``name`` (a test's vendor, once the test is done); unknown names are ignored."""
    with _lock:
        _specs.pop(name, None)
        _changed()


register(XOXODAY)
register(CAPILLARY)
