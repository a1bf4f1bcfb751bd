"""Benchmarks of airflow-provider-loyalty: ``make bench`` runs ``benchmarks/run.py``."""
