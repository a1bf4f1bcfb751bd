"""Deterministic sample data: what the vendors know, and which reversals the warehouse holds."""

from __future__ import annotations

import csv
import os
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_loyalty.sandbox.state import SandboxState

POINTS_TABLE = "loyalty_points_reversals"
EARNS_TABLE = "loyalty_earn_reversals"

REASONS = ("return", "order_cancelled", "fraud", "duplicate_issue", "goodwill_reversal")
REASON_WEIGHTS = (55, 25, 10, 5, 5)

OUTCOME_CANCEL = "cancel"
OUTCOME_NOT_FOUND = "not_found"
OUTCOME_REVOKE = 0  # earn outcomes are 0 (revoked) or the vendor error code 729/730/731

_CART_PROMOTIONS = 12
_POS_PROMOTIONS = 2
_CODE_PROMOTIONS = 2
_BIG_CUSTOMER_PROMOTIONS = 3
_BIG = -1  # marker of the big customer's rows while generating


@dataclass
class Dataset:
    """Vendor-side data plus the pending reversals of the warehouse, as compact lists of tuples.

    :param points_issued: every point transaction id Xoxoday knows (all issued, none cancelled).
    :param promotions: Capillary promotions, ``promotion_id -> CART | POS | CODE``.
    :param earns: every earn Capillary knows, ``(customer_id, promotion_id, earn_id, redeemed)``.
    :param point_reversals: warehouse rows ``(unique_id, reason)``.
    :param earn_reversals: warehouse rows ``(customer_id, promotion_id, earn_id, reason)``.
    :param point_outcomes: per ``point_reversals`` row, what the vendor will answer to a first attempt:
        ``"cancel"`` or ``"not_found"``.
    :param earn_outcomes: per ``earn_reversals`` row: 0 (revoked) or the error code 729, 730 or 731.
    """

    seed: int
    reversal_date: date
    points_issued: list[int]
    promotions: dict[str, str]
    earns: list[tuple[int, str, str, bool]]
    point_reversals: list[tuple[int, str]]
    earn_reversals: list[tuple[int, str, str, str]]
    point_outcomes: list[str]
    earn_outcomes: list[int]
    big_customer_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def load_into(self, state: SandboxState) -> None:
        """Register the vendor-side data (issued points, promotions, earns) in a sandbox state."""
        state.add_points(self.points_issued)
        state.add_promotions(self.promotions)
        state.add_earns(self.earns)

    def expected(self) -> dict[str, Any]:
        """Return the outcome counts a correct, exactly-once run over all reversals must produce."""
        point_counts = Counter(self.point_outcomes)
        earn_counts = Counter(self.earn_outcomes)
        per_customer = Counter(row[0] for row in self.earn_reversals)
        return {
            "points": {
                "rows": len(self.point_reversals),
                "cancelled": point_counts[OUTCOME_CANCEL],
                "not_found": point_counts[OUTCOME_NOT_FOUND],
            },
            "earns": {
                "rows": len(self.earn_reversals),
                "revoked": earn_counts[OUTCOME_REVOKE],
                "729": earn_counts[729],
                "730": earn_counts[730],
                "731": earn_counts[731],
                "customers": len(per_customer),
                "min_requests": sum(-(-n // 1000) for n in per_customer.values()),
            },
            "big_customer": {
                "customer_id": self.big_customer_id,
                "earns": per_customer.get(self.big_customer_id, 0) if self.big_customer_id else 0,
            },
        }


#: First business reference (order id) of the point rows, and of the earn rows (three earns to an order).
POINT_ORDERS_FROM = 100_001
EARN_ORDERS_FROM = 500_001
EARNS_PER_ORDER = 3


def order_ids(dataset: Dataset) -> tuple[list[str], list[str]]:
    """The order id each warehouse row names (``ORD-100001``...): the business reference a DAG may pass on.

    Deterministic from the row's position: one order per point row, one per three earn rows.
    """
    points = [f"ORD-{POINT_ORDERS_FROM + i}" for i in range(len(dataset.point_reversals))]
    earns = [f"ORD-{EARN_ORDERS_FROM + i // EARNS_PER_ORDER}" for i in range(len(dataset.earn_reversals))]
    return points, earns


def _as_date(value: date | str | None) -> date:
    if value is None:
        return date.today()
    if isinstance(value, str):
        return date.fromisoformat(value)
    return value


class _ObjectIds:
    """24-hex ids shaped like MongoDB ObjectIds (timestamp, random, counter), unique by construction."""

    def __init__(self, rng: random.Random) -> None:
        self.ts = 0x65000000 + rng.getrandbits(24)
        self.rand = rng.getrandbits(40)
        self.counter0 = rng.getrandbits(24)
        self.next = 0

    def take(self, n: int) -> list[str]:
        ts, rand, c0, start = self.ts, self.rand, self.counter0, self.next
        self.next += n
        return [f"{ts + (c >> 8):08x}{rand:010x}{(c0 + c) & 0xFFFFFF:06x}" for c in range(start, start + n)]


def generate_dataset(
    seed: int = 42,
    points: int = 2000,
    earns: int = 3000,
    customers: int | None = None,
    redeemed_share: float = 0.05,
    invalid_share: float = 0.02,
    pos_share: float = 0.01,
    big_customer_earns: int = 1500,
    reversal_date: date | str | None = None,
    extra_share: float = 0.1,
) -> Dataset:
    """Generate a deterministic dataset (same seed and sizes -> same data).

    :param points: rows of ``point_reversals``; ``invalid_share`` of them are ids Xoxoday doesn't know.
    :param earns: rows of ``earn_reversals``, including the big customer's rows. Of all rows,
        ``redeemed_share`` are redeemed earns (729), ``pos_share`` earns of POS/CODE promotions (730),
        ``invalid_share`` invalid earn ids (731: unknown id, another customer's earn, or the wrong
        promotion); the rest are unredeemed CART earns that revoke.
    :param customers: distinct ordinary customers (default: one per five rows).
    :param big_customer_earns: rows of one extra customer (all revocable, over three promotions), so that
        a client has to split that customer into several requests of at most 1000 earn ids.
    :param reversal_date: the warehouse's ``reversal_date`` (date or ISO string; default today).
    :param extra_share: additional transactions/earns the vendors know that are *not* to be reversed.
    """
    if min(points, earns, big_customer_earns) < 0:
        raise ValueError("sizes must be >= 0")
    rng = random.Random(seed)
    day = _as_date(reversal_date)
    reason_weights = list(REASON_WEIGHTS)

    # --- Xoxoday point transactions: ascending 10-digit ids with random gaps (unique by construction).
    n_unknown = round(points * invalid_share)
    n_extra_points = round(points * extra_share)
    n_ids = points + n_extra_points
    getrandbits = rng.getrandbits
    gaps = [getrandbits(10) + 1 for _ in range(n_ids)]
    point_ids = list(accumulate(gaps, initial=rng.randrange(1_000_000_000, 2_000_000_000)))[1:]
    extra_positions = set(rng.sample(range(n_ids), n_extra_points))
    reversal_ids = [uid for i, uid in enumerate(point_ids) if i not in extra_positions]
    unknown_positions = set(rng.sample(range(points), n_unknown))
    point_outcomes = [OUTCOME_NOT_FOUND if i in unknown_positions else OUTCOME_CANCEL for i in range(points)]
    points_issued = [uid for i, uid in enumerate(reversal_ids) if i not in unknown_positions]
    points_issued.extend(point_ids[i] for i in sorted(extra_positions))
    reasons = rng.choices(REASONS, reason_weights, k=points)
    point_reversals = list(zip(reversal_ids, reasons, strict=True))

    # --- Capillary promotions and earns.
    oids = _ObjectIds(rng)
    promo_ids = oids.take(_CART_PROMOTIONS + _POS_PROMOTIONS + _CODE_PROMOTIONS)
    cart = promo_ids[:_CART_PROMOTIONS]
    not_revocable = promo_ids[_CART_PROMOTIONS:]
    promotions = dict.fromkeys(cart, "CART")
    promotions.update(dict.fromkeys(not_revocable[:_POS_PROMOTIONS], "POS"))
    promotions.update(dict.fromkeys(not_revocable[_POS_PROMOTIONS:], "CODE"))

    n_big = min(big_customer_earns, earns)
    n_redeemed = round(earns * redeemed_share)
    n_pos = round(earns * pos_share)
    n_invalid = round(earns * invalid_share)
    n_ok = earns - n_big - n_redeemed - n_pos - n_invalid
    if n_ok < 0:
        raise ValueError("shares and big_customer_earns exceed the number of earns")
    n_customers = customers if customers is not None else max(1, (earns - n_big) // 5)
    customer_ids = rng.sample(range(100_000_000, 1_000_000_000), n_customers + 1)
    big_customer = customer_ids.pop() if n_big else None

    n_extra_earns = round(earns * extra_share)
    earn_ids = oids.take(earns + n_extra_earns)
    extra_ids = earn_ids[earns:]
    extra_customers = rng.choices(customer_ids, k=n_extra_earns)
    extra_promos = rng.choices(cart, k=n_extra_earns)
    redeemed_flags = [rng.random() < 0.1 for _ in range(n_extra_earns)]
    extras = list(zip(extra_customers, extra_promos, extra_ids, redeemed_flags, strict=True))
    vendor_earns: list[tuple[int, str, str, bool]] = list(extras)

    kinds = [0] * earns
    special = [729] * n_redeemed + [730] * n_pos + [731] * n_invalid + [_BIG] * n_big
    for position, kind in zip(rng.sample(range(earns), len(special)), special, strict=True):
        kinds[position] = kind
    row_customers = rng.choices(customer_ids, k=earns)
    row_promos = rng.choices(cart, k=earns)
    row_reasons = rng.choices(REASONS, reason_weights, k=earns)
    big_promos = cart[:_BIG_CUSTOMER_PROMOTIONS]
    earn_reversals: list[tuple[int, str, str, str]] = []
    earn_outcomes: list[int] = []
    n_extra_used = 0
    n_invalid_seen = 0
    n_big_seen = 0
    append_row = earn_reversals.append
    append_earn = vendor_earns.append
    for i, kind in enumerate(kinds):
        customer, promo, earn_id = row_customers[i], row_promos[i], earn_ids[i]
        if kind == 0 or kind == 729:
            append_earn((customer, promo, earn_id, kind == 729))
        elif kind == _BIG:
            assert big_customer is not None
            customer = big_customer
            promo = big_promos[n_big_seen % len(big_promos)]
            n_big_seen += 1
            append_earn((customer, promo, earn_id, False))
            kind = 0
        elif kind == 730:
            promo = not_revocable[i % len(not_revocable)]
            append_earn((customer, promo, earn_id, False))
        else:  # 731
            variant = n_invalid_seen % 3
            n_invalid_seen += 1
            if variant and n_extra_used < n_extra_earns and len(customer_ids) > 1:
                owner, promo, earn_id, _ = extras[n_extra_used]
                n_extra_used += 1
                if variant == 1:  # another customer's earn
                    if customer == owner:
                        customer = customer_ids[(customer_ids.index(owner) + 1) % len(customer_ids)]
                else:  # this customer's earn, named under the wrong promotion
                    customer = owner
                    promo = cart[(cart.index(promo) + 1) % len(cart)]
            # variant 0 (or no extra earn left): an id the vendor has never seen.
        append_row((customer, promo, earn_id, row_reasons[i]))
        earn_outcomes.append(kind)

    return Dataset(
        seed=seed,
        reversal_date=day,
        points_issued=points_issued,
        promotions=promotions,
        earns=vendor_earns,
        point_reversals=point_reversals,
        earn_reversals=earn_reversals,
        point_outcomes=point_outcomes,
        earn_outcomes=earn_outcomes,
        big_customer_id=big_customer,
        params={
            "seed": seed,
            "points": points,
            "earns": earns,
            "customers": n_customers,
            "redeemed_share": redeemed_share,
            "invalid_share": invalid_share,
            "pos_share": pos_share,
            "big_customer_earns": n_big,
            "extra_share": extra_share,
        },
    )


def write_duckdb(
    path: str | os.PathLike[str], dataset: Dataset, reversal_date: date | str | None = None
) -> dict[str, int]:
    """Create or replace the two reversal tables in a DuckDB file; return their row counts.

    Tables: ``loyalty_points_reversals(unique_id BIGINT NOT NULL, reason VARCHAR, reversal_date DATE,
    order_id VARCHAR)`` and ``loyalty_earn_reversals(customer_id BIGINT NOT NULL, promotion_id VARCHAR
    NOT NULL, earn_id VARCHAR NOT NULL, reason VARCHAR, reversal_date DATE, order_id VARCHAR)``
    (``order_id``: :func:`order_ids`). Rows are bulk-loaded from a temporary CSV file, so a million
    rows take a few seconds. Any other database: :func:`.warehouse.write_sql`.
    """
    import duckdb

    day = _as_date(reversal_date if reversal_date is not None else dataset.reversal_date)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loyalty-sandbox-") as tmp:
        points_csv = os.path.join(tmp, "points.csv")
        earns_csv = os.path.join(tmp, "earns.csv")
        point_orders, earn_orders = order_ids(dataset)
        with open(points_csv, "w", newline="") as fh:
            csv.writer(fh).writerows(
                (*row, order) for row, order in zip(dataset.point_reversals, point_orders, strict=True)
            )
        with open(earns_csv, "w", newline="") as fh:
            csv.writer(fh).writerows(
                (*row, order) for row, order in zip(dataset.earn_reversals, earn_orders, strict=True)
            )
        con = duckdb.connect(str(path))
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(
                f"CREATE OR REPLACE TABLE {POINTS_TABLE} "
                "(unique_id BIGINT NOT NULL, reason VARCHAR, reversal_date DATE, order_id VARCHAR)"
            )
            con.execute(
                f"INSERT INTO {POINTS_TABLE} SELECT unique_id, reason, CAST(? AS DATE), order_id FROM read_csv(?, "
                "header = false, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
                "columns = {'unique_id': 'BIGINT', 'reason': 'VARCHAR', 'order_id': 'VARCHAR'})",
                [day, points_csv],
            )
            con.execute(
                f"CREATE OR REPLACE TABLE {EARNS_TABLE} (customer_id BIGINT NOT NULL, "
                "promotion_id VARCHAR NOT NULL, earn_id VARCHAR NOT NULL, reason VARCHAR, reversal_date DATE, "
                "order_id VARCHAR)"
            )
            con.execute(
                f"INSERT INTO {EARNS_TABLE} SELECT customer_id, promotion_id, earn_id, reason, "
                "CAST(? AS DATE), order_id FROM read_csv(?, header = false, auto_detect = false, delim = ',', "
                "quote = '\"', escape = '\"', columns = {'customer_id': 'BIGINT', "
                "'promotion_id': 'VARCHAR', 'earn_id': 'VARCHAR', 'reason': 'VARCHAR', 'order_id': 'VARCHAR'})",
                [day, earns_csv],
            )
            con.execute("COMMIT")
            counts = {
                POINTS_TABLE: _count(con, POINTS_TABLE),
                EARNS_TABLE: _count(con, EARNS_TABLE),
            }
        finally:
            con.close()
    return counts


def _count(con: Any, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0
