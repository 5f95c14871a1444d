"""Retention for real: the VM's daily `mlflow gc` (infra.vm_launcher.collect_garbage, as the
timer runs it) removes a run deleted long enough ago, its rows and its artifacts in the bucket
(moto_server), through the server that proxies them; a run deleted more recently stays."""

from __future__ import annotations

import os
import uuid

import pytest
from mlflow.exceptions import MlflowException

import local_platform as c
from infra import vm_launcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def objects_under(platform, prefix: str) -> list[str]:
    s3 = c.s3_client(platform.s3_endpoint)
    listed = s3.list_objects_v2(Bucket=platform.bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_gc_removes_a_deleted_runs_rows_and_artifacts_and_keeps_a_recent_one(
    platform, tmp_path, monkeypatch
):
    from mlflow import MlflowClient

    for key, value in platform.env().items():  # for this test only: later ones check without
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=platform.tracking_uri)
    experiment = client.create_experiment(f"gc-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment).info.run_id
    (tmp_path / "model.txt").write_text("weights")
    client.log_artifact(run, str(tmp_path / "model.txt"))
    client.delete_run(run)
    prefix = f"mlflow/{experiment}/{run}/artifacts/"
    assert objects_under(platform, prefix) == [f"{prefix}model.txt"]

    gc = {"trackingUri": platform.tracking_uri, "caPath": str(platform.ca_cert)}
    env = {**os.environ, **c.s3_store_env(platform.s3_endpoint), "PGPASSWORD": platform.db_password,
           "MLFLOW_TRACKING_USERNAME": platform.admin.username,
           "MLFLOW_TRACKING_PASSWORD": platform.admin.password}  # fmt: skip
    mlflow = str(c.BIN / "mlflow")
    # Deleted today: a day's grace keeps it (it can still be restored).
    kept = vm_launcher.collect_garbage(
        {**gc, "olderThanDays": 1}, mlflow, platform.backend_uri, env
    )
    assert kept == "mlflow gc: 0 run(s) deleted more than 1 day(s) ago removed"
    assert client.get_run(run).info.lifecycle_stage == "deleted"
    assert objects_under(platform, prefix)

    removed = vm_launcher.collect_garbage(
        {**gc, "olderThanDays": 0}, mlflow, platform.backend_uri, env
    )
    assert removed.startswith("mlflow gc: ") and "0 run(s)" not in removed
    assert objects_under(platform, prefix) == []
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
        client.get_run(run)


def test_a_failing_gc_is_one_line_for_the_journal(tmp_path):
    failing = tmp_path / "mlflow"
    failing.write_text(
        "#!/bin/sh\necho 'Traceback ...' >&2\necho 'OperationalError: no route' >&2\nexit 1\n"
    )
    failing.chmod(0o755)
    gc = {"trackingUri": "https://10.40.0.10:5000", "caPath": None, "olderThanDays": 30}
    with pytest.raises(vm_launcher.LaunchError) as failed:
        vm_launcher.collect_garbage(gc, str(failing), "postgresql+psycopg2://mlflow@db/mlflow", {})
    assert str(failed.value) == "mlflow gc failed: Traceback ... | OperationalError: no route"
