"""Shared fixtures: generated TLC data, a throwaway local MLflow store, and the real platform
(PostgreSQL + moto_server + mlflow server on free loopback ports) for integration tests."""

from __future__ import annotations

import os
import shutil
import tempfile
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


@dataclass(frozen=True)
class Platform:
    tracking_uri: str
    s3_endpoint: str
    bucket: str
    admin: c.MlflowCredentials
    root: Path

    def env(self) -> dict[str, str]:
        return self.admin.env(self.tracking_uri)


@pytest.fixture(scope="session")
def platform() -> Platform:
    """PostgreSQL, moto_server and the MLflow server exactly as rendered for the VM, auth on."""
    root = Path(tempfile.mkdtemp(prefix="mlops-platform-"))
    root.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data directory
    procs: list[c.Proc] = []
    try:
        cluster = c.pg_init(root / "pgdata", root / "pg-superuser")
        pg = c.pg_start(cluster, c.free_port(), root / "postgresql.log")
        procs.append(pg)
        db_password = c.new_password()
        c.pg_ensure_databases(
            pg.extra["port"], cluster.superuser_password, "mlflow", db_password,
            ["mlflow", "mlflow_auth"],
        )  # fmt: skip
        moto = c.moto_start(c.free_port(), root / "moto.log")
        procs.append(moto)
        bucket = "test-artifacts"
        c.ensure_bucket(moto.url, bucket)
        admin = c.MlflowCredentials("admin", c.new_password())
        server = c.mlflow_start(
            port=c.free_port(),
            db_port=pg.extra["port"],
            db_password=db_password,
            admin=admin,
            secret_key=c.new_password(),
            artifacts_destination=f"s3://{bucket}/mlflow",
            store_env=c.s3_store_env(moto.url),
            workdir=root / "mlflow",
            log=root / "mlflow-server.log",
            workers=1,
        )
        procs.append(server)
        yield Platform(server.url, moto.url, bucket, admin, root)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)
