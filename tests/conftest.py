"""Shared fixtures: generated TLC data, a throwaway local MLflow store, and the real platform
(PostgreSQL + moto_server + mlflow server on free loopback ports) for integration tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import local_platform as c
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


def write_tlc(path: Path, rows: int, row_group: int, colour="yellow", seed=0) -> Path:
    """A generated TLC month written with the given row-group size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.generate import generate_month

    table = pa.Table.from_pandas(
        generate_month(2024, 3, rows=rows, seed=seed, colour=colour), preserve_index=False
    )
    pq.write_table(table, path, row_group_size=row_group)
    return path


@pytest.fixture(scope="session")
def scoring_model_dir(months, tmp_path_factory) -> Path:
    """A small LightGBM model (60 trees) saved as an MLflow model, for the scoring job."""
    import mlflow

    from training.data import load
    from training.models import Candidate

    X, y, _ = load(str(months.train))
    candidate = Candidate("lightgbm", {"n_estimators": 60})
    pipeline = candidate.build().fit(X, y, **candidate.fit_params())
    path = tmp_path_factory.mktemp("model") / "m"
    mlflow.sklearn.save_model(
        pipeline, path, input_example=X.head(3), skops_trusted_types=candidate.trusted_types()
    )
    return path


@pytest.fixture
def fake_api():
    """A model API on loopback: /ready serves v`version` while `ready`, else says no version
    exists (a first deploy); /predict answers for that version. Set the dict's keys to steer it."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"ready": False, "version": "1"}

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):  # noqa: N802 - http.server's name
            if state["ready"]:
                self.reply(200, {"status": "ready", "model_version": state["version"]})
            else:
                self.reply(503, {"status": "not ready", "reason": "alias champion not found",
                                 "reason_code": "no_model_version"})  # fmt: skip

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.reply(200, {"duration": 5.6, "model_version": state["version"]})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


@pytest.fixture
def fail_batch(monkeypatch):
    """fail_batch(n): the scoring job's n-th batch raises, as a crash mid-shard would."""
    from scoring import job

    real = job.score_batch

    def arm(n: int) -> None:
        calls = []

        def score_batch(*args):
            calls.append(1)
            if len(calls) == n:
                raise RuntimeError(f"batch {n} failed")
            return real(*args)

        monkeypatch.setattr(job, "score_batch", score_batch)

    return arm


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


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration starts processes or servers: marked `integration`.
    (`make test` runs two xdist workers with `--dist loadfile`: a module's tests run on one
    worker, in order, with its module fixtures once.)"""
    integration = Path(__file__).parent / "integration"
    for item in items:
        if integration in item.path.parents:
            item.add_marker(pytest.mark.integration)
