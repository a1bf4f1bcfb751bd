"""One item state: the Python rules, the SQL, the writer's look-up and the Reversals page agree.

Every history is written through the real writer into a real SQLite file and DuckDB file (and
PostgreSQL when configured), read back, and judged four ways: :func:`item_state` over the rows,
:func:`item_state_sql` and :func:`in_doubt_sql` in the database, the writer's look-up, and the
page's queries and aggregation.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_loyalty.ledger import (
    ItemState,
    LedgerRow,
    ReversalLedger,
    in_doubt_sql,
    item_state,
    item_state_sql,
    not_done_predicate,
)
from airflow_provider_loyalty.ui import aggregate, queries
from airflow_provider_loyalty.ui.auth import DagScope
from airflow_provider_loyalty.ui.connections import Session
from tests.conftest import set_connection

POSTGRES_URI = os.environ.get("LOYALTY_TEST_POSTGRES_URI")
BACKENDS = ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]

ITEMS = [("xoxoday", "1"), ("xoxoday", "2"), ("capillary", "1")]
ATTEMPTS = [
    ("run1", "dag", "cancel", -1, 1),
    ("run1", "dag", "cancel", -1, 2),
    ("run2", "dag", "cancel", -1, 1),
    (None, None, None, None, None),  # a row written outside a task
]
T0 = datetime(2026, 12, 7, 10, 0, 0)
#: few instants, so that ties are common; some with a fraction of a second (SQLite keeps text)
INSTANTS = [T0 + timedelta(seconds=s) for s in (0, 0.5, 1, 2, 3)]

_ROW = st.tuples(
    st.sampled_from(range(len(ITEMS))),
    st.sampled_from(["sending", "sending", "succeeded", "failed", "failed", "failed", "invalid"]),
    st.sampled_from([None, "permanent", "rejected", "transient", "transient"]),
    st.sampled_from([None, "no_answer", "unknown", "http_504", "http_503", "not_sent", "729", "already_reversed"]),
    st.sampled_from(range(len(ATTEMPTS))),
    st.sampled_from(range(len(INSTANTS))),
)
HISTORIES = st.lists(_ROW, max_size=10)


def ledger_row(item: int, status: str, kind: str | None, code: str | None, attempt: int, at: int) -> LedgerRow:
    vendor, key = ITEMS[item]
    run_id, dag_id, task_id, map_index, try_number = ATTEMPTS[attempt]
    return LedgerRow(
        vendor=vendor,
        item_key=key,
        ids={"unique_id": int(key)} if vendor == "xoxoday" else {},
        status=status,
        failure_kind=kind,
        code=code,
        message=f"{status} {code}",
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        recorded_at=INSTANTS[at],
    )


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch, tmp_path) -> str:
    name = request.param
    if name == "sqlite":
        set_connection(monkeypatch, "ledger", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    elif name == "duckdb":
        set_connection(monkeypatch, "ledger", conn_type="duckdb", host=str(tmp_path / "l.duckdb"))
    else:
        if not POSTGRES_URI:
            pytest.skip("no PostgreSQL server configured (LOYALTY_TEST_POSTGRES_URI)")
        monkeypatch.setenv("AIRFLOW_CONN_LEDGER", POSTGRES_URI)
    return name


def judge(backend: str, rows: list[LedgerRow]) -> dict[tuple[str, str], dict[str, object]]:
    """Write ``rows`` to a fresh table; return every judgement of each item, by ``(vendor, item_key)``."""
    table = f"state_{uuid.uuid4().hex[:10]}"
    ledger = ReversalLedger("ledger", table)
    try:
        ledger.insert(rows)
        found: dict[tuple[str, str], dict[str, object]] = {item: {} for item in {(r.vendor, r.item_key) for r in rows}}
        read: dict[tuple[str, str], list[LedgerRow]] = {}
        settled: dict[tuple[str, str], object] = {}
        for vendor in {v for v, _ in found}:
            keys = [k for v, k in found if v == vendor]
            for row in ledger._retrying("read", lambda conn, v=vendor, ks=keys: ledger._select(conn, v, ks)):
                read.setdefault((row.vendor, row.item_key), []).append(row)
            done, doubt = ledger.lookup(vendor, keys)
            settled.update({(vendor, k): ("succeeded" if s.ok else "refused") for k, s in done.items()})
            settled.update({(vendor, k): "in_doubt" for k in doubt})

        def query(conn, sql: str, params: list | None = None) -> list[tuple]:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, params or [])
                result = [tuple(r) for r in cursor.fetchall()]
            finally:
                cursor.close()
            conn.commit()
            return result

        by_sql = ledger._retrying(
            "state",
            lambda conn: query(
                conn,
                f"SELECT k.vendor, k.item_key, {item_state_sql('k', table)} "
                f"FROM (SELECT DISTINCT vendor, item_key FROM {table}) k",
            ),
        )
        listed = ledger._retrying("doubt", lambda conn: query(conn, in_doubt_sql(table)))
        placeholder = ledger.placeholder
        dialect = {"sqlite": "sqlite", "duckdb": "duckdb", "postgres": "postgres"}[backend]

        def page(conn) -> tuple[set, dict, dict, list]:
            session = Session(conn, placeholder, dialect)
            everything = DagScope.everything()
            _, doubt_items = queries.matching_items(
                session, table, everything, queries.Selection(state="in_doubt"), limit=100, offset=0
            )
            _, listed_items = queries.matching_items(
                session, table, everything, queries.Selection(), limit=100, offset=0
            )
            histories = aggregate.histories(
                queries.item_rows(session, table, everything, list(found)), {}, aggregate.AirflowLinks()
            )
            daily = queries.summary_rows(
                session, table, everything, queries.Selection(since=T0 - timedelta(days=1))
            ).daily
            conn.commit()
            return (
                {(v, k) for v, k, _ in doubt_items},
                {k: (h.in_doubt, h.reversed) for k, h in histories.items()},
                {(v, k): state for v, k, state in listed_items},
                daily,
            )

        page_doubt, page_items, page_states, daily = ledger._retrying("page", page)

        def extraction(conn) -> dict[tuple[str, str], tuple[bool, bool]]:
            """Whether the extraction's anti-join extracts each item (refusals skipped, and not)."""
            source = f"{table}_src"
            cursor = conn.cursor()
            cursor.execute(f"CREATE TABLE {source} (item_key VARCHAR(20))")
            for key in sorted({k for _, k in found}):
                cursor.execute(f"INSERT INTO {source} VALUES ('{key}')")
            picked: dict[tuple[str, str], tuple[bool, bool]] = {}
            for vendor in sorted({v for v, _ in found}):
                chosen = []
                for skip in (True, False):
                    predicate = not_done_predicate(vendor, "s.item_key", table, skip_permanent_failures=skip)
                    cursor.execute(f"SELECT s.item_key FROM {source} s WHERE {predicate}")
                    chosen.append({str(r[0]) for r in cursor.fetchall()})
                for v, key in found:
                    if v == vendor:
                        picked[(v, key)] = (key in chosen[0], key in chosen[1])
            cursor.execute(f"DROP TABLE {source}")
            cursor.close()
            conn.commit()
            return picked

        extracted = ledger._retrying("extraction", extraction)
    finally:
        if backend == "postgres":
            ledger._retrying("drop", lambda conn: _drop(conn, table))
        ledger.close()
    for item, judged in found.items():
        judged["python_written"] = item_state([r for r in rows if (r.vendor, r.item_key) == item]).value
        judged["python_read"] = item_state(read[item]).value
        judged["writer"] = settled.get(item, "open")
        judged["extracted"], judged["extracted_with_refused"] = extracted[item]
        judged["refused_ever"] = any(r.status == "failed" and r.failure_kind == "permanent" for r in read[item])
        judged["page_filter"] = item in page_doubt
        judged["page_state"] = page_states.get(item)
        judged["page_item"] = page_items[item][0]
        judged["page_reversed"] = page_items[item][1]
    for vendor, key, state in by_sql:
        found[(str(vendor), str(key))]["sql"] = str(state)
    for vendor, key, *_ in listed:
        found[(str(vendor), str(key))]["listed"] = int(found[(str(vendor), str(key))].get("listed", 0)) + 1
    # the page's counts (per day of the first row, summed): each item once, in its state
    totals: dict[tuple[str, str], int] = {}
    for _day, vendor, state, _retried, _reconciled, n in daily:
        totals[(str(vendor), str(state))] = totals.get((str(vendor), str(state)), 0) + int(n)
    expected: dict[tuple[str, str], int] = {}
    for (vendor, _key), judged in found.items():
        expected[(vendor, str(judged["python_written"]))] = expected.get((vendor, str(judged["python_written"])), 0) + 1
    for judged in found.values():
        judged["page_totals"] = totals
        judged["expected_totals"] = expected
    return found


def _drop(conn, table: str) -> None:
    cursor = conn.cursor()
    cursor.execute(f"DROP TABLE {table}")
    cursor.close()
    conn.commit()


def assert_agree(found: dict[tuple[str, str], dict[str, object]]) -> None:
    for item, judged in found.items():
        state = ItemState(judged["python_written"])
        assert judged["python_read"] == state.value, (item, judged)
        assert judged["sql"] == state.value, (item, judged)
        in_doubt = state is ItemState.IN_DOUBT
        assert bool(judged.get("listed")) == in_doubt, (item, judged)
        assert judged["page_filter"] == in_doubt and judged["page_item"] == in_doubt, (item, judged)
        assert judged["page_reversed"] == (state is ItemState.SUCCEEDED), (item, judged)
        expected_writer = (
            state.value if state in (ItemState.SUCCEEDED, ItemState.REFUSED, ItemState.IN_DOUBT) else "open"
        )
        assert judged["writer"] == expected_writer, (item, judged)
        # the extraction extracts what is not done; refused items too when asked to
        assert judged["extracted_with_refused"] == (state is not ItemState.SUCCEEDED), (item, judged)
        # ...and, by default, leaves refused ones out — also one resent after its refusal
        # (retry_refused) that is in doubt again: extract with skip_permanent_failures=False to
        # reconcile such an item, as the run that resent it did.
        refused_out = state is ItemState.REFUSED or (state is ItemState.IN_DOUBT and judged["refused_ever"])
        assert judged["extracted"] == (state is not ItemState.SUCCEEDED and not refused_out), (item, judged)
        # the page lists the item in its state, and counts each item once in that state
        assert judged["page_state"] == state.value, (item, judged)
        assert judged["page_totals"] == judged["expected_totals"], (item, judged)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=HISTORIES)
@example(history=[(0, "sending", None, None, 0, 0), (0, "failed", "transient", "not_sent", 2, 2)])
@example(history=[(0, "sending", None, None, 0, 0), (0, "failed", "transient", "no_answer", 0, 1)])
@example(history=[(0, "failed", "transient", "no_answer", 0, 1), (0, "failed", "permanent", "729", 2, 1)])
def test_the_state_function_the_sql_the_writer_and_the_page_agree(backend, history) -> None:
    rows = [ledger_row(*r) for r in history]
    if not rows:
        assert item_state([]) is ItemState.NOT_SENT
        return
    assert_agree(judge(backend, rows))


def rows_of(*events: tuple[int, str, str | None, str | None, int, int]) -> list[LedgerRow]:
    return [ledger_row(*e) for e in events]


def test_an_intent_then_a_later_tries_not_sent_is_in_doubt_everywhere(backend) -> None:
    """The page's filter listed it while its own row said in_doubt = no: now all say in doubt."""
    found = judge(backend, rows_of((0, "sending", None, None, 0, 0), (0, "failed", "transient", "not_sent", 1, 2)))[
        ("xoxoday", "1")
    ]
    assert (found["sql"], found["page_filter"], found["page_item"], found["listed"]) == ("in_doubt", True, True, 1)


def test_an_item_left_without_an_answer_is_in_doubt_everywhere(backend) -> None:
    """``no_answer``: the next run reconciles it, so the SQL and the page call it in doubt as the writer does."""
    found = judge(backend, rows_of((0, "sending", None, None, 0, 0), (0, "failed", "transient", "no_answer", 0, 1)))[
        ("xoxoday", "1")
    ]
    assert (found["writer"], found["sql"], found["page_filter"], found["page_item"]) == (
        "in_doubt",
        "in_doubt",
        True,
        True,
    )


@pytest.mark.parametrize(
    ("events", "state"),
    [
        ([], ItemState.NOT_SENT),
        ([(0, "sending", None, None, 0, 0), (0, "succeeded", None, None, 0, 1)], ItemState.SUCCEEDED),
        ([(0, "sending", None, None, 0, 0), (0, "succeeded", None, "already_reversed", 2, 1)], ItemState.SUCCEEDED),
        ([(0, "sending", None, None, 0, 0), (0, "failed", "permanent", "729", 0, 1)], ItemState.REFUSED),
        ([(0, "invalid", None, "invalid", 0, 0)], ItemState.INVALID),
        ([(0, "sending", None, None, 0, 0)], ItemState.IN_DOUBT),
        ([(0, "sending", None, None, 0, 0), (0, "failed", "transient", "http_503", 0, 1)], ItemState.FAILED),
        ([(0, "sending", None, None, 0, 0), (0, "failed", "rejected", "http_401", 0, 1)], ItemState.FAILED),
        (
            [(0, "failed", "transient", "http_503", 0, 1), (0, "failed", "transient", "not_sent", 1, 2)],
            ItemState.NOT_SENT,
        ),
        (
            [(0, "failed", "transient", "not_sent", 0, 1), (0, "failed", "transient", "http_503", 1, 2)],
            ItemState.FAILED,
        ),
        # a refusal at the instant of an unanswered attempt settles it; after it, the doubt is new
        ([(0, "failed", "transient", "no_answer", 0, 1), (0, "failed", "permanent", "729", 1, 1)], ItemState.REFUSED),
        ([(0, "failed", "permanent", "729", 0, 1), (0, "failed", "transient", "no_answer", 1, 2)], ItemState.IN_DOUBT),
        # an error page of a later try says nothing of an earlier unanswered attempt
        (
            [(0, "failed", "transient", "http_504", 0, 1), (0, "failed", "transient", "http_503", 1, 2)],
            ItemState.IN_DOUBT,
        ),
    ],
)
def test_the_rules(events, state) -> None:
    assert item_state(rows_of(*events)) is state


@pytest.mark.parametrize(
    "later",
    [
        pytest.param(("succeeded", None, None), id="succeeded_by_another_dag"),
        pytest.param(("failed", "permanent", "729"), id="refused_to_another_dag"),
    ],
)
def test_a_user_who_reads_one_dag_sees_the_in_doubt_the_filter_lists(backend, later) -> None:
    """The item's state is decided by all its rows, whichever DAG wrote them: the in-doubt filter
    (SQL over every row) does not list an item another DAG settled since, and its row must not say
    "in doubt" either, for a user who may read only the DAG whose attempt went unanswered.
    The page used to judge the row from the readable rows alone (in doubt: yes, not listed)."""
    from airflow_provider_loyalty.ui.reader import LedgerReader
    from airflow_provider_loyalty.ui.settings import LedgerSettings

    status, kind, code = later
    table = f"scope_{uuid.uuid4().hex[:10]}"
    ledger = ReversalLedger("ledger", table)
    unanswered = ledger_row(0, "sending", None, None, 0, 0)._replace(dag_id="dag_a")
    settled = ledger_row(0, status, kind, code, 2, 2)._replace(dag_id="dag_b")
    open_item = ledger_row(1, "sending", None, None, 0, 0)._replace(dag_id="dag_a")  # in doubt, for contrast
    try:
        ledger.insert([unanswered, settled, open_item])
    finally:
        ledger.close()
    reader = LedgerReader(
        LedgerSettings("ledger", table), scope=DagScope(every_dag=False, dag_ids=frozenset({"dag_a"}))
    )
    try:
        listed = reader.items(status="in_doubt", query="", days=3650, limit=10)
        assert [(i.item_key, i.in_doubt) for i in listed.items] == [("2", True)]
        shown = {i.item_key: i.in_doubt for i in reader.items(query="1", limit=10).items}
        assert shown == {"1": False}  # another DAG settled it: not in doubt, as the filter says
    finally:
        if backend == "postgres":
            probe = ReversalLedger("ledger", table)
            probe._retrying("drop", lambda conn: _drop(conn, table))
            probe.close()
