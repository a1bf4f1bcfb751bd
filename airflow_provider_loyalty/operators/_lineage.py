"""OpenLineage facets of a reversal: the vendor's operation and the ledger table as the task's outputs.

Nothing here is imported at DAG parse time or by a task's run: only the OpenLineage listener calls
:func:`operator_lineage` (through ``get_openlineage_facets_on_complete``) once a task has finished.
The OpenLineage classes are imported there; without the ``openlineage`` extra it returns ``None``.

Naming (https://openlineage.io/docs/spec/naming):

- vendor: namespace = the connection's base URL (the vendor spec's default host when the connection
  has none), name = the spec's ``operation``;
- ledger: namespace = the SQL connection's database (``postgres://host:5432``, ``duckdb:///path/file.duckdb``,
  ``sqlite:///path/file.sqlite``), name = ``database.schema.table`` as far as it is known without
  a query (a DuckDB file's catalog is its file name; a server's default schema is asked of its hook).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from airflow_provider_loyalty import vendors

if TYPE_CHECKING:
    from airflow_provider_loyalty.operators._summary import RunSummary

log = logging.getLogger(__name__)


def vendor_namespace(vendor: str, conn_id: str) -> str:
    """The vendor connection's base URL (scheme and host), as the hooks build it."""
    from airflow.sdk import BaseHook

    from airflow_provider_loyalty.hooks._urls import allows_http, base_url
    from airflow_provider_loyalty.hooks.errors import VendorConfigError

    spec = vendors.get(vendor)
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # lineage must never fail a task: name the connection instead
        log.debug("Lineage: connection %r not readable (%s)", conn_id, exc)
        return spec.default_host or f"{vendor}://{conn_id}"
    try:
        url = base_url(
            conn.host,
            conn.port,
            spec.default_host,
            spec.paths,
            vendor=vendor,
            allow_http=allows_http(conn.extra_dejson),
        )
    except VendorConfigError as exc:  # a host that is no URL (the task itself reports it)
        log.debug("Lineage: connection %r host unusable (%s)", conn_id, exc)
        url = ""
    return url or f"{vendor}://{conn_id}"


def ledger_naming(conn_id: str, table: str) -> tuple[str, str]:
    """Return ``(namespace, name)`` of the ledger table behind SQL connection ``conn_id``."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    conn_type = (conn.conn_type or "").lower()
    schema, _, bare = table.rpartition(".")
    if conn_type == "duckdb":
        path = conn.host or ":memory:"
        catalog = "memory" if path == ":memory:" else os.path.splitext(os.path.basename(path))[0]
        return f"duckdb://{path}", f"{catalog}.{schema or 'main'}.{bare}"
    if conn_type == "sqlite":
        return f"sqlite://{conn.host or ''}", f"{schema or 'main'}.{bare}"
    hook = conn.get_hook()
    namespace, database = "", conn.schema or None
    info_of = getattr(hook, "get_openlineage_database_info", None)
    if callable(info_of):
        try:
            info = info_of(conn)
        except Exception as exc:
            log.debug("Lineage: no database info from %s (%s)", type(hook).__name__, exc)
            info = None
        if info is not None:
            namespace = f"{info.scheme}://{info.authority}" if info.authority else f"{info.scheme}://"
            database = info.database or database
    if not namespace:
        authority = f"{conn.host or ''}{f':{conn.port}' if conn.port else ''}"
        namespace = f"{conn_type or 'sql'}://{authority}"
    if not schema:
        try:
            schema = hook.get_openlineage_default_schema() or ""
        except Exception as exc:  # a default schema is a nicety; the table is still named
            log.debug("Lineage: default schema of %r unknown (%s)", conn_id, exc)
    return namespace, ".".join(part for part in (database, schema, bare) if part)


def operator_lineage(operator: Any, summary: RunSummary | None) -> Any:
    """The ``OperatorLineage`` of a finished reversal task, or ``None`` without the OpenLineage provider.

    Outputs: the vendor's operation (with ``outputStatistics.rowCount`` = items the vendor confirmed
    reversed in this run) and, when ``ledger_conn_id`` is set, the ledger table. A dry run writes
    nothing, so it has no outputs.
    """
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import output_statistics_output_dataset
    except ImportError:
        return None

    dry_run = summary.dry_run if summary is not None else operator.plan_only is True
    if dry_run:
        return OperatorLineage()
    spec = vendors.get(operator.vendor)
    output_facets: dict[str, Any] = {}
    if summary is not None:
        output_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=summary.succeeded
        )
    outputs = [
        OutputDataset(
            namespace=vendor_namespace(spec.name, getattr(operator, spec.conn_arg)),
            name=spec.operation,
            outputFacets=output_facets,
        )
    ]
    if operator.ledger_conn_id:
        try:
            namespace, name = ledger_naming(str(operator.ledger_conn_id), operator.ledger_table)
        except Exception as exc:  # lineage must never fail a task
            log.warning("Lineage: ledger %r left out (%s)", operator.ledger_conn_id, exc)
        else:
            outputs.append(OutputDataset(namespace=namespace, name=name))
    return OperatorLineage(outputs=outputs)
