"""Fixtures of the sandbox tests: a small dataset and a running sandbox loaded with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from airflow_provider_loyalty.sandbox import Dataset, Sandbox, SandboxConfig, generate_dataset


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    """Return a small dataset with every outcome (tests must not mutate it)."""
    return generate_dataset(
        seed=7,
        points=300,
        earns=1600,
        big_customer_earns=1200,
        reversal_date="2025-01-31",
    )


@pytest.fixture
def config() -> SandboxConfig:
    """Return a default config; tests change fields before or while the sandbox runs."""
    return SandboxConfig()


@pytest.fixture
def sb(config: SandboxConfig, dataset: Dataset) -> Iterator[Sandbox]:
    """Run a sandbox loaded with the dataset."""
    with Sandbox(config, dataset) as sandbox:
        yield sandbox


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """Return a keep-alive HTTP session."""
    with requests.Session() as session:
        yield session
