"""The server command with `--artifacts-destination gs://…`, for real: `mlflow server` as
rendered, a local GCS emulator as the bucket, artifacts uploaded and read back through the
server's proxy by a client that has no bucket credentials at all."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from scripts import components as c

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def gcs_platform():
    root = Path(tempfile.mkdtemp(prefix="gcs-platform-"))
    root.chmod(0o755)
    procs: list[c.Proc] = []
    try:
        cluster = c.pg_init(root / "pgdata", root / "pw")
        pg = c.pg_start(cluster, c.free_port(), root / "pg.log")
        procs.append(pg)
        password = c.new_password()
        c.pg_ensure_databases(
            pg.extra["port"],
            cluster.superuser_password,
            "mlflow",
            password,
            ["mlflow", "mlflow_auth"],
        )
        gcs = c.gcs_emulator_start(c.free_port(), root / "gcs.log")
        procs.append(gcs)
        from google.cloud import storage

        env = c.gcs_store_env(gcs.url)
        mp = pytest.MonkeyPatch()
        for key, value in env.items():
            mp.setenv(key, value)
        storage.Client().create_bucket("gcs-artifacts")
        mp.undo()
        admin = c.MlflowCredentials("admin", c.new_password())
        server = c.mlflow_start(
            port=c.free_port(),
            db_port=pg.extra["port"],
            db_password=password,
            admin=admin,
            secret_key=c.new_password(),
            artifacts_destination="gs://gcs-artifacts/mlflow",
            store_env=env,
            workdir=root / "mlflow",
            log=root / "mlflow.log",
        )
        procs.append(server)
        yield {"url": server.url, "admin": admin, "gcs": gcs.url}
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_artifacts_land_in_gcs_through_the_server(gcs_platform, tmp_path, monkeypatch):
    import mlflow
    from google.cloud import storage

    for key in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(key, raising=False)  # the client has no way to the bucket itself
    for key, value in gcs_platform["admin"].env(gcs_platform["url"]).items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(gcs_platform["url"])
    try:
        source = tmp_path / "notes.txt"
        source.write_text("zone 43 to 151 is slow at rush hour")
        mlflow.set_experiment("gcs-check")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(source), artifact_path="docs")
        back = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="docs/notes.txt", dst_path=str(tmp_path / "dl")
        )
        assert Path(back).read_text() == source.read_text()
    finally:
        mlflow.set_tracking_uri(None)

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_platform["gcs"])
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "local")
    names = [b.name for b in storage.Client().list_blobs("gcs-artifacts", prefix="mlflow/")]
    assert any(n.endswith(f"{run.info.run_id}/artifacts/docs/notes.txt") for n in names), names
