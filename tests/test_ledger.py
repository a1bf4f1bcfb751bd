"""The ledger on real databases: DuckDB and SQLite files, and PostgreSQL when a server is configured."""

from __future__ import annotations

import os
import threading
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_loyalty.items import EarnItem, InvalidRow, PointItem, invalid_key
from airflow_provider_loyalty.ledger import (
    ReversalLedger,
    _connection,
    check_table_name,
    columns,
    earn_key_sql,
    in_doubt_sql,
    not_done_predicate,
    points_key_sql,
)
from airflow_provider_loyalty.ledger._connection import table_columns
from airflow_provider_loyalty.outcomes import FailureKind, Outcome
from tests.conftest import set_connection

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
BACKENDS = ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


def test_postgres_is_configured_where_required() -> None:
    if os.environ.get("LOYALTY_REQUIRE_POSTGRES") and not POSTGRES_URI:
        pytest.fail("LOYALTY_REQUIRE_POSTGRES is set but LOYALTY_TEST_POSTGRES_URI is not")


@pytest.fixture(params=BACKENDS)
def ledger_conn(request, monkeypatch, tmp_path) -> tuple[str, str]:
    """Return (conn_id, table) of an empty ledger on the backend."""
    backend = request.param
    table = f"ledger_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    elif backend == "duckdb":
        set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(tmp_path / "l.duckdb"))
    else:
        if not POSTGRES_URI:
            pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
        monkeypatch.setenv("AIRFLOW_CONN_LEDGER", POSTGRES_URI)
    yield "ledger", table
    if backend == "postgres":
        ledger = ReversalLedger("ledger", table)
        conn = ledger.hook.get_conn()
        conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()


def results(keys: range, ok: bool = True) -> list[Outcome]:
    if ok:
        return [Outcome.succeeded(PointItem(k)) for k in keys]
    return [Outcome.failed(PointItem(k), "refused", "no", FailureKind.PERMANENT) for k in keys]


def run(n: int = 1) -> dict:
    return {"dag_id": "dag", "run_id": f"run{n}", "task_id": "cancel", "map_index": -1, "try_number": n}


def test_record_and_look_up_in_chunks(ledger_conn) -> None:
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    ledger.record("xoxoday", results(range(1, 1201)), run())
    ledger.record("xoxoday", results(range(1201, 1301), ok=False), run())
    ledger.record("capillary", results(range(1, 11)), run())
    candidates = [str(k) for k in range(1, 1400)]
    done = ledger.done_keys("xoxoday", iter(candidates))
    assert done == {str(k) for k in range(1, 1201)}
    assert ledger.counts() == [
        ("capillary", "succeeded", None, 10),
        ("xoxoday", "failed", "permanent", 100),
        ("xoxoday", "succeeded", None, 1200),
    ]
    ledger.close()
    # a second ledger object (another task) sees the same, and creating the table again is harmless
    again = ReversalLedger(conn_id, table)
    again.ensure_table()
    assert again.done_keys("xoxoday", ["5", "1250", "99999"]) == {"5"}
    again.close()


def test_extraction_anti_join(ledger_conn) -> None:
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    ledger.record("xoxoday", results(range(1, 3)), run())
    ledger.record("xoxoday", results(range(3, 4), ok=False), run())  # refused for good
    ledger.record("xoxoday", [Outcome.failed(PointItem(4), "http_503", "", FailureKind.TRANSIENT)], run())
    ledger.record("xoxoday", [Outcome.succeeded(PointItem(6))], run())
    ledger.record_intent("xoxoday", [PointItem(5)], run())  # in doubt: extracted again, to reconcile
    ledger.record("capillary", [Outcome.succeeded(EarnItem(7, "p1", "e1"))], run())
    conn = ledger.hook.get_conn()
    cursor = conn.cursor()
    src_p, src_e = f"{table}_points", f"{table}_earns"
    cursor.execute(f"CREATE TABLE {src_p} (unique_id BIGINT)")
    cursor.execute(f"INSERT INTO {src_p} VALUES (1), (2), (3), (4), (5), (6)")
    cursor.execute(f"CREATE TABLE {src_e} (customer_id BIGINT, promotion_id VARCHAR(30), earn_id VARCHAR(30))")
    cursor.execute(f"INSERT INTO {src_e} VALUES (7, 'p1', 'e1'), (7, 'p1', 'e2')")
    conn.commit()
    cursor.execute(
        f"SELECT unique_id FROM {src_p} s WHERE "
        f"{not_done_predicate('xoxoday', points_key_sql('s.unique_id'), table)} ORDER BY 1"
    )
    assert [r[0] for r in cursor.fetchall()] == [4, 5]
    predicate = not_done_predicate("xoxoday", points_key_sql("s.unique_id"), table, skip_permanent_failures=False)
    cursor.execute(f"SELECT unique_id FROM {src_p} s WHERE {predicate} ORDER BY 1")
    assert [r[0] for r in cursor.fetchall()] == [3, 4, 5]
    cursor.execute(
        f"SELECT earn_id FROM {src_e} s WHERE "
        f"{not_done_predicate('capillary', earn_key_sql('s.customer_id', 's.promotion_id', 's.earn_id'), table)}"
    )
    assert [r[0] for r in cursor.fetchall()] == ["e2"]
    for t in (src_p, src_e):
        cursor.execute(f"DROP TABLE {t}")
    conn.commit()
    conn.close()
    ledger.close()


def test_concurrent_writers(ledger_conn) -> None:
    """Several tasks (here threads, each with its own ledger and connection) append to one table."""
    conn_id, table = ledger_conn
    ReversalLedger(conn_id, table).ensure_table()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        ledger = ReversalLedger(conn_id, table)
        try:
            for batch in range(5):
                start = n * 1000 + batch * 100
                ledger.record("xoxoday", results(range(start, start + 100)), run(n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            ledger.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ReversalLedger(conn_id, table).counts() == [("xoxoday", "succeeded", None, 2000)]


@pytest.mark.parametrize(
    "name",
    ["ledger; DROP TABLE x", "a b", "", "1abc", "a.b.c.d", "a.b.c", "ledger\n", " ledger", "lédger", "a..b"],
    ids=[
        "injection",
        "space",
        "empty",
        "digit_first",
        "four_parts",
        "three_parts",
        "trailing_newline",
        "leading_space",
        "non_ascii",
        "empty_part",
    ],
)
def test_table_names_are_identifiers(name) -> None:
    with pytest.raises(ValueError, match="identifier"):
        check_table_name(name)


@pytest.mark.parametrize(
    "name", ["select", "ORDER", "user", "public.table", "group.ledger", "transaction", "commit", "pivot", "glob"]
)
def test_reserved_words_are_refused_as_table_names(name) -> None:
    with pytest.raises(ValueError, match="reserved"):
        check_table_name(name)


@pytest.mark.parametrize("name", ["temp.ledger", "TEMPORARY.ledger", "pg_temp.ledger", "pg_temp_3.ledger"])
def test_temporary_schemas_are_refused(name) -> None:
    with pytest.raises(ValueError, match="temporary schema"):
        check_table_name(name)


@pytest.mark.parametrize("name", ["loyalty_reversal_ledger", "analytics.loyalty_ledger", "_l2", "users"])
def test_plain_table_names_pass(name) -> None:
    assert check_table_name(name) == name


def test_lookup_tells_settled_from_in_doubt(ledger_conn) -> None:
    """An intent with no outcome after it is in doubt; a definite refusal or not-sent answer is not."""
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    items = {n: PointItem(n) for n in range(1, 8)}
    ledger.record_intent("xoxoday", list(items.values()), run(1))
    ledger.record("xoxoday", [Outcome.succeeded(items[1])], run(1))
    ledger.record(
        "xoxoday", [Outcome.failed(items[2], "refused", "Transaction not found", FailureKind.PERMANENT)], run(1)
    )
    ledger.record("xoxoday", [Outcome.failed(items[3], "unknown", "not in answer", FailureKind.TRANSIENT)], run(1))
    ledger.record("xoxoday", [Outcome.failed(items[4], "not_sent", "not sent", FailureKind.TRANSIENT)], run(1))
    ledger.record("xoxoday", [Outcome.failed(items[5], "401", "credentials", FailureKind.REJECTED)], run(1))
    # 6 and 7: intent only (the worker died); 7 then resent and answered in run 2
    ledger.record_intent("xoxoday", [items[7]], run(2))
    ledger.record("xoxoday", [Outcome.failed(items[7], "refused", "nope", FailureKind.PERMANENT)], run(2))
    settled, doubt = ledger.lookup("xoxoday", [i.key for i in items.values()])
    assert {k: v.ok for k, v in settled.items()} == {"1": True, "2": False, "7": False}
    assert set(doubt) == {"3", "6"}
    assert doubt["6"].run_id == "run1"
    settled, doubt = ledger.lookup("xoxoday", [i.key for i in items.values()], include_refused=False)
    assert set(settled) == {"1"}
    assert ledger.counts() == [
        ("xoxoday", "failed", "permanent", 2),
        ("xoxoday", "failed", "rejected", 1),
        ("xoxoday", "failed", "transient", 2),
        ("xoxoday", "succeeded", None, 1),
    ]
    cursor = ledger.hook.get_conn().cursor()
    cursor.execute(in_doubt_sql(table))
    assert sorted(r[1] for r in cursor.fetchall()) == ["3", "6"]  # the SQL says what the look-up says
    ledger.close()


#: The ledger table as release 0.1 created it (written out: the DDL of that release, not today's).
V0_1_TABLE = """CREATE TABLE {table} (
    vendor VARCHAR(16) NOT NULL,
    item_key VARCHAR(512) NOT NULL,
    unique_id BIGINT,
    customer_id BIGINT,
    promotion_id VARCHAR(200),
    earn_id VARCHAR(200),
    status VARCHAR(16) NOT NULL,
    failure_kind VARCHAR(16),
    code VARCHAR(64),
    message VARCHAR(1000),
    dag_id VARCHAR(250),
    run_id VARCHAR(250),
    task_id VARCHAR(250),
    map_index INTEGER,
    try_number INTEGER,
    recorded_at TIMESTAMP NOT NULL
)"""
#: An older layout still: no attempt columns (so that the addition is exercised even before a
#: column is added to today's list).
NO_ATTEMPT_TABLE = """CREATE TABLE {table} (
    vendor VARCHAR(16) NOT NULL,
    item_key VARCHAR(512) NOT NULL,
    unique_id BIGINT,
    customer_id BIGINT,
    promotion_id VARCHAR(200),
    earn_id VARCHAR(200),
    status VARCHAR(16) NOT NULL,
    failure_kind VARCHAR(16),
    code VARCHAR(64),
    message VARCHAR(1000),
    run_id VARCHAR(250),
    recorded_at TIMESTAMP NOT NULL
)"""


def old_table(ledger: ReversalLedger, ddl: str) -> None:
    """Create ``ddl``'s table and write one row into it, as an older release did."""
    conn = ledger.hook.get_conn()
    cursor = conn.cursor()
    cursor.execute(ddl.format(table=ledger.table))
    ph = ledger.placeholder
    cursor.execute(
        f"INSERT INTO {ledger.table} (vendor, item_key, customer_id, promotion_id, earn_id, status, failure_kind, "
        f"code, message, run_id, recorded_at) VALUES ({', '.join([ph] * 11)})",
        ["capillary", "7/p/e", 7, "p", "e", "failed", "permanent", "729", "redeemed", "old", "2026-01-01 00:00:00"],
    )
    conn.commit()
    conn.close()


def columns_of(ledger: ReversalLedger) -> list[str]:
    conn = ledger.hook.get_conn()
    try:
        return table_columns(conn, ledger.table)
    finally:
        conn.close()


@pytest.mark.parametrize("ddl", [V0_1_TABLE, NO_ATTEMPT_TABLE], ids=["v0_1", "no_attempt_columns"])
def test_an_older_table_gets_the_missing_columns_and_keeps_its_rows(ledger_conn, ddl) -> None:
    """The writer adds what an older table lacks (ALTER TABLE ... ADD COLUMN) and reads its rows as before."""
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    old_table(ledger, ddl)
    ledger.record("capillary", [Outcome.succeeded(EarnItem(7, "p", "f"))], run(2))
    assert sorted(columns_of(ledger)) == sorted(columns())
    settled, doubt = ledger.lookup("capillary", ["7/p/e", "7/p/f"])
    assert {k: (v.ok, v.code, v.run_id) for k, v in settled.items()} == {
        "7/p/e": (False, "729", "old"),
        "7/p/f": (True, None, "run2"),
    }
    assert doubt == {}
    rows = ledger._retrying("look-up", lambda conn: ledger._select(conn, vendor="capillary", chunk=["7/p/e", "7/p/f"]))
    by_key = {r.item_key: r for r in rows}
    assert (by_key["7/p/e"].try_number, by_key["7/p/e"].message) == (None, "redeemed")
    assert (by_key["7/p/f"].task_id, by_key["7/p/f"].try_number) == ("cancel", 2)
    ledger.close()
    # opening it again finds nothing to add
    again = ReversalLedger(conn_id, table)
    again.ensure_table()
    assert sorted(columns_of(again)) == sorted(columns())
    again.close()


def test_a_read_only_open_reads_an_older_table_and_never_alters_it(ledger_conn) -> None:
    """A dry run reads an older table (NULL for the columns it lacks) and leaves its layout alone."""
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table, read_only=True)
    old_table(ledger, NO_ATTEMPT_TABLE)
    before = columns_of(ledger)
    settled, doubt = ledger.lookup("capillary", ["7/p/e"])
    assert {k: (v.ok, v.code) for k, v in settled.items()} == {"7/p/e": (False, "729")} and doubt == {}
    assert columns_of(ledger) == before and "try_number" not in before
    ledger.close()


def test_concurrent_openers_of_an_older_table_both_succeed(ledger_conn, monkeypatch) -> None:
    """Two tasks open one old table at once: both list it without the columns, one adds them, and the
    other's failing ALTER is forgiven because the column is there afterwards."""
    conn_id, table = ledger_conn
    first, second = ReversalLedger(conn_id, table), ReversalLedger(conn_id, table)
    old_table(first, NO_ATTEMPT_TABLE)
    stale = columns_of(second)
    first.ensure_table()  # the other task adds the columns meanwhile
    listings: list[list[str]] = []

    def listing(conn, name):
        listings.append(stale if not listings else table_columns(conn, name))
        return listings[-1]

    monkeypatch.setattr(_connection, "table_columns", listing)
    second.ensure_table()
    assert len(listings) > 1  # an ALTER failed and the columns were listed again
    assert sorted(columns_of(second)) == sorted(columns())
    second.record("xoxoday", results(range(1, 2)), run())
    assert second.done_keys("xoxoday", ["1"]) == {"1"}
    second.close()
    first.close()


def test_non_sql_connection_is_refused(monkeypatch, xoxoday_conn) -> None:
    with pytest.raises(TypeError, match="not a SQL DbApiHook"):
        ReversalLedger("xoxoday_default").ensure_table()


def test_a_later_try_that_never_got_through_leaves_the_doubt_standing(ledger_conn) -> None:
    """Run 1 died mid-request (intent only); run 2 stopped before sending (refused token) and recorded
    ``not_sent``, another item's rejection and a clean error page of its own: the item stays in doubt,
    so run 3's "already reversed" is reconciled instead of recorded as a permanent refusal."""
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    item = PointItem(5)
    ledger.record_intent("xoxoday", [item], run(1))
    ledger.record(
        "xoxoday", [Outcome.failed(item, "not_sent", "not sent: VendorAuthError", FailureKind.TRANSIENT)], run(2)
    )
    ledger.record("xoxoday", [Outcome.failed(item, "401", "credentials", FailureKind.REJECTED)], run(2))
    ledger.record_intent("xoxoday", [item], run(3))
    ledger.record("xoxoday", [Outcome.failed(item, "http_503", "error page", FailureKind.TRANSIENT)], run(3))
    settled, doubt = ledger.lookup("xoxoday", [item.key])
    assert settled == {} and set(doubt) == {"5"}
    assert doubt["5"].run_id == "run1"  # the attempt that may have applied it
    cursor = ledger.hook.get_conn().cursor()
    cursor.execute(in_doubt_sql(table))
    assert [(r[1], r[3]) for r in cursor.fetchall()] == [("5", "run1")]
    # the vendor's answer about the item ends the doubt
    ledger.record("xoxoday", [Outcome.failed(item, "refused", "Transaction not found", FailureKind.PERMANENT)], run(3))
    settled, doubt = ledger.lookup("xoxoday", [item.key])
    assert doubt == {} and settled["5"].ok is False
    cursor.execute(in_doubt_sql(table))
    assert cursor.fetchall() == []
    ledger.close()


def test_the_extraction_leaves_out_junk_recorded_as_invalid(ledger_conn) -> None:
    """Junk the operator recorded (``on_invalid="skip"``) is keyed by its value: the anti-join keeps it out."""
    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    junk = [
        InvalidRow(3, "'abc'", "not an integer", invalid_key("abc")),
        InvalidRow(4, "-5", "must be positive", invalid_key(-5)),
    ]
    ledger.record_invalid("xoxoday", junk, run())
    ledger.record_invalid(
        "capillary", [InvalidRow(1, "(0, 'P1', 'b')", "customer_id must be positive", invalid_key("0/P1/b"))], run()
    )
    ledger.record("xoxoday", results(range(1, 2)), run())
    conn = ledger.hook.get_conn()
    cursor = conn.cursor()
    src_p, src_e = f"{table}_points", f"{table}_earns"
    cursor.execute(f"CREATE TABLE {src_p} (unique_id VARCHAR(30))")
    cursor.execute(f"INSERT INTO {src_p} VALUES ('1'), ('abc'), ('-5'), ('7'), ('xyz')")
    cursor.execute(f"CREATE TABLE {src_e} (customer_id BIGINT, promotion_id VARCHAR(30), earn_id VARCHAR(30))")
    cursor.execute(f"INSERT INTO {src_e} VALUES (0, 'P1', 'b'), (7, 'P1', 'c')")
    conn.commit()
    points = points_key_sql("s.unique_id")
    cursor.execute(f"SELECT unique_id FROM {src_p} s WHERE {not_done_predicate('xoxoday', points, table)} ORDER BY 1")
    assert [r[0] for r in cursor.fetchall()] == ["7", "xyz"]  # xyz: junk never recorded, reported by the run
    kept = not_done_predicate("xoxoday", points, table, skip_invalid=False)
    cursor.execute(f"SELECT unique_id FROM {src_p} s WHERE {kept} ORDER BY 1")
    assert [r[0] for r in cursor.fetchall()] == ["-5", "7", "abc", "xyz"]
    earns = earn_key_sql("s.customer_id", "s.promotion_id", "s.earn_id")
    cursor.execute(f"SELECT earn_id FROM {src_e} s WHERE {not_done_predicate('capillary', earns, table)}")
    assert [r[0] for r in cursor.fetchall()] == ["c"]
    for t in (src_p, src_e):
        cursor.execute(f"DROP TABLE {t}")
    conn.commit()
    conn.close()
    ledger.close()


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("abc", "invalid:abc"),
        (-5, "invalid:-5"),
        ("-5", "invalid:-5"),  # the same junk as text or as a number: one key (as the SQL casts it)
        (Decimal("-5"), "invalid:-5"),  # a NUMERIC column's value, as its driver gives it
        (1.5, "invalid:1.5"),
        (None, "invalid:None"),
        ({"unique_id": "x"}, "invalid:{'unique_id': 'x'}"),
    ],
)
def test_an_invalid_value_has_a_stable_readable_key(value, key) -> None:
    assert invalid_key(value) == key


@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.lists(st.text(), max_size=3)))
def test_invalid_keys_are_bounded_and_never_an_item_key(value) -> None:
    key = invalid_key(value)
    assert key == invalid_key(value)  # stable
    assert key.isprintable() and len(key) <= len("invalid:") + 200  # bounded, storable, readable
    assert key.startswith(("invalid:", "invalid-sha256:"))  # item keys start with a digit


def test_a_long_or_unprintable_value_is_keyed_by_a_digest() -> None:
    assert invalid_key("x" * 5000).startswith("invalid-sha256:")
    assert invalid_key("a\nb") == invalid_key("a\nb") != invalid_key("a\rb")
    assert invalid_key("x" * 5000) != invalid_key("x" * 5001)


def test_junk_from_a_numeric_id_column_is_left_out_of_the_extraction(ledger_conn) -> None:
    """A NUMERIC id column reaches the operator as the driver's Decimal (psycopg, DuckDB): its junk
    (0, -5) is keyed by the text the SQL cast writes ('-5'), not by the Decimal's repr, so the
    extraction's anti-join keeps it out the next day."""
    from airflow_provider_loyalty.operators._inputs import InputErrors, parse_unique_ids

    conn_id, table = ledger_conn
    ledger = ReversalLedger(conn_id, table)
    src = f"{table}_numeric"

    def execute(sql: str) -> list[tuple]:
        conn = ledger.hook.get_conn()
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            found = cursor.fetchall() if cursor.description else []
            conn.commit()
            return found
        finally:
            conn.close()

    execute(f"CREATE TABLE {src} (unique_id NUMERIC(20, 0))")
    execute(f"INSERT INTO {src} VALUES (7), (0), (-5)")
    fetched = execute(f"SELECT unique_id FROM {src} ORDER BY unique_id")  # what an upstream fetch hands on
    invalid = InputErrors("unique_ids", "op", skip=True)
    items, _, _ = parse_unique_ids(fetched, "op", invalid=invalid)
    assert [i.unique_id for i in items] == [7] and invalid.count == 2
    ledger.record_invalid("xoxoday", invalid.rows, run())
    predicate = not_done_predicate("xoxoday", points_key_sql("s.unique_id"), table)
    try:
        assert [int(r[0]) for r in execute(f"SELECT unique_id FROM {src} s WHERE {predicate}")] == [7]
    finally:
        execute(f"DROP TABLE {src}")
        ledger.close()
