"""A small, known ledger history for the Reversals page's tests (any DB-API connection)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from airflow_provider_loyalty.ledger import COLUMNS, create_table_sql

DAG_ID = "loyalty_daily_reversals"
XSS = "<script>alert('ledger')</script> & \"quoted\""


def run_id_for(day: date) -> str:
    # ':' and '+' as real run ids have them: links must encode them.
    return f"scheduled__{day.isoformat()}T00:00:00+00:00"


@dataclass
class Seeded:
    """What was written, for the assertions."""

    today: date
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def count(self, day: date, vendor: str, status: str, kind: str | None = None) -> int:
        return sum(
            1
            for r in self.rows
            if r[15].date() == day and r[0] == vendor and r[6] == status and (kind is None or r[7] == kind)
        )


def _row(
    vendor: str,
    key: str,
    ids: dict[str, Any],
    ok: bool,
    when: datetime,
    *,
    kind: str | None = None,
    code: str | None = None,
    message: str = "",
    task: str = "cancel_points",
    try_number: int = 1,
    run_id: str | None = None,
    map_index: int = -1,
) -> tuple[Any, ...]:
    return (
        vendor,
        key,
        ids.get("unique_id"),
        ids.get("customer_id"),
        ids.get("promotion_id"),
        ids.get("earn_id"),
        "succeeded" if ok else "failed",
        None if ok else (kind or "permanent"),
        code,
        message,
        DAG_ID,
        run_id or run_id_for(when.date()),
        task,
        map_index,
        try_number,
        when,
    )


def history(now: datetime | None = None) -> Seeded:
    """Rows over the last 30 days plus one older than the window.

    * xoxoday: unique_ids 1001..1030, one per day back from today (day k has 1001+k), succeeded; 2001..2005
      refused (``rejected``, Transaction not found) today; 3001 failed transiently two days ago and
      succeeded yesterday (try 2); 999 reversed 40 days ago (outside the window).
    * capillary: customer 501, promotion P-9, earns E-1..E-8 revoked yesterday (a mapped task, index 2);
      E-9 and E-10 refused today with 729; customer 502 earn E-11 refused with an XSS-looking message.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    today = now.date()
    seeded = Seeded(today=today)

    def at(days_ago: int) -> datetime:
        day = today - timedelta(days=days_ago)
        return datetime.combine(day, time(0, 0, 1)) if days_ago == 0 else datetime.combine(day, time(12, 0))

    rows = seeded.rows
    for k in range(30):
        uid = 1001 + k
        rows.append(_row("xoxoday", str(uid), {"unique_id": uid}, True, at(k), message="Points cancelled successfully"))
    for uid in range(2001, 2006):
        rows.append(
            _row(
                "xoxoday", str(uid), {"unique_id": uid}, False, at(0), code="rejected", message="Transaction not found"
            )
        )
    rows.append(
        _row(
            "xoxoday",
            "3001",
            {"unique_id": 3001},
            False,
            at(2),
            kind="transient",
            code="http_503",
            message="Service unavailable",
        )
    )
    rows.append(
        _row(
            "xoxoday",
            "3001",
            {"unique_id": 3001},
            True,
            at(1),
            try_number=2,
            run_id=run_id_for(today - timedelta(days=2)),
            message="Points cancelled successfully",
        )
    )
    rows.append(_row("xoxoday", "999", {"unique_id": 999}, True, at(40), message="Points cancelled successfully"))
    for n in range(1, 9):
        ids = {"customer_id": 501, "promotion_id": "P-9", "earn_id": f"E-{n}"}
        rows.append(_row("capillary", f"501/P-9/E-{n}", ids, True, at(1), task="revoke_earns", map_index=2))
    for n in (9, 10):
        ids = {"customer_id": 501, "promotion_id": "P-9", "earn_id": f"E-{n}"}
        rows.append(
            _row(
                "capillary",
                f"501/P-9/E-{n}",
                ids,
                False,
                at(0),
                code="729",
                task="revoke_earns",
                message="Earn already redeemed",
            )
        )
    ids = {"customer_id": 502, "promotion_id": "P-7", "earn_id": "E-11"}
    rows.append(_row("capillary", "502/P-7/E-11", ids, False, at(0), code="731", task="revoke_earns", message=XSS))
    return seeded


def write(conn: Any, table: str, rows: list[tuple[Any, ...]], placeholder: str) -> None:
    """Create ``table`` and insert ``rows`` through a DB-API connection (as the ledger does); commit."""
    cursor = conn.cursor()
    statements = create_table_sql(table)  # the ledger's own DDL (one statement or a list)
    for statement in [statements] if isinstance(statements, str) else statements:
        cursor.execute(statement)
    marks = ", ".join([placeholder] * len(COLUMNS))
    for row in rows:
        cursor.execute(f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({marks})", list(row))
    cursor.close()
    conn.commit()
