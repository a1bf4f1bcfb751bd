"""The data of the runs: the sandbox's dataset cut into three days of reversals, loaded into the warehouse.

The sandbox generates its dataset from a seed; :func:`split_dataset` generates the same one here to
know every row and what the vendor will answer to it. Run 1 loads yesterday's rows, run 2 appends
today's to the same tables (:func:`load_day`), and run 3 a third slice that both of its runs extract.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from cluster.config import Settings

if TYPE_CHECKING:
    from cluster.services import Cluster


@dataclass
class RunData:
    """The warehouse rows of one run and what the vendor will answer to each."""

    day: date
    points: list[tuple[int, str]]
    point_outcomes: list[str]
    earns: list[tuple[int, str, str, str]]
    earn_outcomes: list[int]

    def earn_keys(self) -> list[str]:
        """Ledger keys of the earns."""
        return [f"{c}/{p}/{e}" for c, p, e, _ in self.earns]

    def earns_per_shard(self, shards: int) -> Counter[int]:
        """Earn rows per shard (= map index of ``revoke_earns``)."""
        return Counter(row[0] % shards for row in self.earns)


def split_dataset(settings: Settings, today: date) -> tuple[RunData, RunData, dict[str, int]]:
    """The sandbox's dataset, cut in two days of reversals (yesterday's for run 1, today's for run 2).

    Also returns how many point transactions and earns the vendors know, to check that the sandbox
    generated the same dataset.
    """
    from airflow_provider_loyalty.sandbox import generate_dataset

    data = generate_dataset(
        seed=settings.seed,
        points=settings.dataset_sizes()[0],
        earns=settings.dataset_sizes()[1],
        customers=settings.customers,
        big_customer_earns=settings.big_customer_earns,
        redeemed_share=settings.redeemed_share,
        invalid_share=settings.invalid_share,
        pos_share=settings.pos_share,
    )
    p, e = settings.points_per_run, settings.earns_per_run
    first = RunData(
        today - timedelta(days=1), data.point_reversals[:p], data.point_outcomes[:p], data.earn_reversals[:e],
        data.earn_outcomes[:e],
    )  # fmt: skip
    second = RunData(
        today, data.point_reversals[p : 2 * p], data.point_outcomes[p : 2 * p], data.earn_reversals[e : 2 * e],
        data.earn_outcomes[e : 2 * e],
    )  # fmt: skip
    return first, second, {"points": len(data.points_issued), "earns": len(data.earns)}


def overlap_day(settings: Settings, today: date) -> RunData:
    """The third slice of the dataset: the items both overlapping runs of run 3 extract (dated today)."""
    from airflow_provider_loyalty.sandbox import generate_dataset

    data = generate_dataset(
        seed=settings.seed,
        points=settings.dataset_sizes()[0],
        earns=settings.dataset_sizes()[1],
        customers=settings.customers,
        big_customer_earns=settings.big_customer_earns,
        redeemed_share=settings.redeemed_share,
        invalid_share=settings.invalid_share,
        pos_share=settings.pos_share,
    )
    p, e = 2 * settings.points_per_run, 2 * settings.earns_per_run
    return RunData(
        today, data.point_reversals[p:], data.point_outcomes[p:], data.earn_reversals[e:], data.earn_outcomes[e:]
    )


def create_warehouse(cluster: Cluster) -> None:
    """The two extraction tables (same shape as the demo's DuckDB warehouse)."""
    with cluster.db("loyalty") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE loyalty_points_reversals (unique_id BIGINT NOT NULL, reason VARCHAR, reversal_date DATE, "
            "order_id VARCHAR)"
        )
        cur.execute(
            "CREATE TABLE loyalty_earn_reversals (customer_id BIGINT NOT NULL, promotion_id VARCHAR NOT NULL, "
            "earn_id VARCHAR NOT NULL, reason VARCHAR, reversal_date DATE, order_id VARCHAR)"
        )


def load_day(cluster: Cluster, run: RunData) -> None:
    """Append a day of reversals to the warehouse with COPY."""

    def copy(cur: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        # The example DAGs pass each row's order_id on as the item's business reference.
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows:
            writer.writerow([*row, run.day.isoformat(), f"order-{row[-2]}"])
        buffer.seek(0)
        cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buffer)

    with cluster.db("loyalty") as conn, conn.cursor() as cur:
        copy(cur, "loyalty_points_reversals", list(run.points))
        copy(cur, "loyalty_earn_reversals", list(run.earns))
