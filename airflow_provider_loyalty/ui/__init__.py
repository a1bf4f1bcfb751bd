"""The Reversals page: an Airflow UI plugin over the reversal ledger.

:mod:`~airflow_provider_loyalty.ui.plugin` registers it (entry point group ``airflow.plugins``);
:mod:`~airflow_provider_loyalty.ui.app` is the FastAPI app mounted under ``/loyalty``;
:mod:`~airflow_provider_loyalty.ui.reader` reads the ledger through the read-only connections of
:mod:`~airflow_provider_loyalty.ui.connections`, where :mod:`~airflow_provider_loyalty.ui.settings` says,
with the SQL of :mod:`~airflow_provider_loyalty.ui.queries`, and :mod:`~airflow_provider_loyalty.ui.aggregate`
makes the rows into the answers of :mod:`~airflow_provider_loyalty.ui.models`. Nothing here is imported by
the hooks or operators, and importing the plugin module stays cheap (the app is built on its first
request).
"""

from __future__ import annotations
