"""Coordination between tasks, runs and workers that share one vendor key or one ledger.

Two concerns live here, each behind one small interface and backed by what the deployment already
runs (the ledger's database, or Redis where Celery runs):

- :mod:`.claims` — an attempt claims an item (lease + epoch) before its intent is written, so that
  two live attempts never both send it;
- :mod:`.budget` — one rate budget and one penalty window per vendor key, shared by every task.

Generic code: it names no vendor (vendor facts come from :mod:`airflow_provider_loyalty.vendors`).
"""
