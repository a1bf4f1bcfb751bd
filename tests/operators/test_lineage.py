"""OpenLineage facets of the reversal operators: vendor operation and ledger table as outputs, field by field."""

from __future__ import annotations

import sys

import pytest

from airflow_provider_loyalty.operators.capillary import RevokeEarnOperator
from airflow_provider_loyalty.operators.xoxoday import CancelPointsOperator
from tests.conftest import CAPILLARY_URL, XOXODAY_URL, set_connection
from tests.operators.test_operators import API, REVOKE, context, echo_cancel, echo_revoke

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")

P1 = "69117663b1cfc114606fd7fb"


def _outputs(lineage) -> list[tuple[str, str, dict]]:
    return [(d.namespace, d.name, dict(d.outputFacets or {})) for d in lineage.outputs]


def test_a_run_without_ledger_outputs_the_vendor_operation_with_its_count(requests_mock, xoxoday_conn) -> None:
    from airflow.providers.openlineage.extractors import OperatorLineage

    requests_mock.post(API, json=echo_cancel(fail={2}))
    op = CancelPointsOperator(task_id="cancel", unique_ids=[1, 2, 3], max_failed_ratio=1.0)
    summary = op.execute(context())
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)
    assert isinstance(lineage, OperatorLineage)
    assert lineage.inputs == [] and lineage.run_facets == {} and lineage.job_facets == {}
    [(namespace, name, facets)] = _outputs(lineage)
    assert (namespace, name) == (XOXODAY_URL, "cancelPoints")
    assert set(facets) == {"outputStatistics"}
    assert facets["outputStatistics"].rowCount == summary["succeeded"] == 2  # what the vendor confirmed
    assert facets["outputStatistics"].size is None


def test_a_run_with_a_ledger_outputs_the_ledger_table_too(requests_mock, capillary_conn, monkeypatch, tmp_path) -> None:
    requests_mock.post(REVOKE, json=echo_revoke({"e2": 729}))
    db = tmp_path / "warehouse.duckdb"
    set_connection(monkeypatch, "warehouse", conn_type="duckdb", host=str(db))
    op = RevokeEarnOperator(
        task_id="revoke",
        earns=[(7, P1, "e1"), (7, P1, "e2")],
        ledger_conn_id="warehouse",
        ledger_table="loyalty_reversal_ledger",
        max_failed_ratio=1.0,
    )
    op.execute(context())
    vendor, ledger = _outputs(op.get_openlineage_facets_on_complete(None))
    assert vendor[:2] == (CAPILLARY_URL, "revokeEarn")
    assert vendor[2]["outputStatistics"].rowCount == 1
    assert ledger == (f"duckdb://{db}", "warehouse.main.loyalty_reversal_ledger", {})


def test_vendor_namespace_is_the_connections_origin(monkeypatch) -> None:
    """A host pasted with the API path, or without a scheme, names the same origin the hook calls."""
    set_connection(
        monkeypatch, "cap_eu", conn_type="capillary", host="eu.api.capillarytech.com/api_gateway/v1", login="t"
    )
    set_connection(monkeypatch, "xoxo_blank", conn_type="xoxoday", login="id", password="secret")
    cap = RevokeEarnOperator(task_id="r", earns=[], capillary_conn_id="cap_eu")
    xoxo = CancelPointsOperator(task_id="c", unique_ids=[], xoxoday_conn_id="xoxo_blank")
    assert _outputs(cap.get_openlineage_facets_on_complete(None)) == [
        ("https://eu.api.capillarytech.com", "revokeEarn", {})
    ]
    assert _outputs(xoxo.get_openlineage_facets_on_complete(None)) == [
        ("https://stagingstores.xoxoday.com", "cancelPoints", {})  # the hook's default host
    ]


def test_ledger_names_on_sqlite_and_postgres(monkeypatch, tmp_path) -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from airflow_provider_loyalty.operators._lineage import ledger_naming

    set_connection(monkeypatch, "lite", conn_type="sqlite", host=str(tmp_path / "l.sqlite"))
    assert ledger_naming("lite", "loyalty_reversal_ledger") == (
        f"sqlite://{tmp_path}/l.sqlite",
        "main.loyalty_reversal_ledger",
    )
    set_connection(monkeypatch, "pg", conn_type="postgres", host="db.internal", port=5433, schema="loyalty", login="u")
    assert ledger_naming("pg", "ops.reversal_ledger") == ("postgres://db.internal:5433", "loyalty.ops.reversal_ledger")
    # An unqualified table is in the connection's default schema (asked of the hook, as OpenLineage's SQL parser does).
    monkeypatch.setattr(PostgresHook, "get_openlineage_default_schema", lambda self: "public")
    assert ledger_naming("pg", "reversal_ledger") == ("postgres://db.internal:5433", "loyalty.public.reversal_ledger")


def test_dry_run_writes_nothing_so_has_no_outputs(requests_mock, xoxoday_conn) -> None:
    op = CancelPointsOperator(task_id="cancel", unique_ids=[1, 2], dry_run=True)
    assert op.execute(context())["planned"] == 2
    lineage = op.get_openlineage_facets_on_complete(None)
    assert lineage is not None and lineage.outputs == [] and lineage.inputs == []
    assert requests_mock.request_history == []


def test_an_unreadable_ledger_connection_leaves_only_the_ledger_out(xoxoday_conn) -> None:
    op = CancelPointsOperator(task_id="cancel", unique_ids=[1], ledger_conn_id="no_such_connection")
    assert [(n, name) for n, name, _ in _outputs(op.get_openlineage_facets_on_complete(None))] == [
        (XOXODAY_URL, "cancelPoints")
    ]


def test_without_the_openlineage_provider_the_method_returns_none(monkeypatch, xoxoday_conn) -> None:
    """``sys.modules[name] = None`` makes ``import name`` raise ImportError, as when the extra is absent."""
    for name in ("airflow.providers.openlineage.extractors", "openlineage.client.event_v2"):
        monkeypatch.setitem(sys.modules, name, None)
    op = CancelPointsOperator(task_id="cancel", unique_ids=[1])
    assert op.get_openlineage_facets_on_complete(None) is None


def test_the_openlineage_extractor_uses_the_method(requests_mock, xoxoday_conn) -> None:
    """Airflow's OpenLineage ExtractorManager picks the method up for our operators."""
    from airflow.providers.openlineage.extractors.base import DefaultExtractor

    requests_mock.post(API, json=echo_cancel())
    op = CancelPointsOperator(task_id="cancel", unique_ids=[1, 2])
    op.execute(context())
    lineage = DefaultExtractor(op).extract_on_complete(task_instance=None)
    assert [(d.namespace, d.name) for d in lineage.outputs] == [(XOXODAY_URL, "cancelPoints")]
