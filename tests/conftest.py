"""Shared fixtures: generated TLC data, a throwaway local MLflow store, and the real platform
(PostgreSQL + moto_server + mlflow server on free loopback ports) for integration tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import components as c
from training.generate import write_month

# Nothing the tests start may reach beyond loopback.
os.environ.update(c.QUIET)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")


@dataclass(frozen=True)
class Months:
    train: Path
    val: Path


@pytest.fixture(scope="session")
def months(tmp_path_factory) -> Months:
    """Two small generated green-taxi months (the stronger model still beats the baseline)."""
    folder = tmp_path_factory.mktemp("tlc")
    return Months(
        train=write_month(folder / "green_tripdata_2024-01.parquet", 2024, 1, 8000, 0, "green"),
        val=write_month(folder / "green_tripdata_2024-02.parquet", 2024, 2, 8000, 0, "green"),
    )


@pytest.fixture
def local_store(tmp_path, monkeypatch) -> str:
    """A real MLflow tracking store in a temporary sqlite file (no server)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.chdir(tmp_path)  # a file artifact store lands here
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def platform() -> c.Platform:
    """PostgreSQL, moto_server and the MLflow server exactly as rendered for the VM, auth on."""
    with c.throwaway_platform() as platform:
        yield platform
