"""A small, known ledger history for the Reversals page's tests (any DB-API connection)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from airflow_provider_loyalty.items import invalid_key
from airflow_provider_loyalty.ledger import LedgerRow, columns, create_table_sql

DAG_ID = "loyalty_daily_reversals"
#: A second team's DAG: a user allowed on it only sees its rows.
OTHER_DAG_ID = "loyalty_partner_reversals"
XSS = "<script>alert('ledger')</script> & \"quoted\""


def run_id_for(day: date) -> str:
    # ':' and '+' as real run ids have them: links must encode them.
    return f"scheduled__{day.isoformat()}T00:00:00+00:00"


def other_run_id_for(day: date) -> str:
    return f"manual__{day.isoformat()}T08:00:00+00:00"


@dataclass
class Seeded:
    """What was written, for the assertions."""

    today: date
    rows: list[LedgerRow] = field(default_factory=list)

    def count(self, day: date, vendor: str, status: str, kind: str | None = None) -> int:
        return sum(
            1
            for r in self.rows
            if r.recorded_at.date() == day
            and r.vendor == vendor
            and r.status == status
            and (kind is None or r.failure_kind == kind)
        )

    def dag_ids(self) -> set[str]:
        return {str(r.dag_id) for r in self.rows}


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
    status: str | None = None,
    dag_id: str = DAG_ID,
    reference: str | None = None,
) -> LedgerRow:
    status = status or ("succeeded" if ok else "failed")
    return LedgerRow(
        vendor=vendor,
        item_key=key,
        ids={name: value for name, value in ids.items() if value is not None},
        status=status,
        failure_kind=(kind or "permanent") if status == "failed" else None,
        code=code,
        message=message,
        dag_id=dag_id,
        run_id=run_id or (run_id_for(when.date()) if dag_id == DAG_ID else other_run_id_for(when.date())),
        task_id=task,
        map_index=map_index,
        try_number=try_number,
        recorded_at=when,
        reference=reference,
    )


def history(now: datetime | None = None) -> Seeded:
    """Rows over the last 30 days plus one older than the window.

    * xoxoday: unique_ids 1001..1030, one per day back from today (day k has 1001+k), succeeded; 2001..2005
      refused (``rejected``, Transaction not found) today; 3001 failed transiently two days ago and
      succeeded yesterday (try 2); 999 reversed 40 days ago (outside the window).
    * capillary: customer 501, promotion P-9, earns E-1..E-8 revoked yesterday (a mapped task, index 2);
      E-9 and E-10 refused today with 729; customer 502 earn E-11 refused with an XSS-looking message.
    * intents (``sending``): xoxoday 5001 sent today with no answer (in doubt); 5002 sent today and
      answered "already reversed" (reconciled); capillary 501/P-9/E-12 sent today, the request
      refused as a whole (``rejected``, http_401); capillary 504/P-4/E-30 sent 40 days ago with no
      answer (in doubt, outside the window).
    * the other DAG (``OTHER_DAG_ID``): xoxoday 4001 reversed yesterday, 4002 sent today with no
      answer (in doubt); capillary 503/P-5/E-20 refused today with 730, and 501/P-9/E-9 (also the
      first DAG's) refused yesterday with 729.
    * references (order ids): 1001 is ``ORD-100001``; E-1, E-2 and E-3 are one order, ``ORD-500001``;
      E-9 (both DAGs' rows) is ``ORD-500003``.
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
        ref = {"reference": "ORD-100001"} if uid == 1001 else {}
        rows.append(
            _row("xoxoday", str(uid), {"unique_id": uid}, True, at(k), message="Points cancelled successfully", **ref)
        )
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
        ref = {"reference": "ORD-500001"} if n <= 3 else {}
        rows.append(_row("capillary", f"501/P-9/E-{n}", ids, True, at(1), task="revoke_earns", map_index=2, **ref))
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
                reference="ORD-500003" if n == 9 else None,
            )
        )
    ids = {"customer_id": 502, "promotion_id": "P-7", "earn_id": "E-11"}
    rows.append(_row("capillary", "502/P-7/E-11", ids, False, at(0), code="731", task="revoke_earns", message=XSS))

    def today_at(second: int) -> datetime:
        return datetime.combine(today, time(0, 0, second))

    rows.append(_row("xoxoday", "5001", {"unique_id": 5001}, False, today_at(2), status="sending"))
    rows.append(_row("xoxoday", "5002", {"unique_id": 5002}, False, today_at(2), status="sending"))
    rows.append(
        _row(
            "xoxoday",
            "5002",
            {"unique_id": 5002},
            True,
            today_at(3),
            code="already_reversed",
            message="Already cancelled",
        )
    )
    e12 = {"customer_id": 501, "promotion_id": "P-9", "earn_id": "E-12"}
    rows.append(_row("capillary", "501/P-9/E-12", e12, False, today_at(2), status="sending", task="revoke_earns"))
    rows.append(
        _row(
            "capillary",
            "501/P-9/E-12",
            e12,
            False,
            today_at(3),
            kind="rejected",
            code="http_401",
            message="Unauthorized",
            task="revoke_earns",
        )
    )
    e30 = {"customer_id": 504, "promotion_id": "P-4", "earn_id": "E-30"}
    rows.append(_row("capillary", "504/P-4/E-30", e30, False, at(40), status="sending", task="revoke_earns"))

    other = {"dag_id": OTHER_DAG_ID}
    rows.append(_row("xoxoday", "4001", {"unique_id": 4001}, True, at(1), message="Points cancelled", **other))
    rows.append(_row("xoxoday", "4002", {"unique_id": 4002}, False, today_at(2), status="sending", **other))
    e20 = {"customer_id": 503, "promotion_id": "P-5", "earn_id": "E-20"}
    rows.append(
        _row("capillary", "503/P-5/E-20", e20, False, at(0), code="730", message="Promotion cannot be revoked", **other)
    )
    e9 = {"customer_id": 501, "promotion_id": "P-9", "earn_id": "E-9"}
    rows.append(
        _row(
            "capillary",
            "501/P-9/E-9",
            e9,
            False,
            at(1),
            code="729",
            message="Earn already redeemed (partner)",
            reference="ORD-500003",
            **other,
        )
    )
    return seeded


RETRY_RUN = "scheduled__retry"


def retry_history(*, retried: bool, now: datetime | None = None) -> list[LedgerRow]:
    """One run today whose first try a rate limit (429) stopped, and (``retried``) its second try.

    Try 1: 7001 (``ORD-7001``) succeeded; 7002 got 429 after its retries (failed, transient,
    ``http_429``); 7003 and 7004 were not sent (``not_sent``); the input row ``'abc'`` (``ORD-7005``)
    was invalid.
    Try 2 (``retried``): 7002, 7003 and 7004 succeeded.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    start = datetime.combine(now.date(), time(0, 0, 10))
    base = {"run_id": RETRY_RUN}
    rows = []
    for uid in (7001, 7002):
        ids = {"unique_id": uid}
        rows.append(_row("xoxoday", str(uid), ids, False, start, status="sending", reference=f"ORD-{uid}", **base))
    rows.append(_row("xoxoday", "7001", {"unique_id": 7001}, True, start, reference="ORD-7001", **base))
    rows.append(
        _row(
            "xoxoday", "7002", {"unique_id": 7002}, False, start + timedelta(seconds=1), kind="transient",
            code="http_429", message="rate limited (429) after 5 attempt(s)", reference="ORD-7002", **base,
        )
    )  # fmt: skip
    for uid in (7003, 7004):
        rows.append(
            _row(
                "xoxoday", str(uid), {"unique_id": uid}, False, start + timedelta(seconds=1), kind="transient",
                code="not_sent", message="not sent: VendorRateLimitError", reference=f"ORD-{uid}", **base,
            )
        )  # fmt: skip
    rows.append(
        _row(
            "xoxoday", invalid_key("abc"), {}, False, start, status="invalid", code="invalid",
            message="row 5: not an integer", reference="ORD-7005", **base,
        )
    )  # fmt: skip
    if retried:
        later = start + timedelta(seconds=30)
        for uid in (7002, 7003, 7004):
            ids = {"unique_id": uid}
            again = {**base, "try_number": 2, "reference": f"ORD-{uid}"}
            rows.append(_row("xoxoday", str(uid), ids, False, later, status="sending", **again))
            rows.append(_row("xoxoday", str(uid), ids, True, later + timedelta(seconds=1), **again))
    return rows


def write(conn: Any, table: str, rows: list[LedgerRow], placeholder: str) -> None:
    """Create ``table`` and insert ``rows`` through a DB-API connection (as the ledger does); commit."""
    cursor = conn.cursor()
    statements = create_table_sql(table)  # the ledger's own DDL (one statement or a list)
    for statement in [statements] if isinstance(statements, str) else statements:
        cursor.execute(statement)
    names = columns()
    marks = ", ".join([placeholder] * len(names))
    for row in rows:
        cursor.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", row.values(names))
    cursor.close()
    conn.commit()
