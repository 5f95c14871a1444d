"""The server command with `--artifacts-destination gs://…`, for real: `mlflow server` as
rendered, a local GCS emulator as the bucket, artifacts uploaded and read back through the
server's proxy by a client that has no bucket credentials at all."""

from __future__ import annotations

from pathlib import Path

import pytest

import local_platform as c

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def gcs_platform():
    with c.throwaway_platform("gcs-artifacts", store="gcs") as platform:
        yield {"url": platform.tracking_uri, "admin": platform.admin, "gcs": platform.s3_endpoint}


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
